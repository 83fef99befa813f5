"""The notebook cells that build all seven widgets on the built-in data and the shipped
``shapes-cnn``: shared by the real-browser tests that render every widget in one notebook
(Notebook 7, classic Notebook 6 with Colab's pins)."""

from __future__ import annotations

import textwrap

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
