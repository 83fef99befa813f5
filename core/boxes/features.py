"""Task representations from any image encoder: the mean and ``[mean; var]`` of a model's
embeddings over a dataset's images (Task2Box's "mean (CLIP)" and "mean, var (CLIP)" features,
Daroya et al., CVPR 2024, with any encoder in place of CLIP)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

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


@contextmanager
def _analysed(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode and restore every submodule's training flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.train(flag)


def _pool(out: Any) -> Tensor:
    if isinstance(out, (tuple, list)):
        out = out[0]
    if hasattr(out, "last_hidden_state") and not isinstance(out, Tensor):
        out = out.last_hidden_state
    if hasattr(out, "logits") and not isinstance(out, Tensor):
        out = out.logits
    if not isinstance(out, Tensor):
        raise TypeError(f"model: expected a tensor output at the chosen layer, got "
                        f"{type(out).__name__}")
    if out.dim() == 4:  # (N, C, H, W): global average pool
        return out.mean(dim=(2, 3))
    if out.dim() == 3:  # (N, T, C) tokens: mean over tokens
        return out.mean(dim=1)
    return out.reshape(out.shape[0], -1)


def dataset_features(model: nn.Module, source: Any, groups: Sequence[Sequence[int]] | None = None,
                     layer: str | None = None,
                     preprocess: Callable[[Any], Tensor] | None = None,
                     batch_size: int = 64) -> DatasetFeatures:
    """Mean and variance of ``model``'s embeddings over the images of ``source``.

    ``source``: anything :func:`visloupe.core.data.as_image_source` accepts. ``groups``: lists of
    image indices, one per dataset (e.g. the images of each node's classes); default one dataset
    of all images. ``layer``: a module name (``dict(model.named_modules())``) whose output is the
    embedding (feature maps are averaged over space, token sequences over tokens); default the
    model's output. The model is run in eval mode, its training flags restored afterwards, and the
    forward hook always removed.
    """
    from visloupe.core.data import as_image_source

    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    src = as_image_source(source)
    n = len(src)
    if groups is None:
        groups = [list(range(n))]
    groups = [[int(i) for i in g] for g in groups]
    if not groups or any(len(g) == 0 for g in groups):
        raise ValueError("groups: expected non-empty lists of image indices")
    bad = [i for g in groups for i in g if not 0 <= i < n]
    if bad:
        raise ValueError(f"groups: indices {bad[:5]} are out of range for {n} images")
    modules = dict(model.named_modules())
    if layer is not None and layer not in modules:
        raise ValueError(f"layer: {layer!r} is not a module of the model; some names: "
                         f"{[k for k in modules if k][:8]}")
    needed = sorted({i for g in groups for i in g})
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    captured: list[Tensor] = []
    handle = None
    if layer is not None:
        handle = modules[layer].register_forward_hook(
            lambda _m, _i, out: captured.append(_pool(out).detach()))
    rows: dict[int, Tensor] = {}
    try:
        with _analysed(model), torch.no_grad():
            for k in range(0, len(needed), batch_size):
                idx = needed[k:k + batch_size]
                x = src.tensors(idx, preprocess).to(device)
                captured.clear()
                out = model(x)
                emb = captured[-1] if layer is not None else _pool(out)
                for i, e in zip(idx, emb.float().cpu(), strict=True):
                    rows[i] = e
    finally:
        if handle is not None:
            handle.remove()
    means, variances = [], []
    for g in groups:
        e = torch.stack([rows[i] for i in g])
        means.append(e.mean(0))
        variances.append(e.var(0, unbiased=False))
    return DatasetFeatures(torch.stack(means), torch.stack(variances),
                           torch.tensor([len(g) for g in groups]))
