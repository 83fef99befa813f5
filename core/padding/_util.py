"""Small helpers shared inside :mod:`visloupe.core.padding` (input checks, call names).

Eval mode, hooks and output tensors come from the model adapter (the foundation), re-exported
here for the package's modules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from visloupe.core.models.adapter import check_model as check_any_model
from visloupe.core.models.adapter import eval_mode, expected_in_channels, hooks

__all__ = ["POOLS", "as_hw", "call_names", "check_model", "drop_hooks", "eval_mode",
           "hooks", "in_channels", "pair"]

logger = logging.getLogger("visloupe.core.padding")

POOLS = (nn.MaxPool2d, nn.AvgPool2d)
"""Windowed pooling layers the audit and the foveation map treat like convolutions."""


def check_model(model: Any, arg: str = "model") -> nn.Module:
    """``model`` if it is an ``nn.Module`` (with real weights) containing an ``nn.Conv2d``."""
    check_any_model(model, arg)
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise ValueError(f"{arg}: expected a network with at least one nn.Conv2d, found none "
                         f"in {type(model).__name__}")
    return model


def as_hw(size: Any, arg: str = "input_size") -> tuple[int, int]:
    """An int ``n`` -> ``(n, n)``; a pair ``(h, w)`` is checked. Both must be positive ints."""
    if isinstance(size, bool):
        raise TypeError(f"{arg}: expected an int or a pair (h, w) of ints, got {size!r}")
    if isinstance(size, int):
        size = (size, size)
    if isinstance(size, torch.Size):
        size = tuple(size)
    if not (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) for s in size)):
        raise TypeError(f"{arg}: expected an int or a pair (h, w) of ints, got {size!r}")
    if min(size) < 1:
        raise ValueError(f"{arg}: expected positive sizes, got {tuple(size)}")
    return int(size[0]), int(size[1])


def in_channels(model: nn.Module) -> int:
    """Input channels the model expects (its config, else its first ``nn.Conv2d``)."""
    channels = expected_in_channels(model)
    if channels is None:
        raise ValueError("model: expected a network with at least one nn.Conv2d, found none")
    return channels


def pair(value: Any) -> tuple[int, int]:
    """An int or a 2-sequence -> ``(h, w)`` ints."""
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


def call_names(names: dict[nn.Module, str]) -> Callable[[nn.Module], str]:
    """Name each call of a module: its qualified name, then ``name#2``, ``name#3`` for modules
    that run more than once per forward (a ReLU reused inside a block)."""
    counts: dict[nn.Module, int] = {}

    def name_of(module: nn.Module) -> str:
        k = counts.get(module, 0) + 1
        counts[module] = k
        base = names[module] or "(model)"
        return base if k == 1 else f"{base}#{k}"

    return name_of


def drop_hooks(model: nn.Module) -> nn.Module:
    """Remove every hook from ``model`` -- a private copy: ``copy.deepcopy`` also copies the
    user's hooks, which must not fire on our stand-in networks."""
    for module in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                     "_backward_pre_hooks", "_forward_hooks_with_kwargs",
                     "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called"):
            hooks_dict = getattr(module, attr, None)
            if hooks_dict is not None:
                hooks_dict.clear()
    return model
