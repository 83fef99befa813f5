"""Task representations from any image encoder: the mean and ``[mean; var]`` of a model's
embeddings over a dataset's images (Task2Box's "mean (CLIP)" and "mean, var (CLIP)" features,
Daroya et al., CVPR 2024, with any encoder in place of CLIP)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_int

__all__ = ["DatasetFeatures", "dataset_features"]


@dataclass(frozen=True)
class DatasetFeatures:
    """Per-dataset ``mean`` and ``var`` ``(G, D)`` of image embeddings and image ``counts``
    ``(G,)``; ``mean_var`` is ``[mean; var]`` ``(G, 2D)``."""

    mean: Tensor
    var: Tensor
    counts: Tensor

    @property
    def mean_var(self) -> Tensor:
        return torch.cat([self.mean, self.var], dim=1)


def dataset_features(model: nn.Module, source: Any, groups: Sequence[Sequence[int]] | None = None,
                     layer: str | None = None, *,
                     preprocess: Callable[[Any], Tensor] | None = None,
                     batch_size: int = 64) -> DatasetFeatures:
    """Mean and variance of ``model``'s embeddings over the images of ``source``.

    ``source``: anything :func:`visloupe.core.data.as_image_source` accepts. ``groups``: lists of
    image indices, one per dataset (e.g. the images of each node's classes); default one dataset
    of all images. ``layer``: a module name (``dict(model.named_modules())``) whose output is the
    embedding (pooled by :func:`visloupe.core.models.features.pool`: conv maps and channels-last
    grids averaged over space, token sequences over tokens); default the model's output. The
    model is run in eval mode, its training flags restored afterwards, and the forward hook
    always removed.
    """
    from visloupe.core.data import as_image_source
    from visloupe.core.models.adapter import check_model
    from visloupe.core.models.features import OUTPUT, layer_features

    check_model(model)
    check_int("batch_size", batch_size)
    src = as_image_source(source, name="source")
    n = len(src)
    if groups is None:
        groups = [list(range(n))]
    groups = [[int(i) for i in g] for g in groups]
    if not groups or any(len(g) == 0 for g in groups):
        raise ValueError("groups: expected non-empty lists of image indices")
    bad = [i for g in groups for i in g if not 0 <= i < n]
    if bad:
        raise ValueError(f"groups: indices {bad[:5]} are out of range for {n} images")
    needed = sorted({i for g in groups for i in g})
    batches = (x for _, x in src.batches(needed, preprocess, batch_size=batch_size))
    feats, _ = layer_features(model, batches, OUTPUT if layer is None else layer)
    rows = dict(zip(needed, torch.from_numpy(feats), strict=True))
    means, variances = [], []
    for g in groups:
        e = torch.stack([rows[i] for i in g])
        means.append(e.mean(0))
        variances.append(e.var(0, unbiased=False))
    return DatasetFeatures(torch.stack(means), torch.stack(variances),
                           torch.tensor([len(g) for g in groups]))
