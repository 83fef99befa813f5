"""Real browser (testing layer 4): BoxExplorer in JupyterLab + headless Chromium + Playwright.

A generated notebook shows three boxes; the test drags one box and resizes another with the
mouse, then re-runs a cell that prints the Python-side boxes and containment table, and checks
that the move and the resize reached the kernel.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
import torch
from helpers.labserver import lab_notebook
from visloupe.core.boxes import hard_pairwise_overlap

INITIAL = [[0.0, 0.0, 4.0, 4.0], [0.5, 0.5, 1.5, 1.5], [5.0, 5.0, 6.0, 6.0]]

BUILD = textwrap.dedent(
    f"""
    import json
    from visloupe.widgets.boxes import BoxExplorer

    explorer = BoxExplorer({INITIAL!r}, ["parent", "child", "other"],
                           groups=["a", "a", "b"], width=520, height=420)
    explorer
    """
).strip()
REPORT = textwrap.dedent(
    """
    print("STATE", json.dumps({"boxes": explorer.boxes, "overlap": explorer.overlap.tolist(),
                               "table": explorer.table.value}))
    """
).strip()


def _state(page) -> tuple[str, dict]:
    text = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-OutputArea-output")
    raw = text.first.inner_text()
    line = next(x for x in raw.splitlines() if x.startswith("STATE "))
    return raw, json.loads(line[len("STATE "):])


def _bbox(locator) -> dict:
    """The bounding box of ``locator``, retried: the canvas redraws its SVG on every sync."""
    for _ in range(40):
        box = locator.bounding_box()
        if box is not None:
            return box
        time.sleep(0.1)
    raise AssertionError(f"{locator} has no bounding box")


def _drag(page, start: tuple[float, float], delta: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(start[0] + delta[0] * k / 10, start[1] + delta[1] * k / 10)
    page.mouse.up()


@pytest.mark.browser
def test_box_explorer_drag_and_resize_reach_python(tmp_path: Path) -> None:
    with lab_notebook(tmp_path, [BUILD, REPORT], ".visloupe-box-explorer rect.vl-box",
                      name="boxes.ipynb", ready_timeout=45) as lab:
        page = lab.page
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-OutputArea-output')]"
            ".some(o => o.innerText.includes('STATE '))", timeout=30_000)
        raw0, state0 = _state(page)
        assert state0["boxes"] == INITIAL
        assert state0["overlap"][1][0] == pytest.approx(1.0)

        explorer = page.locator(".visloupe-box-explorer")
        explorer.scroll_into_view_if_needed()
        assert explorer.locator("rect.vl-box").count() == 3

        # 1. move: drag the child box to the right, out of its parent
        child = _bbox(explorer.locator("rect.vl-box[data-name='child']"))
        start = (child["x"] + child["width"] / 2, child["y"] + child["height"] / 2)
        _drag(page, start, (child["width"] * 3.5, 0.0))

        # 2. resize: select the parent, pull its top-right (north-east) handle out
        page.mouse.move(5, 5)
        page.wait_for_timeout(300)
        parent = _bbox(explorer.locator("rect.vl-box[data-name='parent']"))
        page.mouse.click(parent["x"] + 0.8 * parent["width"],
                         parent["y"] + 0.2 * parent["height"])
        handle = explorer.locator(".vl-handle[data-handle='ne']")
        handle.wait_for(timeout=10_000)
        hb = _bbox(handle)
        _drag(page, (hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2),
              (parent["width"] * 0.3, -parent["height"] * 0.2))
        page.wait_for_timeout(500)  # let the last message reach the kernel

        # 3. ask the kernel what it has now
        page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        page.wait_for_function(
            "(old) => { const c = document.querySelectorAll('.jp-Notebook .jp-Cell')[1];"
            " const o = c && c.querySelector('.jp-OutputArea-output');"
            " return o && o.innerText.includes('STATE ') && o.innerText !== old; }",
            arg=raw0, timeout=30_000)
        _, state1 = _state(page)
        lab.screenshot()

    (p0, c0, o0), (p1, c1, o1) = INITIAL, state1["boxes"]
    # the child moved right by ~3.5 widths, keeping its size
    assert c1[0] - c0[0] == pytest.approx(3.5, abs=0.4)
    assert c1[2] - c1[0] == pytest.approx(1.0, abs=1e-6)
    assert c1[1] == pytest.approx(c0[1], abs=1e-6)
    # the parent was resized from its north-east corner: lower-left corner fixed, upper grew
    assert p1[0] == pytest.approx(p0[0]) and p1[1] == pytest.approx(p0[1])
    assert p1[2] > p0[2] + 0.5 and p1[3] > p0[3] + 0.3
    assert o1 == o0
    # the Python-side table was recomputed from the new boxes
    expected = hard_pairwise_overlap(*torch.tensor(state1["boxes"]).split(2, dim=1))
    assert torch.allclose(torch.tensor(state1["overlap"]), expected, atol=1e-5)
    assert state1["overlap"][0][1] != pytest.approx(state0["overlap"][0][1], abs=1e-3)
    assert state1["table"] != state0["table"]
    assert not lab.widget_errors(), lab.widget_errors()
