// DatasetExplorer plots: a Bokeh document (Python's bokeh.embed.json_item) embedded in an
// anywidget. BokehJS is not fetched from a CDN: the first plot on a page asks the kernel for the
// inline bundle (bokeh.resources, mode "inline") with a custom message and injects it once.
// Selections on the map reach Python through the synced `selected` trait: a Bokeh CustomJS
// callback (written in Python) dispatches a window event tagged with this plot's `uid`.
// The dataset map (Python's PointMap) sends its points as one binary buffer of float32 columns
// (x, y, colour code, dataset index): after embedding, they fill the document's empty source
// named "visloupe-points". Hovering a point asks the kernel for its thumbnail and text.
const LOAD_TIMEOUT_MS = 60000;

function loadBokeh(model) {
  const want = model.get("bokeh_version");
  const have = window.Bokeh && window.Bokeh.version;
  if (have === want && window.Bokeh.embed) return Promise.resolve(window.Bokeh);
  if (window.__visloupeBokeh && window.__visloupeBokeh.version === want) {
    return window.__visloupeBokeh.promise;
  }
  const promise = new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`BokehJS ${want} did not arrive from the kernel`)), LOAD_TIMEOUT_MS);
    const onMsg = (msg) => {
      if (!msg || msg.type !== "bokeh-js") return;
      model.off("msg:custom", onMsg);
      clearTimeout(timer);
      try {
        for (const code of msg.code) {
          const script = document.createElement("script");
          script.type = "text/javascript";
          script.textContent = code;
          document.head.appendChild(script);
        }
        if (!window.Bokeh || !window.Bokeh.embed) throw new Error("BokehJS did not initialise");
        resolve(window.Bokeh);
      } catch (error) {
        reject(error);
      }
    };
    model.on("msg:custom", onMsg);
    model.send({ type: "need-bokeh" });
  });
  window.__visloupeBokeh = { version: want, promise };
  promise.catch(() => { window.__visloupeBokeh = undefined; });
  return promise;
}

const POINTS_NAME = "visloupe-points";
const COLUMNS = ["x", "y", "c", "index"];
const TIP_CACHE = 300;

function hasWebGL() {
  try {
    const canvas = document.createElement("canvas");
    return Boolean(canvas.getContext("webgl2") || canvas.getContext("webgl"));
  } catch (error) {
    return false;
  }
}

function pointColumns(model) {
  const n = model.get("n_points");
  const view = model.get("points");
  if (!n || !view) return null;
  const bytes = view instanceof ArrayBuffer ? view
    : view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength);
  if (bytes.byteLength !== 4 * n * COLUMNS.length) {
    throw new Error(`points: expected ${4 * n * COLUMNS.length} bytes, got ${bytes.byteLength}`);
  }
  const data = {};
  COLUMNS.forEach((name, k) => { data[name] = new Float32Array(bytes, 4 * n * k, n); });
  return data;
}

function findSource(views) {
  for (const view of views.roots) {
    const doc = view.model.document;
    const source = doc && doc.get_model_by_name(POINTS_NAME);
    if (source) return source;
  }
  return null;
}

function makeTip(el) {
  const tip = document.createElement("div");
  tip.className = "visloupe-map-tip";
  Object.assign(tip.style, {
    position: "absolute", display: "none", pointerEvents: "none", zIndex: 10,
    background: "white", border: "1px solid #999999", borderRadius: "2px", padding: "4px",
    boxShadow: "0 1px 4px rgba(0,0,0,0.3)", fontSize: "11px", lineHeight: "1.35",
  });
  const img = document.createElement("img");
  img.className = "visloupe-map-thumb";
  Object.assign(img.style, { imageRendering: "pixelated", display: "block" });
  const text = document.createElement("div");
  text.className = "visloupe-map-tip-text";
  tip.append(img, text);
  el.appendChild(tip);
  return { tip, img, text };
}

