"""Real browser (testing layer 4, DESIGN.md §4-5): JupyterLab + headless Chromium + Playwright.

A generated notebook builds a SaliencyExplorer and displays it; the test runs all cells, waits
for the explorer's CSS class, checks that no JavaScript or widget error occurred, then moves the
alpha slider with the keyboard and checks that the displayed image changed (a round trip
front end -> kernel -> PNG -> front end).
"""

from __future__ import annotations

import io
import textwrap
import time
from pathlib import Path

import pytest
from helpers.labserver import (
    img_bytes,
    lab_notebook,
    press_slider,
    wait_for_blob_image,
    wait_for_new_src,
)
from PIL import Image

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


@pytest.mark.browser
def test_saliency_explorer_renders_and_reacts_in_jupyterlab(tmp_path: Path) -> None:
    with lab_notebook(tmp_path, NOTEBOOK_CODE, ".visloupe-saliency-explorer",
                      name="explorer.ipynb", ready_timeout=45) as lab:
        page = lab.page
        explorer = page.locator(".visloupe-saliency-explorer")
        img = ".visloupe-saliency-explorer img"
        wait_for_blob_image(page, img, timeout_ms=30_000)
        src0, png0 = img_bytes(page, img)
        first = Image.open(io.BytesIO(png0))
        assert first.width > 3 * 100, first.size  # input + two method cells

        # move the alpha slider with the keyboard (fires on every step)
        slider = explorer.locator(".widget-slider", has_text="alpha").first
        press_slider(page, slider, presses=4)
        wait_for_new_src(page, img, src0, timeout_ms=30_000)
        time.sleep(0.5)  # let the last of the keyboard steps arrive
        _, png1 = img_bytes(page, img)
        assert png1 != png0
        second = Image.open(io.BytesIO(png1))
        assert second.size == first.size
        assert explorer.locator(".visloupe-error").count() == 0
        assert page.locator("text=Error displaying widget").count() == 0
        assert page.locator(".jp-OutputArea-output[data-mime-type="
                            "'application/vnd.jupyter.stderr']").count() == 0
        lab.screenshot()
    assert not lab.widget_errors(), lab.widget_errors()
