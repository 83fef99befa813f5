"""DatasetExplorer's map at 10 000 and 100 000 points in a real browser (issue 17).

One JupyterLab + headless Chromium run per size (Debian's /usr/bin/chromium, WebGL through
SwiftShader), one notebook with two plots of the same points side by side:

- **ours**: ``DatasetExplorer(..., max_points=n)`` on its Map tab: the figure as a small JSON
  document, the points as one binary float32 buffer, WebGL, thumbnails fetched on hover;
- **reference**: the same figure the standard Bokeh way: the points inside the JSON document
  (``json_item``, numpy columns as base64) plus a class-name column for the tooltip, drawn on
  Bokeh's default canvas, its selection relayed to Python by the same callback.

Measured for each: **first render** (kernel clock at the start of the cell that shows the plot to
the browser's clock when the points are painted; same machine, same wall clock; for ours this
includes building the map: embeddings and PCA), **draw** (BokehJS embed + data + two animation
frames, in the browser), **pan step** (median time to repaint after moving the x range, 20
steps), **selection round trip** (BokehJS's own hit test of a box over the left half of the
frame, as the box-select tool runs it on mouse-up, to the kernel's answer in the page, seen
by a MutationObserver: ours re-renders the selection line and a 48-image grid, the reference a
count; the hit test's own ms are printed apart) and, for ours,
**hover** (mouse on a point to its kernel-made thumbnail shown). The data are n synthetic 8x8
images in 10 colour classes (no model: the map embeds pixels, as DatasetExplorer does without
one).

A **renderer control** runs last in the same browser, with no Bokeh, widget or kernel: n instanced
3-px quads drawn by a minimal WebGL program onto a visible 620x520 canvas, through WebGL 1 (the
API BokehJS draws with) and WebGL 2, timed as a pan step is. It is the floor the browser's
renderer sets on a pan step at that many points (a check that the frame shows the quads keeps
a program that drew nothing from reading as fast).

    .venv/bin/python benchmarks/bench_map.py                # 10 000 and 100 000 points
    .venv/bin/python benchmarks/bench_map.py --sizes 10000  # one size

Goal (issue 17): interactive at 100 000 points; the numbers are printed, nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import labserver  # noqa: E402 - the real-browser tests' one scaffolding

WEBGL_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", "--use-angle=swiftshader",
              "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]

CELLS = [
    textwrap.dedent("""
    import json, time
    import numpy as np
    from bokeh.models import ColumnDataSource, HoverTool, LinearColorMapper
    from bokeh.plotting import figure
    import ipywidgets as w
    from visloupe.widgets import DatasetExplorer
    from visloupe.widgets.plots import BokehPlot
    from visloupe.widgets.style import PALETTE

    N = {n}
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, N)
    base = rng.integers(30, 226, size=(10, 3))
    noise = rng.normal(0, 25, size=(N, 8, 8, 3))
    images = np.clip(base[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    t = time.time()
    explorer = DatasetExplorer((images, labels.tolist()), max_points=N)
    timings = {{"profile_s": time.time() - t}}
    """),
    textwrap.dedent("""
    t0 = time.time()
    explorer.show_tab("Map")
    timings.update(ours_cell_start=t0 * 1000, ours_build_s=time.time() - t0,
                   item_bytes=len(explorer.map_plot.item),
                   points_bytes=len(explorer.map_plot.points))
    explorer
    """),
    textwrap.dedent("""
    t1 = time.time()
    table = explorer.map_points
    mapper = LinearColorMapper(palette=list(PALETTE[:10]), low=-0.5, high=9.5)
    src = ColumnDataSource({{"x": table["x"].to_numpy(), "y": table["y"].to_numpy(),
                             "c": table["code"].to_numpy(), "index": table["index"].to_numpy(),
                             "class_name": table["class_name"].tolist()}})
    fig = figure(width=620, height=520, title="reference", tools="pan,box_select,reset",
                 active_drag="box_select")
    fig.scatter("x", "y", source=src, size=3, fill_color={{"field": "c", "transform": mapper}},
                line_color=None)
    fig.add_tools(HoverTool(tooltips="#@index @class_name"))
    ref = BokehPlot(css_class="visloupe-ref")
    src.selected.js_on_change("indices", ref.select_js())
    ref.show(fig)
    info = w.HTML('<div class="visloupe-ref-info" data-count=""></div>')
    ref.observe(lambda c: setattr(info, "value", f'<div class="visloupe-ref-info" '
                                  f'data-count="{{len(c["new"])}}">{{len(c["new"])}}</div>'),
                "selected")
    timings.update(ref_cell_start=t1 * 1000, ref_item_bytes=len(ref.item))
    json.dump(timings, open("timings.json", "w"))
    w.VBox([ref, info])
    """),
]

VIEWS_JS = """(sel) => { const e = document.querySelector(sel);
  return Boolean(e && e.__visloupeViews && e.__visloupePaintedAt); }"""

FRAME_JS = """(sel) => {
  const pv = document.querySelector(sel).__visloupeViews.roots[0];
  const r = pv.el.getBoundingClientRect(), b = pv.frame.bbox;
  return [r.left + b.left, r.top + b.top, b.width, b.height];
}"""

PAN_JS = """async (sel) => {
  const pv = document.querySelector(sel).__visloupeViews.roots[0];
  const range = pv.model.x_range, times = [];
  const frame = () => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
  await frame();
  for (let k = 0; k < 20; k++) {
    const t = performance.now(), step = (range.end - range.start) * 0.02 * (k % 2 ? -1 : 1);
    range.setv({start: range.start + step, end: range.end + step});
    await frame();
    times.push(performance.now() - t);
  }
  return times;
}"""

IDLE_JS = """async () => {  // until 10 animation frames in a row come within 50 ms each
  let calm = 0, last = performance.now();
  while (calm < 10) {
    await new Promise((ok) => requestAnimationFrame(ok));
    const now = performance.now();
    calm = now - last < 50 ? calm + 1 : 0;
    last = now;
  }
}"""

WATCH_JS = """([sel, attr]) => {  // the DOM change itself, not the next animation frame
  window.__benchUp = null; window.__benchAnswer = null; window.__benchPainted = null;
  const done = () => {
    const e = document.querySelector(sel);
    if (e && e.getAttribute(attr)) { window.__benchAnswer = Date.now(); return true; }
    return false;
  };
  if (done()) return;
  const watch = new MutationObserver(() => { if (done()) watch.disconnect(); });
  watch.observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


SELECT_JS = """(sel) => {  // a box over the left half of the frame, as the box-select tool does
  const pv = document.querySelector(sel).__visloupeViews.roots[0];
  const rv = [...pv.renderer_views.values()].find((v) => v.model.data_source);
  const b = pv.frame.bbox;
  window.__benchUp = Date.now();
  const t0 = performance.now();
  const hit = rv.hit_test({type: "rect", sx0: b.left, sx1: b.left + b.width / 2,
                           sy0: b.top, sy1: b.bottom});
  const t1 = performance.now();
  rv.model.data_source.selected.indices = Array.from(hit.indices);
  requestAnimationFrame(() => requestAnimationFrame(() => { window.__benchPainted = Date.now(); }));
  return [hit.indices.length, t1 - t0, performance.now() - t1];
}"""


def box_select(page, plot_sel: str, answer_sel: str, attr: str
               ) -> tuple[float, int, float, float, float]:
    """Select the points in a box over the left half of the plot's frame with BokehJS's own
    hit test (what the box-select tool calls on mouse-up); ms from then to the kernel's answer
    in the page, how many points the box holds, the ms of the hit test and of setting the
    selection (BokehJS's own work, before anything reaches the kernel) and the ms until the
    selection is painted (two animation frames). (Synthetic mouse drags
    are read as taps now and then on a loaded headless browser, so the gesture itself is left
    out.)"""
    page.evaluate(IDLE_JS)
    page.evaluate(WATCH_JS, [answer_sel, attr])
    count, hit_ms, set_ms = page.evaluate(SELECT_JS, plot_sel)
    page.wait_for_function("() => window.__benchAnswer !== null && window.__benchPainted",
                           timeout=300_000)
    answer, painted = page.evaluate("() => [window.__benchAnswer - window.__benchUp,"
                                    " window.__benchPainted - window.__benchUp]")
    return answer, count, hit_ms, set_ms, painted


POINT_JS = """(k) => {
  const pv = document.querySelector('.visloupe-map').__visloupeViews.roots[0];
  const r = pv.el.getBoundingClientRect(), fr = pv.frame;
  const d = pv.model.renderers.find((x) => x.data_source.name === 'visloupe-points')
    .data_source.data;
  return [r.left + fr.x_scale.compute(d.x[k]), r.top + fr.y_scale.compute(d.y[k])];
}"""

TIP_JS = """() => { const i = document.querySelector('.visloupe-map .visloupe-map-tip img');
  return Boolean(i && i.style.display !== 'none' && i.complete && i.naturalWidth > 0
                 && i.closest('.visloupe-map-tip').style.display === 'block'); }"""


def hover_ms(page, n: int) -> float:
    """Mouse onto a point of our map; ms until the kernel's thumbnail shows in the tooltip
    (tries a few points; NaN if no tooltip came)."""
    for k in (0, n // 3, 2 * n // 3, n - 1):
        page.evaluate(IDLE_JS)
        x, y = page.evaluate(POINT_JS, k)
        page.mouse.move(x - 40, y - 40)
        page.wait_for_timeout(200)
        start = page.evaluate("() => Date.now()")
        page.mouse.move(x, y, steps=5)
        try:
            page.wait_for_function(TIP_JS, timeout=20_000)
        except Exception:  # noqa: BLE001 - the next point
            continue
        return page.evaluate("() => Date.now()") - start
    return float("nan")


# The renderer alone: n instanced quads (4 vertices, a per-point centre and colour, one constant
# size) drawn into a 620x520 canvas, timed to the second animation frame as PAN_JS times a step.
# WebGL 1 + ANGLE_instanced_arrays is the path BokehJS (regl) draws through; WebGL 2's core
# instancing is the same work through the other API. No Bokeh, no widget, no kernel.
CONTROL_HTML = """<canvas id="c" width="620" height="520"></canvas><script>
window.drawQuads = async (n, version) => {
  const canvas = document.createElement("canvas"); canvas.width = 620; canvas.height = 520;
  document.body.replaceChildren(canvas);
  const gl = canvas.getContext(version === 2 ? "webgl2" : "webgl", {antialias: false});
  if (!gl) return null;
  const ext = version === 2 ? null : gl.getExtension("ANGLE_instanced_arrays");
  const divisor = (l, d) => ext ? ext.vertexAttribDivisorANGLE(l, d) : gl.vertexAttribDivisor(l, d);
  const draw = () => ext ? ext.drawArraysInstancedANGLE(gl.TRIANGLE_STRIP, 0, 4, n)
                         : gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, n);
  const shader = (type, src) => { const s = gl.createShader(type); gl.shaderSource(s, src);
                                  gl.compileShader(s); return s; };
  const prog = gl.createProgram();
  gl.attachShader(prog, shader(gl.VERTEX_SHADER, `attribute vec2 corner; attribute vec2 centre;
    attribute vec4 colour; attribute float size; uniform vec2 shift; varying vec4 v;
    void main() { v = colour; gl_Position = vec4(centre + shift + corner * size, 0.0, 1.0); }`));
  gl.attachShader(prog, shader(gl.FRAGMENT_SHADER, `precision mediump float; varying vec4 v;
    void main() { gl_FragColor = v; }`));
  gl.linkProgram(prog); gl.useProgram(prog);
  const attribute = (name, data, width, div) => {
    const b = gl.createBuffer(); gl.bindBuffer(gl.ARRAY_BUFFER, b);
    gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
    const l = gl.getAttribLocation(prog, name); gl.enableVertexAttribArray(l);
    gl.vertexAttribPointer(l, width, gl.FLOAT, false, 0, 0); divisor(l, div);
  };
  const centres = new Float32Array(2 * n).map(() => Math.random() * 1.6 - 0.8);
  attribute("corner", new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), 2, 0);
  attribute("centre", centres, 2, 1);
  attribute("colour", new Float32Array(4 * n).map(() => Math.random()), 4, 1);
  attribute("size", new Float32Array([0.005]), 1, n);  // a constant, as regl sends one
  const shift = gl.getUniformLocation(prog, "shift"), times = [];
  const frame = () => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
  for (let k = 0; k < 9; k++) {
    const t = performance.now();
    gl.clearColor(1, 1, 1, 1); gl.clear(gl.COLOR_BUFFER_BIT);
    gl.uniform2f(shift, 0.01 * (k % 2), 0); draw();
    await frame();
    if (k > 0) times.push(performance.now() - t);  // the first includes shader compilation
  }
  // the frame must show the quads (a shader that failed to compile draws nothing, fast)
  const px = new Uint8Array(620 * 520 * 4);
  gl.clear(gl.COLOR_BUFFER_BIT); draw();
  gl.readPixels(0, 0, 620, 520, gl.RGBA, gl.UNSIGNED_BYTE, px);
  let drawn = 0;
  for (let i = 0; i < px.length; i += 4) drawn += px[i] + px[i + 1] + px[i + 2] < 765 ? 1 : 0;
  return [times.sort((a, b) => a - b)[4], drawn / (620 * 520)];
};
</script>"""


def renderer_control(page, n: int) -> dict:
    """Median frame of ``n`` instanced quads through WebGL 1 (BokehJS's path) and WebGL 2, in
    a fresh page of the benchmark's browser: how much of a pan step is the renderer itself."""
    control = page.context.browser.new_page()  # its own context: nothing shared with Lab
    try:
        control.set_content(CONTROL_HTML)
        out = {}
        for v in (1, 2):
            ms, drawn = control.evaluate("([n, v]) => drawQuads(n, v)", [n, v])
            assert drawn > 0.01, f"WebGL {v}: the control drew {drawn:.1%} of its canvas"
            out[f"webgl{v}_quads_ms"], out[f"webgl{v}_drawn"] = ms, round(drawn, 3)
        return out
    finally:
        control.close()


def run(n: int) -> dict:
    labserver.CHROMIUM_ARGS = WEBGL_ARGS  # the benchmark measures the WebGL path
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        code = [c.format(n=n).strip() for c in CELLS]
        with labserver.lab_notebook(tmp_path, code, ".visloupe-ref", name="map.ipynb",
                                    viewport=(1400, 3600), ready_timeout=900) as lab:
            page = lab.page
            for sel in (".visloupe-map", ".visloupe-ref"):
                page.wait_for_function(VIEWS_JS, arg=sel, timeout=600_000)
            times = json.loads((tmp_path / "root" / "timings.json").read_text())
            out = {"n": n, **times}
            out["webgl"] = page.evaluate(
                "() => { const c = document.createElement('canvas');"
                " return Boolean(c.getContext('webgl2') || c.getContext('webgl')); }")
            for key, sel, start in (("ours", ".visloupe-map", "ours_cell_start"),
                                    ("ref", ".visloupe-ref", "ref_cell_start")):
                painted = page.evaluate(f"() => document.querySelector('{sel}')"
                                        ".__visloupePaintedAt")
                out[f"{key}_first_render_ms"] = painted - times[start]
                out[f"{key}_draw_ms"] = page.evaluate(
                    f"() => document.querySelector('{sel}').__visloupeDrawMs")
                out[f"{key}_pan_ms"] = statistics.median(page.evaluate(PAN_JS, sel))
            # the reference first: our answer (a grid of the selected images) lengthens the page
            (out["ref_select_ms"], out["selected"], out["ref_hit_ms"], out["ref_set_ms"],
             out["ref_select_paint_ms"]) = box_select(
                page, ".visloupe-ref", ".visloupe-ref-info", "data-count")
            (out["ours_select_ms"], ours_count, out["ours_hit_ms"], out["ours_set_ms"],
             out["ours_select_paint_ms"]) = box_select(
                page, ".visloupe-map", ".visloupe-dataset-explorer .visloupe-selected",
                "data-indices")
            answered = page.get_attribute(".visloupe-dataset-explorer .visloupe-selected",
                                          "data-indices")
            assert len(answered.split(",")) == ours_count == out["selected"]
            out["ours_hover_ms"] = hover_ms(page, n)
            out.update(renderer_control(page, n))
            errors = lab.widget_errors()
            if errors:
                out["errors"] = errors[:5]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    print(f"# bench_map: {platform.platform()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}")
    rows = []
    for n in args.sizes:
        t = time.time()
        rows.append(run(n))
        print(json.dumps(rows[-1]), f"({time.time() - t:.0f} s)", flush=True)
    print("\n| points | WebGL | ours: build (kernel) | ours: first render | ref: first render "
          "| ours: draw | ref: draw | ours: pan step | ref: pan step | ours: select | "
          "ref: select | ours: hover | doc+points bytes ours / ref | renderer alone: "
          "WebGL 1 / WebGL 2 |")
    print("|" + "---|" * 14)
    for r in rows:
        print(f"| {r['n']:,} | {r['webgl']} | {r['ours_build_s']:.2f} s | "
              f"{r['ours_first_render_ms']:.0f} ms | {r['ref_first_render_ms']:.0f} ms | "
              f"{r['ours_draw_ms']:.0f} ms | {r['ref_draw_ms']:.0f} ms | "
              f"{r['ours_pan_ms']:.1f} ms | {r['ref_pan_ms']:.1f} ms | "
              f"{r['ours_select_ms']:.0f} ms | {r['ref_select_ms']:.0f} ms | "
              f"{r['ours_hover_ms']:.0f} ms | "
              f"{(r['item_bytes'] + r['points_bytes']) / 1e6:.2f} / "
              f"{r['ref_item_bytes'] / 1e6:.2f} MB | "
              f"{r['webgl1_quads_ms']:.0f} / {r['webgl2_quads_ms']:.0f} ms |")


if __name__ == "__main__":
    main()
