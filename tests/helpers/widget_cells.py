"""The notebook cells that build all seven widgets on the built-in data and the shipped
``shapes-cnn``, and the checks a page showing them must pass: shared by the real-browser tests
that render every widget in one page (Notebook 7, classic Notebook 6 with Colab's pins, VS
Code's widget managers)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from helpers.labserver import img_bytes, wait_for_blob_image, wait_for_new_src

SETUP = textwrap.dedent(
    """
    import numpy as np
    import torch
    from visloupe.core import data, models
    from visloupe import widgets as vw

    torch.set_num_threads(1)
    cnn, pre = models.pretrained("shapes-cnn")
    shapes = data.load_builtin("shapes", split="test").select(range(6))
    """
).strip()
#: root CSS class of each widget -> the cell that builds and shows it
WIDGETS = {
    ".visloupe-saliency-explorer":
        'vw.SaliencyExplorer(cnn, shapes, ["saliency", "grad_cam"], preprocess=pre, cell=96)',
    ".visloupe-splitig-explorer":
        "vw.SplitIGExplorer(cnn, shapes, preprocess=pre, n_steps=8, cell=96)",
    ".visloupe-cose-explorer":
        'vw.COSEExplorer(cnn, shapes, ["grad_cam"], preprocess=pre, n_images=2, cell=96)',
    ".visloupe-sanity-explorer":
        'vw.SanityCheckExplorer(cnn, shapes, ["saliency"], preprocess=pre, n_inputs=2)',
    ".visloupe-padding-inspector": "vw.PaddingInspector(cnn, shapes, preprocess=pre)",
    ".visloupe-dataset-explorer": "vw.DatasetExplorer(shapes, model=cnn, preprocess=pre)",
    ".visloupe-box-explorer":
        'vw.BoxExplorer(np.array([[0, 0, 4, 4], [1, 1, 2, 2], [5, 5, 6, 6.0]]), ["a", "b", "c"])',
}


def check_every_widget(page, scope: str, shots: Path, stem: str) -> None:
    """Each widget's root (under the CSS selector ``scope``) is visible with a non-empty size
    (a screenshot of it saved as ``<stem>_<widget>.png`` in ``shots``), and the kernel round
    trip works: BoxExplorer's anywidget drew its three boxes, BokehJS drew the dataset's
    class-balance chart, and SaliencyExplorer's next button brings a new image."""
    for selector in WIDGETS:
        root = page.locator(f"{scope} {selector}").first
        root.wait_for(state="visible", timeout=60_000)
        box = root.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50, (selector, box)
        root.scroll_into_view_if_needed()
        root.screenshot(path=str(shots / f"{stem}{selector.replace('.visloupe-', '_')}.png"))
    page.wait_for_function(
        "() => document.querySelectorAll('.visloupe-box-explorer rect.vl-box').length === 3",
        timeout=30_000)
    page.wait_for_function(
        "() => { const e = document.querySelector('.visloupe-dataset-explorer"
        " .visloupe-balance'); return e && e.__visloupeViews"
        " && e.__visloupeViews.roots.length > 0; }", timeout=30_000)
    img = ".visloupe-saliency-explorer img"
    wait_for_blob_image(page, img, timeout_ms=60_000)
    src0, _ = img_bytes(page, img)
    page.locator(".visloupe-saliency-explorer button", has_text="▶").first.click()
    wait_for_new_src(page, img, src0, timeout_ms=60_000)
