"""Pooled activations of any layer for every image of a data set, cached on disk.

``embed`` runs the model batch by batch (eval mode, no gradients, hooks removed also on errors)
and pools the chosen layer to one vector per image. Results are cached under
``$VISLOUPE_CACHE/embeddings`` keyed by a fingerprint of the data, the model's weights, the layer
and the preprocess, so a widget re-opened on the same data and model costs no forward pass.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from visloupe.core.data import ImageSource
from visloupe.core.models.introspection import (
    eval_mode,
    layer_output_layout,
    model_device,
    model_dtype,
)
from visloupe.core.models.io import atomic_write
from visloupe.core.models.zoo import cache_root

from ._sources import BatchReader, as_source, check_model_args, data_fingerprint, resolve_indices

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
CACHE_VERSION = 1
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


# ---------------------------------------------------------------------------------------------
# Layer choice and pooling


def _resolve_module(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    modules = dict(model.named_modules())
    if isinstance(layer, str):
        if not layer or layer not in modules:
            import difflib

            close = difflib.get_close_matches(layer, [n for n in modules if n], n=5, cutoff=0.5)
            hint = f"; close names: {close}" if close else ""
            raise ValueError(f"layer: no submodule named {layer!r} in {type(model).__name__}"
                             f"{hint}")
        return layer, modules[layer]
    if isinstance(layer, nn.Module):
        name = next((n for n, m in modules.items() if m is layer and n), None)
        if name is None:
            raise ValueError(f"layer: expected a submodule of {type(model).__name__}, got a "
                             f"{type(layer).__name__} that is not part of it")
        return name, layer
    name = getattr(layer, "name", None)  # a LayerProposal
    if isinstance(name, str):
        return _resolve_module(model, name)
    raise TypeError(f"layer: expected None, a module name or an nn.Module, got "
                    f"{type(layer).__name__}")


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            if isinstance(v, torch.Tensor):
                return v
    if isinstance(value, dict):
        for v in value.values():
            if isinstance(v, torch.Tensor):
                return v
    return None


def pool(activation: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """``(N, ...)`` activations -> ``(N, D)``: ``(N, D)`` as is, ``(N, T, D)`` mean over tokens,
    ``(N, C, h, w)`` global average pool over ``h, w`` (``(N, h, w, C)`` when
    ``channels_last``), anything else flattened."""
    a = activation.float()
    if a.dim() == 2:
        return a
    if a.dim() == 3:
        return a.mean(dim=1)
    if a.dim() == 4:
        return a.mean(dim=(1, 2)) if channels_last else a.mean(dim=(2, 3))
    return a.reshape(a.shape[0], -1)


class _Recorder:
    """Forward hooks on ``modules`` (name -> module) that record each one's input
    (``use_input``) or output tensor and the order they ran in; removed on exit, also on
    errors."""

    def __init__(self, modules: Sequence[tuple[str, nn.Module]], use_input: bool) -> None:
        self.modules, self.use_input = list(modules), use_input
        self.values: dict[str, torch.Tensor | None] = {}
        self.order: list[str] = []
        self.handles: list[Any] = []

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, inputs: Any, output: Any) -> None:
            self.values[name] = _first_tensor(inputs if self.use_input else output)
            self.order.append(name)

        return hook

    def __enter__(self) -> _Recorder:
        try:
            for name, module in self.modules:
                self.handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


# ---------------------------------------------------------------------------------------------
# Fingerprints and the disk cache


def model_fingerprint(model: nn.Module) -> str:
    """Hash of the model class and every ``state_dict`` tensor (names, shapes, dtypes, bytes)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(repr((name, tuple(t.shape), str(t.dtype))).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _callable_key(fn: Any) -> str | None:
    """A session-independent description of ``preprocess``, or None if there is none (then the
    disk cache is skipped rather than risk a false hit)."""
    if fn is None:
        return "default"
    text = repr(fn)
    if not _ADDRESS.search(text):
        return f"{type(fn).__qualname__}:{text}"
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    parts = [fn.__module__, fn.__qualname__, code.co_code.hex(), repr(code.co_consts),
             repr(getattr(fn, "__defaults__", None))]
    for cell in getattr(fn, "__closure__", None) or ():
        parts.append(repr(cell.cell_contents))
    key = "|".join(parts)
    return None if _ADDRESS.search(key) else key


def _cache_dir(cache: bool | str | os.PathLike) -> Path | None:
    if cache is False:
        return None
    if cache is True:
        return cache_root() / "embeddings"
    if isinstance(cache, (str, os.PathLike)):
        return Path(cache).expanduser()
    raise TypeError(f"cache: expected True, False or a folder path, got {type(cache).__name__}")


def _load_cached(path: Path, n: int) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        logger.warning("embedding cache %s unreadable (%s); recomputing", path, err)
        return None
    if arr.ndim != 2 or arr.shape[0] != n:
        logger.warning("embedding cache %s has shape %s, expected (%d, D); recomputing",
                       path, arr.shape, n)
        return None
    return arr


def _save_cached(path: Path, arr: np.ndarray, meta: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)

        atomic_write(path, write)
        atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(
            json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8"))
    except OSError as err:  # a read-only cache must not break the analysis
        logger.warning("could not write the embedding cache %s: %s", path, err)


# ---------------------------------------------------------------------------------------------


def embed(source: Any, model: nn.Module, layer: str | nn.Module | None = None, *,
          preprocess: Callable[[Any], torch.Tensor] | None = None, batch_size: int = 64,
          cache: bool | str | os.PathLike = True, progress: ProgressCallback | None = None,
          indices: Sequence[int] | None = None, limit: int | None = None) -> np.ndarray:
    """Pooled activations ``(N, D)`` float32, one row per item (``indices``, default all).

    ``layer``: a module name or submodule whose *output* is pooled (:func:`pool`: global average
    over ``h, w`` for conv maps, mean over tokens for ``(N, T, D)``). None (default) takes the
    penultimate layer: the *input* of the last ``nn.Linear`` run in the forward pass, i.e. the
    features the classifier head sees (for a ViT, the pooled/class token it classifies).

    The model runs in eval mode (restored afterwards) under ``torch.no_grad`` in batches of
    ``batch_size``; inputs are ``preprocess(PIL.Image)`` stacked and moved to the model's device.
    ``cache`` True stores results in ``$VISLOUPE_CACHE/embeddings`` (or a folder given here),
    keyed by the data (HF ``_fingerprint``; a hash of every item of in-memory lists and arrays;
    a hash of 8 sampled items plus length for torch datasets and streams), the model (hash of
    its ``state_dict``), the layer and ``preprocess``'s repr; a hit returns the stored array
    without running the model. Preprocess callables without a stable description
    (closures over unprintable objects) skip the disk cache.
    Streams embed their first ``limit`` items (default 1000) in the source's buffer order.
    ``progress(done, total)`` is called after each batch.
    """
    check_model_args(model, batch_size, preprocess)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress: expected a callable(done, total), got "
                        f"{type(progress).__name__}")
    cache_dir = _cache_dir(cache)
    layer_name = None
    if layer is not None:
        layer_name, module = _resolve_module(model, layer)
    src: ImageSource = as_source(source)
    idx = resolve_indices(src, indices, limit)

    path = None
    pre_key = _callable_key(preprocess)
    if cache_dir is not None and pre_key is not None:
        key_src = json.dumps({
            "version": CACHE_VERSION, "data": data_fingerprint(src, idx),
            "model": model_fingerprint(model), "layer": layer_name or "<penultimate>",
            "preprocess": pre_key, "n": len(idx)}, sort_keys=True)
        key = hashlib.blake2b(key_src.encode(), digest_size=20).hexdigest()
        path = cache_dir / f"{key}.npy"
        if path.is_file():
            cached = _load_cached(path, len(idx))
            if cached is not None:
                logger.debug("embedding cache hit %s", path)
                if progress is not None:
                    progress(len(idx), len(idx))
                return cached
    elif cache_dir is not None:
        logger.info("preprocess %r has no stable description; embeddings not cached", preprocess)

    device, dtype = model_device(model), model_dtype(model)
    batches = BatchReader(src)
    use_input = layer is None
    if layer_name is not None:
        candidates = [(layer_name, module)]
    else:  # the first batch finds the last nn.Linear to run; later batches hook only that one
        candidates = [(n, m) for n, m in model.named_modules() if n and isinstance(m, nn.Linear)]
        if not candidates:
            raise ValueError(f"layer: {type(model).__name__} has no nn.Linear head to take the "
                             "penultimate layer from; pass layer= (a module name)")
    channels_last = False
    out: list[np.ndarray] = []
    done = 0
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(idx), int(batch_size)):
            chunk = idx[start:start + int(batch_size)]
            x = batches.tensors(chunk, preprocess).to(device=device, dtype=dtype)
            with _Recorder(candidates, use_input) as rec:
                model(x)
            if not rec.order or rec.values[rec.order[-1]] is None:
                what = repr(layer_name) if layer_name else "no nn.Linear"
                raise ValueError(f"layer: {what} produced no tensor in the forward pass of "
                                 f"{type(model).__name__} (is it called?)")
            name = rec.order[-1]
            value = rec.values[name]
            if len(candidates) > 1 or start == 0:
                layer_name, module = name, dict(candidates)[name]
                candidates = [(name, module)]
                if value.dim() == 4 and not use_input:
                    layout = layer_output_layout(module, tuple(value.shape), tuple(x.shape[-2:]))
                    channels_last = bool(layout and layout[1] is not None
                                         and layout[1].channels_last)
            out.append(pool(value, channels_last).cpu().numpy().astype(np.float32))
            done += len(chunk)
            if progress is not None:
                progress(done, len(idx))
    result = np.concatenate(out, axis=0)
    if path is not None:
        _save_cached(path, result, {"layer": layer_name, "model": type(model).__name__,
                                    "n": len(idx), "dim": int(result.shape[1]),
                                    "source": repr(src), "preprocess": repr(preprocess)})
    return result


__all__ = ["embed", "model_fingerprint", "pool"]
