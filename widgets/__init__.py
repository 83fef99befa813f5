"""visloupe.widgets: interactive views over :mod:`visloupe.core` for Jupyter.

- :class:`SaliencyExplorer`: page through a dataset and compare saliency maps of several models
  and methods (the successor to Captum Insights).
- :class:`SplitIGExplorer`: where Integrated Gradients saturates; move the split by hand.
- :class:`COSEExplorer`: consistency and sensitivity of saliency under augmentations (COSE).
- :class:`PaddingInspector`: uneven padding, foveation and blind spots of a CNN ("Mind the Pad").
- :class:`BoxExplorer`: Task2Box boxes you can drag and resize; containment follows in Python.
- :class:`DatasetExplorer`: a dataset's statistics, classes, embedding map (select points),
  duplicates, outliers and confusion matrix.
- :class:`SanityCheckExplorer`: walk the model-randomisation cascade; original vs smoothed model.
- :class:`JobProgress`: a labelled progress bar for ``core.jobs.run(..., progress=)``.
- :mod:`visloupe.widgets.render`: overlays, colormaps, image grids and PNG bytes (numpy + PIL).
"""

from . import render
from .boxes import BoxExplorer
from .cose import COSEExplorer
from .datasets import DatasetExplorer
from .padding import PaddingInspector
from .progress import JobProgress
from .saliency import SaliencyExplorer
from .sanity import SanityCheckExplorer
from .splitig import SplitIGExplorer

__all__ = [
    "BoxExplorer",
    "COSEExplorer",
    "DatasetExplorer",
    "JobProgress",
    "PaddingInspector",
    "SaliencyExplorer",
    "SanityCheckExplorer",
    "SplitIGExplorer",
    "render",
]
