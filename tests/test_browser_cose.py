"""COSEExplorer in a real browser (testing layer 4): JupyterLab + headless Chromium + Playwright.
Runs all cells of a generated notebook, waits for the explorer, moves the magnitude slider with
the keyboard and sees the transformed image change."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from labserver import SERVER_FLAGS, free_port, running, wait_for_http

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

SETUP = """\
from visloupe.core import data, models
from visloupe.widgets.cose import COSEExplorer
model, pre = models.pretrained("shapes-cnn")
ds = data.load_builtin("shapes", split="test")
explorer = COSEExplorer({"cnn": model}, ds, ["grad_cam"], preprocess=pre, n_images=3, cell=96)
explorer"""


def _write_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = folder / "cose_browser.ipynb"
    nbformat.write(nb, path)
    return path


def test_magnitude_slider_changes_the_transformed_image(tmp_path: Path, repo_root: Path) -> None:
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` "
        "(the real-browser tests need it; never `playwright install`)"
    )
    from playwright.sync_api import sync_playwright
    from visloupe.core import models

    # Train (or load) the built-in here, so the kernel only reads the shared cache and the
    # browser waits for a widget, not for a first-use training run.
    models.pretrained("shapes-cnn")
    _write_notebook(tmp_path)
    port = free_port()
    jupyter = Path(sys.executable).parent / "jupyter"
    command = [str(jupyter), "lab", "--allow-root", *SERVER_FLAGS, f"--port={port}",
               f"--ServerApp.root_dir={tmp_path}", f"--ServerApp.runtime_dir={tmp_path / 'rt'}"]
    shots = Path(os.environ.get("VISLOUPE_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{port}"
    with running(command, tmp_path, tmp_path / "lab.log") as proc:
        wait_for_http(f"{base}/lab", timeout=90, proc=proc)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                errors: list[str] = []
                page.on("pageerror", lambda err: errors.append(str(err)))
                page.goto(f"{base}/lab/tree/cose_browser.ipynb")
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
                select = page.locator(".jp-Dialog button", has_text="Select")
                try:  # JupyterLab may ask which kernel to start
                    select.first.wait_for(timeout=8_000)
                    select.first.click()
                except Exception:  # noqa: BLE001 - no dialog: the kernel starts by itself
                    pass
                page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                                       timeout=60_000)
                page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
                root = page.wait_for_selector(".visloupe-cose-explorer", timeout=90_000)
                image = page.locator("img.visloupe-cose-transformed")
                image.wait_for(timeout=30_000)
                page.wait_for_function(
                    "() => { const i = document.querySelector('img.visloupe-cose-transformed');"
                    " return i && i.naturalWidth > 0; }", timeout=30_000)
                before_src = image.get_attribute("src")
                before = image.screenshot()
                page.screenshot(path=str(shots / "cose_before.png"))
                handle = page.locator(".visloupe-cose-magnitude .noUi-handle").first
                handle.focus()
                for _ in range(6):
                    page.keyboard.press("ArrowRight")
                deadline = time.monotonic() + 30
                after = before
                while time.monotonic() < deadline:
                    time.sleep(0.5)
                    if image.get_attribute("src") != before_src:
                        page.wait_for_function(
                            "() => document.querySelector('img.visloupe-cose-transformed')"
                            ".complete", timeout=10_000)
                        after = image.screenshot()
                        if after != before:
                            break
                page.screenshot(path=str(shots / "cose_after.png"))
                assert root is not None
                assert after != before, (
                    "the transformed image did not change after moving the magnitude slider; "
                    f"lab log: {(tmp_path / 'lab.log').read_text()[-2000:]}")
                status = page.locator(".visloupe-cose-status").inner_text()
                assert "SSIM" in status
                assert not page.locator(".visloupe-error").count(), \
                    page.locator(".visloupe-error").inner_text()
                assert not [e for e in errors if "visloupe" in e.lower()], errors
            except Exception:
                page.screenshot(path=str(shots / "cose_failure.png"))
                raise
            finally:
                browser.close()
