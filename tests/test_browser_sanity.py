"""Real browser (testing layer 4, DESIGN.md §4-5): the SanityCheckExplorer in JupyterLab +
headless Chromium + Playwright.

A generated notebook builds the explorer on a small random CNN (no training needed) and displays
it; the test runs all cells, waits for the explorer's CSS class and its maps image, moves the
"randomised depth" slider with the keyboard and checks that the maps image changed (a round trip
front end -> kernel -> new PNG -> front end), that the step label followed, and that no widget
error occurred.
"""

from __future__ import annotations

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

WIDGET_WORDS = ("widget", "visloupe", "jupyter-widgets", "ipywidgets", "model class", "comm")

NOTEBOOK_CODE = textwrap.dedent(
    """
    import torch
    from visloupe.core.models import SmallResNet
    from visloupe.widgets.sanity import SanityCheckExplorer

    torch.set_num_threads(1)
    model = SmallResNet(3, 5, (4, 8), norm="none")
    model.init_weights(torch.Generator().manual_seed(0))
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    explorer = SanityCheckExplorer(model.eval(), images, ["saliency", "input_x_gradient"],
                                   layers=["head", "features.1", "features.0"], cell=64)
    explorer
    """
).strip()


def _write_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK_CODE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = folder / "sanity.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.browser
def test_layer_slider_changes_the_maps(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            "real-browser tests need Debian's chromium at /usr/bin/chromium: run "
            "`sudo apt-get install -y chromium`; never `playwright install`"
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
    screenshot = tmp_path / "sanity.png"
    errors: list[str] = []
    root_sel = ".visloupe-sanity-explorer"
    img = f"{root_sel} .visloupe-sanity-maps img, {root_sel} img.visloupe-sanity-maps"
    label = f"{root_sel} .visloupe-sanity-layer-label"
    with running(command, tmp_path, tmp_path / "lab.log") as server:
        wait_for_http(f"{base}/api/status", timeout=120, proc=server)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            try:
                page.goto(f"{base}/lab/tree/sanity.ipynb", wait_until="domcontentloaded")
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
                wait_for_kernel(base, page)
                for attempt in range(2):  # a Run All sent while the kernel connects is lost
                    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                    page.locator(".lm-Menu-itemLabel").filter(
                        has_text=re.compile(r"^Run All Cells$")).first.click()
                    try:
                        page.wait_for_selector(root_sel, timeout=90_000)
                        break
                    except PlaywrightTimeout:
                        if attempt:
                            raise
                explorer = page.locator(root_sel)
                page.wait_for_function(
                    f"() => {{ const i = document.querySelector({img!r});"
                    " return i && i.src.startsWith('blob:') && i.naturalWidth > 0; }",
                    timeout=60_000,
                )
                src0, png0 = img_bytes(page, img)
                assert png0[:8] == b"\x89PNG\r\n\x1a\n"
                assert "step 0" in page.locator(label).inner_text()

                # step 0 -> 1 with the keyboard on the focused slider handle (fires on release)
                slider = explorer.locator(".visloupe-sanity-layer").first
                handle = slider.locator(".noUi-handle, .slider-handle, [role='slider']").first
                handle.focus()
                handle.click()
                page.keyboard.press("ArrowRight")
                page.wait_for_function(
                    f"(old) => document.querySelector({img!r}).src !== old", arg=src0,
                    timeout=60_000,
                )
                page.wait_for_function(
                    f"() => document.querySelector({label!r}).innerText.includes('step 1')",
                    timeout=30_000,
                )
                time.sleep(0.5)
                _, png1 = img_bytes(page, img)
                assert png1 != png0
                assert "head" in page.locator(label).inner_text()
                assert explorer.locator(".visloupe-error").count() == 0
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
