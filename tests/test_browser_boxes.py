"""Real browser (testing layer 4): BoxExplorer in JupyterLab + headless Chromium + Playwright.

A generated notebook shows three boxes; the test drags one box and resizes another with the
mouse, then re-runs a cell that prints the Python-side boxes and containment table, and checks
that the move and the resize reached the kernel.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
import torch
from labserver import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SERVER_FLAGS,
    free_port,
    running,
    wait_for_http,
    wait_for_kernel,
)
from visloupe.core.boxes import hard_pairwise_overlap

WIDGET_WORDS = ("widget", "visloupe", "anywidget", "esm", "model class", "comm")
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


def _write_notebook(folder: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(BUILD), nbformat.v4.new_code_cell(REPORT)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, folder / "boxes.ipynb")


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
    if not CHROMIUM.exists():
        pytest.fail("real-browser tests need Debian's chromium at /usr/bin/chromium: run "
                    "`sudo apt-get install -y chromium`; never `playwright install`")
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    root = tmp_path / "root"
    root.mkdir()
    _write_notebook(root)
    port = free_port()
    jupyter = Path(sys.executable).parent / "jupyter"
    command = [
        str(jupyter), "lab", "--allow-root", *SERVER_FLAGS, f"--port={port}",
        f"--ServerApp.root_dir={root}", f"--ServerApp.runtime_dir={tmp_path / 'runtime'}",
        f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
        f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
    ]
    base = f"http://127.0.0.1:{port}"
    screenshot = tmp_path / "boxes.png"
    errors: list[str] = []
    with running(command, tmp_path, tmp_path / "lab.log") as server:
        wait_for_http(f"{base}/api/status", timeout=120, proc=server)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            try:
                page.goto(f"{base}/lab/tree/boxes.ipynb", wait_until="domcontentloaded")
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
                wait_for_kernel(base, page, timeout=60.0)
                for attempt in range(2):  # a Run All sent while the kernel connects is lost
                    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                    page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
                    try:
                        page.wait_for_selector(".visloupe-box-explorer rect.vl-box",
                                               timeout=45_000)
                        break
                    except PlaywrightTimeout:
                        if attempt:
                            raise
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
                page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-InputArea-editor") \
                    .click()
                page.keyboard.press("Shift+Enter")
                page.wait_for_function(
                    "(old) => { const c = document.querySelectorAll('.jp-Notebook .jp-Cell')[1];"
                    " const o = c && c.querySelector('.jp-OutputArea-output');"
                    " return o && o.innerText.includes('STATE ') && o.innerText !== old; }",
                    arg=raw0, timeout=30_000)
                _, state1 = _state(page)
                page.screenshot(path=str(screenshot), full_page=True)
            except Exception:
                page.screenshot(path=str(screenshot), full_page=True)
                print(f"screenshot of the failure: {screenshot}")
                raise
            finally:
                browser.close()

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
    widget_errors = [e for e in errors if any(word in e.lower() for word in WIDGET_WORDS)]
    assert not widget_errors, widget_errors
