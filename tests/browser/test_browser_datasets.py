"""Real browser (testing layer 4, DESIGN.md §4-5): DatasetExplorer's map in JupyterLab + headless
Chromium + Playwright.

A generated notebook builds a DatasetExplorer on 40 small synthetic images (no model: the map
embeds pixels), opens the Map tab and displays it. The test runs all cells, waits for BokehJS
(sent inline by the kernel, no CDN) to draw the scatter from the binary point buffer, hovers a
point and checks that the kernel's thumbnail of that point appears in the tooltip, then drags a
box selection with the mouse and checks that the indices of exactly the points inside the box
come back from the kernel (Python re-renders them into the selection line), with no widget error.
It also checks the WebGL report: where the browser has no WebGL the map says it draws on a canvas.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from helpers.labserver import lab_notebook

NOTEBOOK_CODE = textwrap.dedent(
    """
    import numpy as np
    from visloupe.widgets import DatasetExplorer

    rng = np.random.default_rng(0)
    base = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220], [200, 200, 60]])
    labels = [i % 4 for i in range(40)]
    noise = rng.normal(0, 30, size=(40, 16, 16, 3)) * rng.uniform(0.2, 2.0, size=(40, 1, 1, 1))
    images = np.clip(base[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    explorer = DatasetExplorer((images, labels), class_names=["r", "g", "b", "y"])
    explorer.show_tab("Map")
    explorer
    """
).strip()

# Screen positions of the map's points, read from BokehJS's own view of the plot (the frame's
# scales map data to canvas pixels), with the dataset index each point carries.
POINTS_JS = """() => {
  const el = document.querySelector('.visloupe-map');
  const pv = el.__visloupeViews.roots[0];
  const r = pv.el.getBoundingClientRect();
  const fr = pv.frame;
  const renderer = pv.model.renderers.find(
    (x) => x.data_source && x.data_source.name === "visloupe-points");
  const d = renderer.data_source.data;
  const pts = [];
  for (let i = 0; i < d.x.length; i++) {
    pts.push({x: r.left + fr.x_scale.compute(d.x[i]), y: r.top + fr.y_scale.compute(d.y[i]),
              index: Math.round(d.index[i])});
  }
  return {pts, frame: [r.left + fr.bbox.left, r.top + fr.bbox.top, fr.bbox.width,
                       fr.bbox.height]};
}"""

# The widget's own hover tooltip: the thumbnail the kernel sent for the hovered point.
THUMB_JS = """() => {
  const found = [...document.querySelectorAll('.visloupe-map-tip img.visloupe-map-thumb')];
  const shown = found.filter((img) => {
    const b = img.getBoundingClientRect();
    return b.width > 0 && b.height > 0 && img.complete && img.naturalWidth > 0;
  });
  return shown.map((img) => ({src: img.src.slice(0, 30), w: img.naturalWidth,
                              text: img.parentElement.innerText}));
}"""

WEBGL_JS = """() => {
  const c = document.createElement('canvas');
  return Boolean(c.getContext('webgl2') || c.getContext('webgl'));
}"""


def _loneliest(pts: list[dict]) -> dict:
    """The point farthest from its nearest neighbour on screen (an unambiguous hover)."""
    def gap(p: dict) -> float:
        return min((p["x"] - q["x"]) ** 2 + (p["y"] - q["y"]) ** 2 for q in pts if q is not p)

    return max(pts, key=gap)


@pytest.mark.browser
def test_dataset_explorer_map_hover_and_box_select(tmp_path: Path) -> None:
    root_sel = ".visloupe-dataset-explorer"
    info_sel = f"{root_sel} .visloupe-selected"
    with lab_notebook(tmp_path, NOTEBOOK_CODE, root_sel, name="datasets.ipynb",
                      viewport=(1400, 1100)) as lab:
        page = lab.page
        page.wait_for_function(
            "() => { const e = document.querySelector('.visloupe-map');"
            " return e && e.__visloupeViews && e.__visloupeViews.roots.length; }",
            timeout=60_000,
        )
        page.wait_for_selector(info_sel, timeout=30_000)
        assert page.get_attribute(info_sel, "data-indices") == ""
        geometry = page.evaluate(POINTS_JS)
        pts = geometry["pts"]
        assert len(pts) == 40
        assert sorted(p["index"] for p in pts) == list(range(40))

        note = page.locator(".visloupe-map .visloupe-bokeh-note").inner_text()
        if page.evaluate(WEBGL_JS):
            assert note == ""
        else:  # the map says it fell back to a 2-D canvas
            assert "no WebGL" in note and "40 points" in note

        # hover: the tooltip shows the thumbnail the kernel made for that point, and its index
        target = _loneliest(pts)
        page.mouse.move(target["x"] - 30, target["y"] - 30)
        page.mouse.move(target["x"], target["y"], steps=5)
        page.wait_for_function(f"() => ({THUMB_JS})().length > 0", timeout=15_000)
        shown = page.evaluate(THUMB_JS)
        assert shown[0]["src"].startswith("blob:")
        assert shown[0]["w"] == 48
        assert f"#{target['index']} · " in shown[0]["text"]
        lab.screenshot("-hover")

        # box select by mouse drag over the left part of the frame (a gap between
        # points on both edges, so no point sits on the box border)
        left, top, width, height = geometry["frame"]
        xs = sorted(p["x"] for p in pts)
        k = max(range(len(xs) // 3, 2 * len(xs) // 3), key=lambda i: xs[i + 1] - xs[i])
        x0, x1 = left + 2, (xs[k] + xs[k + 1]) / 2
        y0, y1 = top + 2, top + height - 2
        expected = sorted(p["index"] for p in pts
                          if x0 <= p["x"] <= x1 and y0 <= p["y"] <= y1)
        assert 0 < len(expected) < 40
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
        page.mouse.move(x1, y1, steps=5)
        page.mouse.up()
        page.wait_for_function(
            f"() => document.querySelector({info_sel!r}).dataset.indices !== ''",
            timeout=30_000,
        )
        got = page.get_attribute(info_sel, "data-indices")
        assert sorted(int(i) for i in got.split(",")) == expected
        assert f"{len(expected)} selected" in page.locator(info_sel).inner_text()
        page.wait_for_function(  # the grid of the selected images, drawn by Python
            f"() => [...document.querySelectorAll('{root_sel} img')].some("
            "(i) => i.src.startsWith('blob:') && i.naturalWidth >= 64 * "
            f"{min(len(expected), 12)})",
            timeout=30_000,
        )
        assert page.locator(f"{root_sel} .visloupe-error").count() == 0
        assert page.locator("text=Error displaying widget").count() == 0
        lab.screenshot()
    assert not lab.widget_errors(), lab.widget_errors()
    assert not [u for u in lab.requests if "cdn.bokeh.org" in u or "cdn.pydata.org" in u]