function render({ model, el }) {
  el.classList.add("visloupe-bokeh");
  el.style.position = "relative";
  const extra = model.get("css_class");
  if (extra) el.classList.add(extra);
  const host = document.createElement("div");
  host.className = "visloupe-bokeh-host";
  el.appendChild(host);
  const note = document.createElement("div");
  note.className = "visloupe-bokeh-note";
  note.style.fontSize = "12px";
  el.appendChild(note);
  const { tip, img, text } = makeTip(el);
  const tips = new Map(); // point -> {url, fields}, for this drawing only
  let views = null;
  let generation = 0;
  let hovered = -1;
  let mouse = [0, 0];

  const onSelect = (evt) => {
    const detail = evt.detail || {};
    if (detail.uid !== model.get("uid")) return;
    model.set("selected", Array.from(detail.indices || [], Number));
    model.save_changes();
  };
  window.addEventListener("visloupe-select", onSelect);

  function placeTip() {
    const box = el.getBoundingClientRect();
    const x = mouse[0] - box.left + 14;
    let y = mouse[1] - box.top + 14;
    if (y + tip.offsetHeight > box.height) y = Math.max(0, y - tip.offsetHeight - 28);
    tip.style.left = `${Math.min(x, Math.max(0, box.width - tip.offsetWidth))}px`;
    tip.style.top = `${y}px`;
  }

  function showTip(point) {
    const got = tips.get(point);
    tip.style.display = "block";
    if (!got) {
      img.style.display = "none";
      text.textContent = "…";
    } else {
      img.style.display = got.url ? "block" : "none";
      if (got.url) img.src = got.url;
      text.replaceChildren();
      for (const [key, value] of Object.entries(got.fields)) {
        const line = document.createElement("div");
        line.textContent = key === "title" ? value : `${key}: ${value}`;
        if (key === "title") line.style.fontWeight = "bold";
        text.appendChild(line);
      }
    }
    placeTip();
  }

  const onHover = (evt) => {
    const detail = evt.detail || {};
    if (detail.uid !== model.get("uid")) return;
    const point = Number(detail.point);
    if (point < 0) {
      hovered = -1;
      tip.style.display = "none";
      return;
    }
    if (point !== hovered) {
      hovered = point;
      if (!tips.has(point)) model.send({ type: "hover", point });
    }
    showTip(point);
  };
  window.addEventListener("visloupe-hover", onHover);
  const onMouse = (evt) => { mouse = [evt.clientX, evt.clientY]; };
  el.addEventListener("mousemove", onMouse);
  const onLeave = () => { hovered = -1; tip.style.display = "none"; };
  el.addEventListener("mouseleave", onLeave);

  const onMsg = (msg, buffers) => {
    if (!msg || msg.type !== "hover") return;
    let url = "";
    if (buffers && buffers.length) {
      url = URL.createObjectURL(new Blob([buffers[0]], { type: "image/png" }));
    }
    tips.set(msg.point, { url, fields: msg.fields || {} });
    if (tips.size > TIP_CACHE) {
      const [oldest, entry] = tips.entries().next().value;
      if (entry.url) URL.revokeObjectURL(entry.url);
      tips.delete(oldest);
    }
    if (msg.point === hovered) showTip(hovered);
  };
  model.on("msg:custom", onMsg);

  function clearTips() {
    for (const entry of tips.values()) if (entry.url) URL.revokeObjectURL(entry.url);
    tips.clear();
    hovered = -1;
    tip.style.display = "none";
  }

  function report(text) {
    model.set("status", text);
    model.save_changes();
  }

  async function draw() {
    const mine = ++generation;
    const item = model.get("item");
    drop();
    clearTips();
    host.replaceChildren();
    note.textContent = "";
    if (!item) return;
    const loading = document.createElement("div");
    loading.className = "visloupe-bokeh-loading";
    loading.textContent = "Loading BokehJS …";
    host.appendChild(loading);
    try {
      const Bokeh = await loadBokeh(model);
      if (mine !== generation) return;
      const start = performance.now();
      host.replaceChildren();
      const target = document.createElement("div");
      host.appendChild(target);
      const columns = pointColumns(model);
      views = await Bokeh.embed.embed_item(JSON.parse(item), target);
      if (columns) {
        const source = findSource(views);
        if (!source) throw new Error(`no "${POINTS_NAME}" source in the map's document`);
        const selected = Array.from(source.selected.indices);
        source.data = columns;
        source.selected.indices = selected;
        const gl = hasWebGL();
        model.set("webgl", gl ? "webgl" : "canvas");
        model.save_changes();
        if (!gl) {
          note.textContent = "This browser offers no WebGL: the map is drawn on a 2-D canvas "
            + `(${columns.x.length} points; panning may be slow).`;
        }
      }
      await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
      el.__visloupeViews = views; // for tests: pixel positions of data points
      el.__visloupeDrawMs = performance.now() - start; // for benchmarks: embed to painted
      el.__visloupePaintedAt = Date.now();
      report(`rendered ${mine}`);
    } catch (error) {
      host.replaceChildren();
      const div = document.createElement("div");
      div.className = "visloupe-error";
      div.textContent = `plot failed: ${error}`;
      host.appendChild(div);
      report(`error: ${error}`);
    }
  }

  function drop() {
    if (!views) return;
    for (const view of views.roots) { try { view.remove(); } catch (e) { /* already gone */ } }
    views = null;
  }

  let pending = false;
  function schedule() { // item and points arrive in one update: draw once
    if (pending) return;
    pending = true;
    queueMicrotask(() => { pending = false; draw(); });
  }
  model.on("change:item", schedule);
  model.on("change:points", schedule);
  draw();
  return () => {
    window.removeEventListener("visloupe-select", onSelect);
    window.removeEventListener("visloupe-hover", onHover);
    el.removeEventListener("mousemove", onMouse);
    el.removeEventListener("mouseleave", onLeave);
    model.off("change:item", schedule);
    model.off("change:points", schedule);
    model.off("msg:custom", onMsg);
    clearTips();
    drop();
  };
}

export default { render };
