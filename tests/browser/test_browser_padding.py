"""Real browser (testing layer 4, DESIGN.md §4-5): the PaddingInspector in JupyterLab + headless
Chromium + Playwright.

A generated notebook builds a PaddingInspector on a small random CNN and displays it; the test
runs all cells, waits for the inspector's CSS class, moves the input-size slider with the
keyboard and checks that the padding table's text and the foveation map's image changed (a round
trip front end -> kernel -> table + PNG -> front end) and that no widget error occurred.
"""

from __future__ import annotations

import io
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.labserver import (
    img_bytes,
    lab_notebook,
    press_slider,
    wait_for_blob_image,
    wait_for_new_src,
    wait_for_text,
)
from PIL import Image

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


@pytest.mark.browser
def test_padding_inspector_slider_changes_table_and_map(tmp_path: Path) -> None:
    root_sel = ".visloupe-padding-inspector"
    img = f"{root_sel} .visloupe-padding-foveation img, {root_sel} img.visloupe-padding-foveation"
    table = f"{root_sel} .visloupe-padding-table"
    with lab_notebook(tmp_path, NOTEBOOK_CODE, root_sel, name="padding.ipynb",
                      ready_timeout=60) as lab:
        page = lab.page
        inspector = page.locator(root_sel)
        wait_for_blob_image(page, img, timeout_ms=30_000)
        page.wait_for_selector(f"{table} tr.visloupe-uneven", timeout=30_000)
        text0 = page.locator(table).inner_text()
        src0, png0 = img_bytes(page, img)
        assert "layer" in text0 and "features.1.conv1" in text0
        assert page.locator(f"{table} tr.visloupe-uneven").count() == 4  # at 16x16

        # 16 -> 17 with the keyboard on the focused slider handle (fires on release)
        slider = inspector.locator(".widget-slider", has_text="input size").first
        press_slider(page, slider)
        wait_for_new_src(page, img, src0, timeout_ms=30_000)
        wait_for_text(page, table, "17x17")
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
        lab.screenshot()
    assert not lab.widget_errors(), lab.widget_errors()
