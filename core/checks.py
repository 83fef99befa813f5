"""The one place for argument checks that several packages share.

Each check returns the value (normalised) or raises a ``ValueError``/``TypeError`` whose message
names the argument, says what was expected and shows what came (DESIGN.md §3, "Errors").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

__all__ = [
    "check_batch_size",
    "check_callable",
    "check_int",
    "check_module",
    "check_optional_int",
    "check_preprocess",
    "check_progress",
    "check_seed",
]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, minimum: int = 1, unit: str = "", *,
              maximum: int | None = None) -> int:
    """``value`` as an int if it is an int (not a bool) in ``[minimum, maximum]``."""
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        if maximum is not None:
            expected = f"an int in [{minimum}, {maximum}]"
        else:
            expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        suffix = f" ({unit})" if unit else ""
        raise ValueError(f"{name}: expected {expected}{suffix}, got {value!r}")
    return int(value)


def check_optional_int(name: str, value: Any, minimum: int = 1) -> int | None:
    """None, or :func:`check_int`."""
    if value is None:
        return None
    if not _is_int(value) or value < minimum:
        expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name}: expected None or {expected}, got {value!r}")
    return int(value)


def check_batch_size(batch_size: Any, default: int | None = None) -> int | None:
    """``batch_size`` if it is a positive int; None gives ``default``."""
    value = check_optional_int("batch_size", batch_size)
    return default if value is None else value


def check_seed(seed: Any, name: str = "seed") -> int:
    """An int seed (any sign)."""
    if not _is_int(seed):
        raise TypeError(f"{name}: expected an int, got {type(seed).__name__} {seed!r}")
    return int(seed)


def check_module(model: Any, name: str = "model") -> nn.Module:
    """``model`` if it is a ``torch.nn.Module``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name}: expected a torch.nn.Module, got {type(model).__name__}")
    return model


def check_callable(fn: Any, name: str, expected: str) -> Any:
    """``fn`` if it is None or callable; ``expected`` describes the signature."""
    if fn is not None and not callable(fn):
        raise TypeError(f"{name}: expected {expected}, got {type(fn).__name__}")
    return fn


def check_preprocess(preprocess: Any) -> Callable | None:
    """None or a callable ``PIL.Image -> Tensor (C, H, W)`` (the preprocess contract)."""
    return check_callable(preprocess, "preprocess", "a callable PIL.Image -> Tensor (C, H, W)")


def check_progress(progress: Any) -> Callable | None:
    """None or a callable ``progress(done, total)``."""
    return check_callable(progress, "progress", "a callable(done, total) or None")
