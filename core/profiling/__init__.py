"""visloupe.core.profiling: what is in a data set, seen through statistics and through a model.

Dataset views in the spirit of Know Your Data and FiftyOne, computed inside the notebook on any
data ``as_image_source`` accepts (HF ``Dataset``/``IterableDataset``, torch datasets, folders,
lists, arrays):

- :func:`profile_dataset` -> one row of statistics per image (size, mode, brightness, contrast,
  colourfulness, sharpness, file size, per-row errors); :func:`class_summary` per class.
- :func:`class_means`, :func:`class_samples`: mean image and sample picks per class.
- :func:`pixel_embeddings` -> downsampled pixels ``(N, size*size*3)``, a map without a model.
- :func:`embed` -> pooled activations ``(N, D)`` of any layer (penultimate by default), cached on
  disk; :func:`project` -> ``(N, 2)`` by PCA, t-SNE or UMAP (optional extra).
- :func:`near_duplicates` (pixel hashes + embedding distance, chunked), :func:`outliers`
  (mean k-NN distance).
- :func:`confusion` -> :class:`ConfusionResult` (matrix, per-class accuracy, cell samples).
- :func:`thumbnail` (display helper). Selected rows as data any widget accepts:
  ``visloupe.core.data.as_image_source(data).select(indices)`` (rows keep their original ids).

Conventions: the survey these views come from (Alsallakh et al., "A Tour of Visualization
Techniques for Computer Vision Datasets", arXiv:2204.08601, 2022) shows per-class mean images,
distributions of image properties and 2-D maps of embeddings; it prescribes no formulas that we
could find, so each statistic follows its own source (:func:`image_stats`): BT.601 luma on
[0, 1], population standard deviation, Hasler & Süsstrunk's colourfulness on 0..255, variance
of the 4-neighbour Laplacian. Class means average RGB images resized bilinearly;
``project("pca")`` gives the unscaled principal-component scores of the centred embeddings.
"""

from .confusion import ConfusionResult, confusion
from .embed import embed, model_fingerprint, pixel_embeddings, pool
from .neighbours import knn_scores, near_duplicates, outliers, project
from .profile import (
    class_means,
    class_samples,
    class_summary,
    image_stats,
    profile_dataset,
    thumbnail,
)

__all__ = [
    "ConfusionResult",
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
    "pixel_embeddings",
    "pool",
    "profile_dataset",
    "project",
    "thumbnail",
]
