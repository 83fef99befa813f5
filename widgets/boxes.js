// BoxExplorer canvas: 2-D boxes in SVG; drag to move, handles to resize, background to pan,
// wheel to zoom. The new boxes go back to Python through the synced `boxes` traitlet on
// pointer release, where the containment table is recomputed.
const NS = "http://www.w3.org/2000/svg";
const HANDLES = ["nw", "n", "ne", "e", "se", "s", "sw", "w"];

function el(tag, attrs, parent) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function bounds(boxes) {
  if (!boxes.length) return [0, 0, 1, 1];
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const b of boxes) {
    x0 = Math.min(x0, b[0]); y0 = Math.min(y0, b[1]);
    x1 = Math.max(x1, b[2]); y1 = Math.max(y1, b[3]);
  }
  const pad = 0.06 * Math.max(x1 - x0, y1 - y0, 1e-6);
  return [x0 - pad, y0 - pad, x1 + pad, y1 + pad];
}

function render({ model, el: root }) {
  root.classList.add("visloupe-box-canvas");
  const width = model.get("width"), height = model.get("height");
  const svg = el("svg", { width, height, class: "vl-svg" }, root);
  svg.style.touchAction = "none";
  svg.style.userSelect = "none";
  const layer = el("g", {}, svg);
  const labels = el("g", { class: "vl-labels" }, svg);
  const handleLayer = el("g", {}, svg);
  const tip = document.createElement("div");
  tip.className = "vl-tip";
  root.appendChild(tip);

  let boxes = model.get("boxes").map((b) => b.slice());
  let view = bounds(boxes); // data-space [x0, y0, x1, y1]
  let drag = null;
  let hover = -1;

  // data (x, y up) <-> svg user units (y down): svg_y = -y
  function setViewBox() {
    const [x0, y0, x1, y1] = view;
    let w = x1 - x0, h = y1 - y0;
    const aspect = width / height;
    let cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    if (w / h > aspect) h = w / aspect; else w = h * aspect;
    svg.setAttribute("viewBox", `${cx - w / 2} ${-cy - h / 2} ${w} ${h}`);
  }
  function unit() { // data units per screen pixel
    const vb = svg.viewBox.baseVal;
    return vb.width / width;
  }
  function toData(evt) {
    const pt = svg.createSVGPoint();
    pt.x = evt.clientX; pt.y = evt.clientY;
    const p = pt.matrixTransform(svg.getScreenCTM().inverse());
    return [p.x, -p.y];
  }

  function related(i) {
    const parents = new Set(), children = new Set();
    for (const [c, p] of model.get("links")) {
      if (c === i) parents.add(p);
      if (p === i) children.add(c);
    }
    return { parents, children };
  }

  function draw() {
    setViewBox();
    layer.replaceChildren(); labels.replaceChildren(); handleLayer.replaceChildren();
    const colors = model.get("colors"), names = model.get("names");
    const selected = model.get("selected");
    const focus = hover >= 0 ? hover : selected;
    const rel = focus >= 0 ? related(focus) : { parents: new Set(), children: new Set() };
    const u = unit();
    const order = boxes.map((b, i) => i).sort((a, b) => {
      const A = (boxes[a][2] - boxes[a][0]) * (boxes[a][3] - boxes[a][1]);
      const B = (boxes[b][2] - boxes[b][0]) * (boxes[b][3] - boxes[b][1]);
      return B - A; // big boxes first, small ones on top
    });
    for (const i of order) {
      const [x0, y0, x1, y1] = boxes[i];
      let stroke = colors[i] || "#1f77b4", sw = 1.5, op = 0.18;
      if (rel.parents.has(i)) { stroke = "#d62728"; sw = 3; op = 0.28; }
      if (rel.children.has(i)) { stroke = "#2ca02c"; sw = 3; op = 0.28; }
      if (i === focus) { sw = 3.5; op = 0.4; }
      const r = el("rect", {
        x: x0, y: -y1, width: Math.max(x1 - x0, 0), height: Math.max(y1 - y0, 0),
        fill: colors[i] || "#1f77b4", "fill-opacity": op, stroke, "stroke-width": sw * u,
        class: "vl-box", "data-index": i, "data-name": names[i] || String(i),
      }, layer);
      r.style.cursor = "move";
      el("title", {}, r).textContent = names[i] || String(i);
    }
    // Labels without pile-ups: the focus and its relations first, then big boxes before small
    // ones; a label that would overlap one already placed is left out (hover names any box).
    const placed = [];
    const first = [focus, ...rel.parents, ...rel.children].filter((i) => i >= 0);
    for (const i of [...new Set([...first, ...order])]) {
      const [x0, , , y1] = boxes[i];
      const name = names[i] || String(i);
      const box = [x0 + 2 * u, -y1 + u, x0 + (4 + 6.5 * name.length) * u, -y1 + 14 * u];
      const free = placed.every((q) => box[2] < q[0] || box[0] > q[2] || box[3] < q[1]
                                      || box[1] > q[3]);
      if (!free && !first.includes(i)) continue;
      placed.push(box);
      const t = el("text", {
        x: x0 + 3 * u, y: -y1 + 12 * u, "font-size": 11 * u, fill: "#333333",
        "pointer-events": "none", class: "vl-label",
      }, labels);
      t.textContent = name;
    }
    if (selected >= 0 && selected < boxes.length) {
      const [x0, y0, x1, y1] = boxes[selected];
      const pos = {
        nw: [x0, y1], n: [(x0 + x1) / 2, y1], ne: [x1, y1], e: [x1, (y0 + y1) / 2],
        se: [x1, y0], s: [(x0 + x1) / 2, y0], sw: [x0, y0], w: [x0, (y0 + y1) / 2],
      };
      const hs = 9 * u;
      for (const h of HANDLES) {
        // just outside the box, so the whole inside of even a tiny box moves it
        const out = hs / 2 + u;
        const hx = pos[h][0] + (h.includes("e") ? out : h.includes("w") ? -out : 0);
        const hy = pos[h][1] + (h.includes("n") ? out : h.includes("s") ? -out : 0);
        const r = el("rect", {
          x: hx - hs / 2, y: -hy - hs / 2, width: hs, height: hs, fill: "white",
          stroke: "#333333", "stroke-width": 1.2 * u, class: "vl-handle", "data-handle": h,
        }, handleLayer);
        r.style.cursor = (h === "n" || h === "s") ? "ns-resize"
          : (h === "e" || h === "w") ? "ew-resize"
          : (h === "ne" || h === "sw") ? "nesw-resize" : "nwse-resize";
      }
    }
  }

  function showTip(evt, i) {
    const names = model.get("names");
    tip.textContent = names[i] || String(i);
    tip.style.display = "block";
    const rect = root.getBoundingClientRect();
    tip.style.left = `${evt.clientX - rect.left + 12}px`;
    tip.style.top = `${evt.clientY - rect.top + 12}px`;
  }

  function onDown(evt) {
    const target = evt.target;
    const p = toData(evt);
    if (target.classList.contains("vl-handle")) {
      const i = model.get("selected");
      drag = { mode: "resize", handle: target.getAttribute("data-handle"), i, start: p,
               orig: boxes[i].slice() };
    } else if (target.classList.contains("vl-box")) {
      const i = Number(target.getAttribute("data-index"));
      model.set("selected", i);
      model.save_changes();
      drag = { mode: "move", i, start: p, orig: boxes[i].slice() };
    } else {
      drag = { mode: "pan", start: [evt.clientX, evt.clientY], view: view.slice() };
    }
    svg.setPointerCapture(evt.pointerId);
    evt.preventDefault();
    draw();
  }

  function onMove(evt) {
    if (!drag) {
      const t = evt.target;
      const i = t.classList && t.classList.contains("vl-box") ? Number(t.getAttribute("data-index")) : -1;
      if (i !== hover) { hover = i; draw(); }
      if (i >= 0) showTip(evt, i); else tip.style.display = "none";
      return;
    }
    if (drag.mode === "pan") {
      const u = unit();
      const dx = (evt.clientX - drag.start[0]) * u, dy = (evt.clientY - drag.start[1]) * u;
      view = [drag.view[0] - dx, drag.view[1] + dy, drag.view[2] - dx, drag.view[3] + dy];
      draw();
      return;
    }
    const p = toData(evt);
    const dx = p[0] - drag.start[0], dy = p[1] - drag.start[1];
    const [x0, y0, x1, y1] = drag.orig;
    const b = drag.orig.slice();
    if (drag.mode === "move") {
      b[0] = x0 + dx; b[2] = x1 + dx; b[1] = y0 + dy; b[3] = y1 + dy;
    } else {
      const h = drag.handle, minSide = 4 * unit();
      if (h.includes("w")) b[0] = Math.min(x0 + dx, x1 - minSide);
      if (h.includes("e")) b[2] = Math.max(x1 + dx, x0 + minSide);
      if (h.includes("s")) b[1] = Math.min(y0 + dy, y1 - minSide);
      if (h.includes("n")) b[3] = Math.max(y1 + dy, y0 + minSide);
    }
    boxes[drag.i] = b;
    draw();
  }

  function onUp(evt) {
    if (!drag) return;
    const finished = drag;
    drag = null;
    try { svg.releasePointerCapture(evt.pointerId); } catch (e) { /* already released */ }
    if (finished.mode !== "pan") {
      const changed = finished.orig.some((v, k) => v !== boxes[finished.i][k]);
      if (changed) {
        model.set("boxes", boxes.map((b) => b.slice()));
        model.save_changes();
      }
    }
    draw();
  }

  function onWheel(evt) {
    evt.preventDefault();
    const [px, py] = toData(evt);
    const f = Math.exp(evt.deltaY * 0.0015);
    view = [px + (view[0] - px) * f, py + (view[1] - py) * f,
            px + (view[2] - px) * f, py + (view[3] - py) * f];
    draw();
  }

  function onDouble(evt) {
    if (evt.target === svg) { view = bounds(boxes); draw(); }
  }

  svg.addEventListener("pointerdown", onDown);
  svg.addEventListener("pointermove", onMove);
  svg.addEventListener("pointerup", onUp);
  svg.addEventListener("pointercancel", onUp);
  svg.addEventListener("wheel", onWheel, { passive: false });
  svg.addEventListener("dblclick", onDouble);
  svg.addEventListener("pointerleave", () => { tip.style.display = "none"; });

  const onBoxes = () => {
    boxes = model.get("boxes").map((b) => b.slice());
    draw();
  };
  model.on("change:boxes", onBoxes);
  model.on("change:selected", draw);
  model.on("change:links", draw);
  model.on("change:colors", draw);
  model.on("change:names", draw);
  draw();
  return () => {
    model.off("change:boxes", onBoxes);
    model.off("change:selected", draw);
    model.off("change:links", draw);
    model.off("change:colors", draw);
    model.off("change:names", draw);
  };
}

export default { render };
