"""Pooled activations of one layer of any model, batch by batch: the embedding that dataset
maps (:mod:`visloupe.core.profiling`) and task representations (:mod:`visloupe.core.boxes`)
share, so both pool a layer the same way.

The layer's layout is read from the module and its output shape
(:func:`~visloupe.core.models.introspection.layer_output_layout`): ``(N, C, h, w)`` conv maps
and ``(N, h, w, C)`` channels-last grids (Swin/ConvNeXt) are both averaged over space, token
sequences ``(N, T, D)`` over tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .adapter import (
    as_logits,
    eval_mode,
    find_module,
    first_tensor,
    hooks,
    model_device,
    model_dtype,
)
from .introspection import layer_output_layout

__all__ = ["PENULTIMATE", "OUTPUT", "layer_features", "pool"]

PENULTIMATE = "<penultimate>"
"""``layer=`` value: the input of the last ``nn.Linear`` run (the features the head sees)."""
OUTPUT = "<output>"
"""``layer=`` value: the model's own output (its logits)."""


def pool(activation: Tensor, channels_last: bool = False) -> Tensor:
    """``(N, ...)`` activations -> ``(N, D)`` float: ``(N, D)`` as is, ``(N, T, D)`` mean over
    tokens, ``(N, C, h, w)`` global average over ``h, w`` (``(N, h, w, C)`` when
    ``channels_last``), anything else flattened."""
    a = activation.float()
    if a.dim() == 2:
        return a
    if a.dim() == 3:
        return a.mean(dim=1)
    if a.dim() == 4:
        return a.mean(dim=(1, 2)) if channels_last else a.mean(dim=(2, 3))
    return a.reshape(a.shape[0], -1)


def _is_channels_last(module: nn.Module, value: Tensor, input_hw: Sequence[int]) -> bool:
    if value.dim() != 4:
        return False
    layout = layer_output_layout(module, tuple(value.shape), tuple(input_hw))
    return bool(layout and layout[1] is not None and layout[1].channels_last)


def _recorded_call(model: nn.Module, x: Tensor, candidates: list[tuple[str, nn.Module]],
                   use_input: bool) -> tuple[Any, dict[str, Tensor | None], list[str]]:
    """``model(x)`` with each candidate's input or output tensor recorded, in call order."""
    values: dict[str, Tensor | None] = {}
    order: list[str] = []

    def recorder(cand: str) -> Callable[..., None]:
        def record(_m: nn.Module, inputs: Any, output: Any) -> None:
            values[cand] = first_tensor(inputs if use_input else output)
            order.append(cand)

        return record

    with hooks() as handles:
        for cand, module in candidates:
            handles.append(module.register_forward_hook(recorder(cand)))
        result = model(x)
    return result, values, order


def layer_features(model: nn.Module, batches: Iterable[Tensor],
                   layer: str | nn.Module = PENULTIMATE, *,
                   progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, str]:
    """``(pooled features (N, D) float32, layer name)`` over ``batches`` of model inputs.

    ``layer``: a module name or submodule whose *output* is pooled (:func:`pool`), or
    :data:`PENULTIMATE` (the input of the last ``nn.Linear`` that runs) or :data:`OUTPUT`. The
    model runs in eval mode (flags restored) under ``no_grad``; hooks are removed also on errors.
    ``progress(n)`` is called with the number of items done after each batch.
    """
    use_input = layer == PENULTIMATE
    if layer == OUTPUT:
        candidates: list[tuple[str, nn.Module]] = []
    elif use_input:  # the first batch finds the last nn.Linear to run; later ones hook only it
        candidates = [(n, m) for n, m in model.named_modules() if n and isinstance(m, nn.Linear)]
        if not candidates:
            raise ValueError(f"layer: {type(model).__name__} has no nn.Linear head to take the "
                             "penultimate layer from; pass layer= (a module name)")
    else:
        candidates = [find_module(model, layer)]
    device, dtype = model_device(model), model_dtype(model)
    out: list[np.ndarray] = []
    name, channels_last, done = OUTPUT, False, 0
    with eval_mode(model), torch.no_grad():
        for k, x in enumerate(batches):
            x = x.to(device=device, dtype=dtype)
            result, values, order = _recorded_call(model, x, candidates, use_input)
            if not candidates:
                value = as_logits(result)
            else:
                if not order or values[order[-1]] is None:
                    what = "no nn.Linear" if use_input else repr(candidates[0][0])
                    raise ValueError(f"layer: {what} produced no tensor in the forward pass of "
                                     f"{type(model).__name__} (is it called?)")
                name = order[-1]
                value = values[name]
                if k == 0:
                    module = dict(candidates)[name]
                    candidates = [(name, module)]
                    channels_last = not use_input and _is_channels_last(module, value,
                                                                        x.shape[-2:])
            out.append(pool(value, channels_last).cpu().numpy().astype(np.float32))
            done += x.shape[0]
            if progress is not None:
                progress(done)
    if not out:
        raise ValueError("data: no batch to compute features on")
    return np.concatenate(out, axis=0), name
