"""COSEExplorer in a real browser (testing layer 4): JupyterLab + headless Chromium + Playwright.
Runs all cells of a generated notebook, waits for the explorer, moves the magnitude slider with
the keyboard and sees the transformed image change."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers.labserver import lab_notebook

pytestmark = pytest.mark.browser

SETUP = """\
from visloupe.core import data, models
from visloupe.widgets.cose import COSEExplorer
model, pre = models.pretrained("shapes-cnn")
ds = data.load_builtin("shapes", split="test")
explorer = COSEExplorer({"cnn": model}, ds, ["grad_cam"], preprocess=pre, n_images=3, cell=96)
explorer"""


def test_magnitude_slider_changes_the_transformed_image(tmp_path: Path, repo_root: Path) -> None:
    from visloupe.core import models

    # Train (or load) the built-in here, so the kernel only reads the shared cache and the
    # browser waits for a widget, not for a first-use training run.
    models.pretrained("shapes-cnn")
    with lab_notebook(tmp_path, SETUP, ".visloupe-cose-explorer", name="cose.ipynb") as lab:
        page = lab.page
        root = page.query_selector(".visloupe-cose-explorer")
        image = page.locator("img.visloupe-cose-transformed")
        image.wait_for(timeout=30_000)
        page.wait_for_function(
            "() => { const i = document.querySelector('img.visloupe-cose-transformed');"
            " return i && i.naturalWidth > 0; }", timeout=30_000)
        before_src = image.get_attribute("src")
        before = image.screenshot()
        lab.screenshot("_before", full_page=False)
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
        lab.screenshot("_after", full_page=False)
        assert root is not None
        assert after != before, (
            "the transformed image did not change after moving the magnitude slider; "
            f"lab log: {lab.log.read_text()[-2000:]}")
        status = page.locator(".visloupe-cose-status").inner_text()
        assert "SSIM" in status
        assert not page.locator(".visloupe-error").count(), \
            page.locator(".visloupe-error").inner_text()
    assert not lab.widget_errors(), lab.widget_errors()
