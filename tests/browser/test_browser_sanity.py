"""Real browser (testing layer 4, DESIGN.md §4-5): the SanityCheckExplorer in JupyterLab +
headless Chromium + Playwright.

A generated notebook builds the explorer on a small random CNN (no training needed) and displays
it; the test runs all cells, waits for the explorer's CSS class and its maps image, moves the
"randomised depth" slider with the keyboard and checks that the maps image changed (a round trip
front end -> kernel -> new PNG -> front end), that the step label followed, and that no widget
error occurred.
"""

from __future__ import annotations

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
    wait_for_text,
)

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


@pytest.mark.browser
def test_layer_slider_changes_the_maps(tmp_path: Path) -> None:
    root_sel = ".visloupe-sanity-explorer"
    img = f"{root_sel} .visloupe-sanity-maps img, {root_sel} img.visloupe-sanity-maps"
    label = f"{root_sel} .visloupe-sanity-layer-label"
    with lab_notebook(tmp_path, NOTEBOOK_CODE, root_sel, name="sanity.ipynb") as lab:
        page = lab.page
        explorer = page.locator(root_sel)
        wait_for_blob_image(page, img, timeout_ms=60_000)
        src0, png0 = img_bytes(page, img)
        assert png0[:8] == b"\x89PNG\r\n\x1a\n"
        assert "step 0" in page.locator(label).inner_text()

        # step 0 -> 1 with the keyboard on the focused slider handle (fires on release)
        slider = explorer.locator(".visloupe-sanity-layer").first
        press_slider(page, slider)
        wait_for_new_src(page, img, src0, timeout_ms=60_000)
        wait_for_text(page, label, "step 1")
        time.sleep(0.5)
        _, png1 = img_bytes(page, img)
        assert png1 != png0
        assert "head" in page.locator(label).inner_text()
        assert explorer.locator(".visloupe-error").count() == 0
        assert page.locator("text=Error displaying widget").count() == 0
        lab.screenshot()
    assert not lab.widget_errors(), lab.widget_errors()
