"""visloupe.core.profiling: what is in a data set, seen through statistics and through a model.

Dataset views in the spirit of Know Your Data and FiftyOne, computed inside the notebook on any
data ``as_image_source`` accepts (HF ``Dataset``/``IterableDataset``, torch datasets, folders,
lists, arrays):

- :func:`profile_dataset` -> one row of statistics per image (size, mode, brightness, contrast,
  colourfulness, sharpness, file size, per-row errors); :func:`class_summary` per class.
- :func:`class_means`, :func:`class_samples`: mean image and sample picks per class.
- :func:`embed` -> pooled activations ``(N, D)`` of any layer (penultimate by default), cached on
  disk; :func:`project` -> ``(N, 2)`` by PCA, t-SNE or UMAP (optional extra).
- :func:`near_duplicates` (pixel hashes + embedding distance, chunked), :func:`outliers`
  (mean k-NN distance).
- :func:`confusion` -> :class:`ConfusionResult` (matrix, per-class accuracy, cell samples).
- :func:`thumbnail` (display helper), :func:`subset` (selected rows as data any widget accepts).
"""

from ._sources import DEFAULT_STREAM_SAMPLE
from .confusion import ConfusionResult, confusion
from .embed import embed, model_fingerprint, pool
from .neighbours import knn_scores, near_duplicates, outliers, project
from .profile import (
    IndexSubset,
    class_means,
    class_samples,
    class_summary,
    image_stats,
    profile_dataset,
    subset,
    thumbnail,
)

__all__ = [
    "DEFAULT_STREAM_SAMPLE",
    "ConfusionResult",
    "IndexSubset",
    "class_means",
    "class_samples",
    "class_summary",
    "confusion",
    "embed",
    "image_stats",
    "knn_scores",
    "model_fingerprint",
    "near_duplicates",
    "outliers",
    "pool",
    "profile_dataset",
    "project",
    "subset",
    "thumbnail",
]
