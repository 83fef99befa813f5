"""Real browser (testing layer 4, DESIGN.md §4-5): the PaddingInspector in JupyterLab + headless
Chromium + Playwright.

A generated notebook builds a PaddingInspector on a small random CNN and displays it; the test
runs all cells, waits for the inspector's CSS class, moves the input-size slider with the
keyboard and checks that the padding table's text and the foveation map's image changed (a round
trip front end -> kernel -> table + PNG -> front end) and that no widget error occurred.
"""

from __future__ import annotations

import io
import re
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from labserver import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SERVER_FLAGS,
    free_port,
    img_bytes,
    running,
    wait_for_http,
    wait_for_kernel,
)
from PIL import Image

WIDGET_WORDS = ("widget", "visloupe", "jupyter-widgets", "ipywidgets", "model class", "comm")

NOTEBOOK_CODE = textwrap.dedent(
    """
    import torch
    from visloupe.core.models import SmallResNet
    from visloupe.widgets.padding import PaddingInspector

    model = SmallResNet(3, 5, (4, 8, 8))
    model.init_weights(torch.Generator().manual_seed(0))
    data = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    inspector = PaddingInspector(model.eval(), data, sizes=(12, 24))
    inspector
    """
).strip()


def _write_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK_CODE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = folder / "padding.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.browser
def test_padding_inspector_slider_changes_table_and_map(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            "real-browser tests need Debian's chromium at /usr/bin/chromium: run "
            "`sudo apt-get install -y chromium` (or `make browser`); never `playwright install`"
        )
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
    screenshot = tmp_path / "padding.png"
    errors: list[str] = []
    root_sel = ".visloupe-padding-inspector"
    img = f"{root_sel} .visloupe-padding-foveation img, {root_sel} img.visloupe-padding-foveation"
    table = f"{root_sel} .visloupe-padding-table"
    with running(command, tmp_path, tmp_path / "lab.log") as server:
        wait_for_http(f"{base}/api/status", timeout=120, proc=server)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            try:
                page.goto(f"{base}/lab/tree/padding.ipynb", wait_until="domcontentloaded")
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
                wait_for_kernel(base, page)
                for attempt in range(2):  # a Run All sent while the kernel connects is lost
                    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                    page.locator(".lm-Menu-itemLabel").filter(
                        has_text=re.compile(r"^Run All Cells$")).first.click()
                    try:
                        page.wait_for_selector(root_sel, timeout=60_000)
                        break
                    except PlaywrightTimeout:
                        if attempt:
                            raise
                inspector = page.locator(root_sel)
                page.wait_for_function(
                    f"() => {{ const i = document.querySelector({img!r});"
                    " return i && i.src.startsWith('blob:') && i.naturalWidth > 0; }",
                    timeout=30_000,
                )
                page.wait_for_selector(f"{table} tr.visloupe-uneven", timeout=30_000)
                text0 = page.locator(table).inner_text()
                src0, png0 = img_bytes(page, img)
                assert "layer" in text0 and "features.1.conv1" in text0
                assert page.locator(f"{table} tr.visloupe-uneven").count() == 4  # at 16x16

                # 16 -> 17 with the keyboard on the focused slider handle (fires on release)
                slider = inspector.locator(".widget-slider", has_text="input size").first
                handle = slider.locator(".noUi-handle, .slider-handle, [role='slider']").first
                handle.focus()
                handle.click()
                page.keyboard.press("ArrowRight")
                page.wait_for_function(
                    f"(old) => document.querySelector({img!r}).src !== old", arg=src0,
                    timeout=30_000,
                )
                page.wait_for_function(
                    f"() => document.querySelector({table!r}).innerText.includes('17x17')",
                    timeout=30_000,
                )
                time.sleep(0.5)
                text1 = page.locator(table).inner_text()
                _, png1 = img_bytes(page, img)
                assert text1 != text0 and "17x17" in text1
                assert page.locator(f"{table} tr.visloupe-uneven").count() == 0
                assert png1 != png0
                fov = np.asarray(Image.open(io.BytesIO(png1)).convert("RGB")).astype(int)
                assert np.array_equal(fov, fov[::-1, ::-1])  # even padding: symmetric map
                assert "17 instead" not in inspector.inner_text()
                assert inspector.locator(".visloupe-error").count() == 0
                assert page.locator("text=Error displaying widget").count() == 0
                page.screenshot(path=str(screenshot), full_page=True)
            except Exception:
                page.screenshot(path=str(screenshot), full_page=True)
                print(f"screenshot of the failure: {screenshot}")
                raise
            finally:
                browser.close()
    widget_errors = [e for e in errors if any(word in e.lower() for word in WIDGET_WORDS)]
    assert not widget_errors, widget_errors
