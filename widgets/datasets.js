// DatasetExplorer plots: a Bokeh document (Python's bokeh.embed.json_item) embedded in an
// anywidget. BokehJS is not fetched from a CDN: the first plot on a page asks the kernel for the
// inline bundle (bokeh.resources, mode "inline") with a custom message and injects it once.
// Selections on the map reach Python through the synced `selected` trait: a Bokeh CustomJS
// callback (written in Python) dispatches a window event tagged with this plot's `uid`.
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

function render({ model, el }) {
  el.classList.add("visloupe-bokeh");
  const extra = model.get("css_class");
  if (extra) el.classList.add(extra);
  const host = document.createElement("div");
  host.className = "visloupe-bokeh-host";
  el.appendChild(host);
  let views = null;
  let generation = 0;

  const onSelect = (evt) => {
    const detail = evt.detail || {};
    if (detail.uid !== model.get("uid")) return;
    model.set("selected", Array.from(detail.indices || [], Number));
    model.save_changes();
  };
  window.addEventListener("visloupe-select", onSelect);

  function report(text) {
    model.set("status", text);
    model.save_changes();
  }

  async function draw() {
    const mine = ++generation;
    const text = model.get("item");
    drop();
    host.replaceChildren();
    if (!text) return;
    const note = document.createElement("div");
    note.className = "visloupe-bokeh-loading";
    note.textContent = "Loading BokehJS …";
    host.appendChild(note);
    try {
      const Bokeh = await loadBokeh(model);
      if (mine !== generation) return;
      host.replaceChildren();
      const target = document.createElement("div");
      host.appendChild(target);
      views = await Bokeh.embed.embed_item(JSON.parse(text), target);
      el.__visloupeViews = views; // for tests: pixel positions of data points
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

  model.on("change:item", draw);
  draw();
  return () => {
    window.removeEventListener("visloupe-select", onSelect);
    model.off("change:item", draw);
    drop();
  };
}

export default { render };
