"""Real browser: the tour's opening, EfficientNet-Lite0 in the SaliencyExplorer (issue 15).

JupyterLab + headless Chromium, with the README's example: the explorer renders a real photo's
Grad-CAM and IG at 224x224 with the top-5 ImageNet classes as buttons; clicking the second
re-targets the maps (the image changes and the target dropdown shows that class), with no
widget or console error.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest
from helpers.labserver import img_bytes, lab_notebook, wait_for_blob_image, wait_for_new_src
from PIL import Image

NOTEBOOK_CODE = textwrap.dedent(
    """
    from visloupe.core import data, models
    from visloupe.widgets import SaliencyExplorer

    model, preprocess = models.pretrained("efficientnet-lite0")  # the README's example
    photos = data.load_builtin("photos", split="test")
    explorer = SaliencyExplorer(model, photos, ["grad_cam", "integrated_gradients"],
                                preprocess=preprocess, top_k=5, cell=224)
    explorer
    """
).strip()


@pytest.mark.browser
def test_real_model_explorer_retargets_from_the_top5_in_jupyterlab(tmp_path: Path) -> None:
    with lab_notebook(tmp_path, NOTEBOOK_CODE, ".visloupe-saliency-explorer",
                      name="real_model.ipynb", ready_timeout=120) as lab:
        page = lab.page
        img = ".visloupe-saliency-explorer img"
        wait_for_blob_image(page, img, timeout_ms=60_000)
        buttons = page.locator(".visloupe-saliency-explorer .visloupe-topk")
        page.wait_for_function(
            "() => document.querySelectorAll('.visloupe-topk')[1]?.innerText.includes('%')",
            timeout=60_000)
        assert buttons.count() == 5
        second = buttons.nth(1).inner_text().rsplit(" ", 1)[0]  # "Egyptian cat 36%" -> name
        src0, png0 = img_bytes(page, img)
        assert Image.open(io.BytesIO(png0)).width >= 3 * 224  # the crop + two 224-px maps
        lab.screenshot("_top1")
        # the widget alone, for the README and docs/gallery.md (with VISLOUPE_SCREENSHOTS set)
        page.locator(".visloupe-saliency-explorer").first.screenshot(
            path=str(lab.shots / "real_saliency-explorer.png"))

        buttons.nth(1).click()
        wait_for_new_src(page, img, src0, timeout_ms=60_000)
        target = page.locator(".visloupe-saliency-explorer select").filter(
            has_text="predicted class").first
        shown = target.evaluate("e => e.options[e.selectedIndex].text").replace("\xa0", " ")
        assert shown.endswith(f": {second}"), (shown, second)
        lab.screenshot("_retargeted")
        assert not lab.widget_errors(), lab.errors
