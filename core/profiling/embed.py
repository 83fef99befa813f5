"""Pooled activations of any layer for every image of a data set, cached on disk.

``embed`` runs the model batch by batch (eval mode, no gradients, hooks removed also on errors)
and pools the chosen layer to one vector per image. Results are cached under
``$VISLOUPE_CACHE/embeddings`` keyed by what determines them -- the rows
(:meth:`~visloupe.core.data.ImageSource.fingerprint`), the model's behaviour (architecture,
module configuration, hooks and weights: :func:`visloupe.core.cache.model_fingerprint`), the
layer and the preprocess's behaviour (:func:`visloupe.core.cache.preprocess_fingerprint`) -- so
a widget re-opened on the same data and model costs no forward pass, and a padding swap, a
smoothed activation or a changed preprocess never returns stale rows.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from visloupe.core.cache import (
    cache_folder,
    digest,
    load_array,
    model_fingerprint,
    preprocess_fingerprint,
    save_array,
)
from visloupe.core.checks import check_int, check_preprocess, check_progress
from visloupe.core.data import ImageSource, as_image_source
from visloupe.core.models.adapter import check_model, find_module
from visloupe.core.models.features import PENULTIMATE, layer_features, pool

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
CACHE_VERSION = 2


def cache_key(kind: str, src: ImageSource, indices: Sequence[int], model: nn.Module,
              preprocess: Any, **extra: Any) -> str | None:
    """The cache key of a per-item result of ``model`` on ``src[indices]``, or None when the
    preprocess cannot be keyed (see :mod:`visloupe.core.cache`)."""
    probe = src[int(indices[0])].image if preprocess is not None else None
    pre_key = preprocess_fingerprint(preprocess, probe)
    if pre_key is None:
        return None
    return digest(CACHE_VERSION, kind, src.fingerprint(indices), model_fingerprint(model),
                  pre_key, len(indices), extra)


def check_run_args(model: Any, batch_size: Any, preprocess: Any, progress: Any) -> None:
    """The checks shared by the functions that run a model over a data set."""
    check_model(model)
    check_int("batch_size", batch_size)
    check_preprocess(preprocess)
    check_progress(progress)


def embed(model: nn.Module, data: Any, layer: str | nn.Module | None = None, *,
          preprocess: Callable[[Any], torch.Tensor] | None = None, batch_size: int = 64,
          cache: bool | str | os.PathLike = True, progress: ProgressCallback | None = None,
          indices: Sequence[int] | None = None, limit: int | None = None) -> np.ndarray:
    """Pooled activations ``(N, D)`` float32 of ``model`` on ``data``, one row per item
    (``indices``, default all). ``data``: anything ``data.as_image_source`` reads.

    ``layer``: a module name or submodule whose *output* is pooled (:func:`pool`: global average
    over ``h, w`` for conv maps, mean over tokens for ``(N, T, D)``). None (default) takes the
    penultimate layer: the *input* of the last ``nn.Linear`` run in the forward pass, i.e. the
    features the classifier head sees (for a ViT, the pooled/class token it classifies).

    The model runs in eval mode (restored afterwards) under ``torch.no_grad`` in batches of
    ``batch_size``; inputs are ``preprocess(PIL.Image)`` stacked and moved to the model's device.
    ``cache`` True stores results in ``$VISLOUPE_CACHE/embeddings`` (or a folder given here),
    keyed by behaviour (see the module docstring); a hit returns the stored array without
    running the model. Preprocess callables without a stable, deterministic description
    (closures over unprintable objects, random augmentations) skip the disk cache.
    Streams embed their first ``limit`` items (default 1000) in the source's buffer order.
    ``progress(done, total)`` is called after each batch.
    """
    if not isinstance(model, nn.Module) and isinstance(data, nn.Module):
        raise TypeError("model: embed takes (model, data, ...), model first; got data "
                        f"({type(model).__name__}) first and the model second")
    check_run_args(model, batch_size, preprocess, progress)
    cache_dir = cache_folder(cache, "embeddings")
    layer_name = PENULTIMATE if layer is None else find_module(model, layer)[0]
    src = as_image_source(data, name="data")
    idx = src.indices(indices, limit)

    path = None
    key = cache_key("embeddings", src, idx, model, preprocess, layer=layer_name) \
        if cache_dir is not None else None
    if key is not None:
        path = cache_dir / f"{key}.npy"
        cached = load_array(path, len(idx))
        if cached is not None and cached.ndim == 2:
            logger.debug("embedding cache hit %s", path)
            if progress is not None:
                progress(len(idx), len(idx))
            return cached
    elif cache_dir is not None:
        logger.info("preprocess %r has no stable, deterministic description; embeddings not "
                    "cached", preprocess)

    total = len(idx)
    inputs = (x for _, x in src.batches(idx, preprocess, batch_size=int(batch_size)))
    result, layer_name = layer_features(
        model, inputs, layer_name,
        progress=None if progress is None else (lambda done: progress(done, total)))
    if path is not None:
        save_array(path, result, {"layer": layer_name, "model": type(model).__name__,
                                    "n": len(idx), "dim": int(result.shape[1]),
                                    "source": repr(src), "preprocess": repr(preprocess)})
    return result


__all__ = ["cache_key", "check_run_args", "embed", "model_fingerprint", "pool"]


_PIXEL_BUDGET = 1 << 22  # pixels held before resizing (~48 MB as float32 RGB)


def _resize_rgb(stack: np.ndarray, size: int) -> np.ndarray:
    """``(B, H, W, 3)`` uint8 -> ``(B, size*size*3)`` float32 in [0, 1]: bilinear, antialiased
    when shrinking (torch's filter, which follows PIL's BILINEAR resampling)."""
    x = torch.from_numpy(np.ascontiguousarray(stack)).permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                            align_corners=False, antialias=True)
    return (x.permute(0, 2, 3, 1).reshape(len(stack), -1) / 255.0).clamp(0.0, 1.0).numpy()


def pixel_embeddings(data: Any, indices: Sequence[int] | None = None, *,
                     size: int = 16) -> np.ndarray:
    """``(N, size*size*3)`` float32: each image as RGB in [0, 1], resized to ``size`` x ``size``
    (bilinear, antialiased when shrinking, as PIL's BILINEAR), flattened -- the embedding space
    of a dataset map without a model.

    Images of one size are resized together, and in-memory arrays are read without a PIL round
    trip (:meth:`~visloupe.core.data.ImageSource.rgb_array`), so 100 000 small images take
    seconds. ``indices`` default to every item (the stream policy of ``ImageSource.indices``
    for streams). An image that cannot be read keeps a zero row and a logged warning, so rows
    stay aligned with ``indices``.
    """
    check_int("size", size, 1, "pixels", maximum=256)
    source = as_image_source(data)
    rows = source.indices(indices)
    out = np.zeros((len(rows), size * size * 3), dtype=np.float32)
    groups: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
    held = 0  # pixels waiting in groups

    def flush(shape: tuple[int, ...]) -> None:
        members = groups.pop(shape)
        try:
            out[[k for k, _ in members]] = _resize_rgb(np.stack([a for _, a in members]), size)
        except Exception as error:  # noqa: BLE001 - e.g. a zero-size image: rows stay zero
            logger.warning("pixel embedding of %d image(s) of shape %s failed: %s",
                           len(members), shape, error)

    for row, i in enumerate(rows):
        try:
            rgb = source.rgb_array(int(i))
        except Exception as error:  # noqa: BLE001 - a broken image keeps a zero row
            logger.warning("pixel embedding of item %s failed: %s", i, error)
            continue
        groups.setdefault(rgb.shape, []).append((row, rgb))
        held += rgb.shape[0] * rgb.shape[1]
        if held >= _PIXEL_BUDGET:  # photos of many sizes never pile up in memory
            for shape in list(groups):
                flush(shape)
            held = 0
    for shape in list(groups):
        flush(shape)
    return out
