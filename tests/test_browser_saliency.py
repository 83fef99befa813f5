"""Real browser (testing layer 4, DESIGN.md §4-5): JupyterLab + headless Chromium + Playwright.

A generated notebook builds a SaliencyExplorer and displays it; the test runs all cells, waits
for the explorer's CSS class, checks that no JavaScript or widget error occurred, then moves the
alpha slider with the keyboard and checks that the displayed image changed (a round trip
front end -> kernel -> PNG -> front end).
"""

from __future__ import annotations

import io
import re
import sys
import textwrap
import time
from pathlib import Path

import nbformat
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
    import numpy as np
    import torch
    from torch import nn
    from visloupe.widgets import SaliencyExplorer

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    explorer = SaliencyExplorer(model, (images, [0, 1, 2, 0, 1, 2]),
                                class_names=["a", "b", "c"], methods=["saliency", "grad_cam"])
    explorer
    """
).strip()


def _write_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK_CODE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = folder / "explorer.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.browser
def test_saliency_explorer_renders_and_reacts_in_jupyterlab(tmp_path: Path) -> None:
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
    screenshot = tmp_path / "jupyterlab.png"
    errors: list[str] = []
    with running(command, tmp_path, tmp_path / "lab.log") as server:
        wait_for_http(f"{base}/api/status", timeout=120, proc=server)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            try:
                page.goto(f"{base}/lab/tree/explorer.ipynb", wait_until="domcontentloaded")
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
                wait_for_kernel(base, page)
                for attempt in range(2):  # a Run All sent while the kernel connects is lost
                    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                    page.locator(".lm-Menu-itemLabel").filter(
                        has_text=re.compile(r"^Run All Cells$")).first.click()
                    try:
                        page.wait_for_selector(".visloupe-saliency-explorer", timeout=45_000)
                        break
                    except PlaywrightTimeout:
                        if attempt:
                            raise
                explorer = page.locator(".visloupe-saliency-explorer")
                img = ".visloupe-saliency-explorer img"
                page.wait_for_function(
                    f"() => {{ const i = document.querySelector({img!r});"
                    " return i && i.src.startsWith('blob:') && i.naturalWidth > 0; }",
                    timeout=30_000,
                )
                src0, png0 = img_bytes(page, img)
                first = Image.open(io.BytesIO(png0))
                assert first.width > 3 * 100, first.size  # input + two method cells

                # move the alpha slider with the keyboard (fires on every step)
                slider = explorer.locator(".widget-slider", has_text="alpha").first
                handle = slider.locator(".noUi-handle, .slider-handle, [role='slider']").first
                handle.focus()
                handle.click()
                for _ in range(4):
                    page.keyboard.press("ArrowRight")
                page.wait_for_function(
                    f"(old) => document.querySelector({img!r}).src !== old", arg=src0,
                    timeout=30_000,
                )
                time.sleep(0.5)  # let the last of the keyboard steps arrive
                _, png1 = img_bytes(page, img)
                assert png1 != png0
                second = Image.open(io.BytesIO(png1))
                assert second.size == first.size
                assert explorer.locator(".visloupe-error").count() == 0
                assert page.locator("text=Error displaying widget").count() == 0
                assert page.locator(".jp-OutputArea-output[data-mime-type="
                                    "'application/vnd.jupyter.stderr']").count() == 0
                page.screenshot(path=str(screenshot), full_page=True)
            except Exception:
                page.screenshot(path=str(screenshot), full_page=True)
                print(f"screenshot of the failure: {screenshot}")
                raise
            finally:
                browser.close()
    widget_errors = [e for e in errors if any(word in e.lower() for word in WIDGET_WORDS)]
    assert not widget_errors, widget_errors
