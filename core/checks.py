"""The one place for argument checks that several packages share.

Each check returns the value (normalised) or raises a ``ValueError``/``TypeError`` whose message
names the argument, says what was expected and shows what came (DESIGN.md §3, "Errors").
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from torch import nn

__all__ = [
    "check_batch_size",
    "check_bool",
    "check_callable",
    "check_int",
    "check_module",
    "check_not_preprocess",
    "check_optional_int",
    "check_options",
    "check_per_model",
    "check_positive",
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


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool (``"no"`` or 0 are not: a truthy string would read as True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_options(name: str, options: Any, fn: Callable) -> dict[str, Any]:
    """``options`` (None: none) as a dict of ``fn``'s keyword-only options, the ones a caller
    may forward (``seed`` and ``batch_size`` are the caller's own): unknown keys are named."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"{name}: expected a dict of {fn.__name__} options, got "
                        f"{type(options).__name__}")
    allowed = [p.name for p in inspect.signature(fn).parameters.values()
               if p.kind == p.KEYWORD_ONLY and p.name not in ("seed", "batch_size")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{name}: unknown {fn.__name__} option(s) {unknown}; expected some of "
                         f"{allowed}")
    return dict(options)


def check_per_model(name: str, value: Any, models: Any) -> dict[str, Any]:
    """``{model name: option}`` for an option given once for all models or as a dict keyed by
    model name (a model missing from the dict gets None); a key that names no model raises,
    since its option would silently never apply."""
    names = list(models)
    if not isinstance(value, Mapping):
        return dict.fromkeys(names, value)
    unknown = [k for k in value if k not in names]
    if unknown:
        raise ValueError(f"{name}: expected keys among the model names {names}, got {unknown} "
                         "(or pass one value for every model)")
    return {n: value.get(n) for n in names}


def check_positive(name: str, value: Any) -> float:
    """``value`` as a float if it is a finite number > 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


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


def check_not_preprocess(name: str, value: Any) -> Any:
    """``value`` unless it is a one-argument callable or an image preprocess object: a
    preprocess passed where explainers, called ``(model, inputs, target)``, are expected (the
    order of the widgets and jobs is ``(model, data, explainers, *, preprocess=...)``)."""
    if callable(value) and not isinstance(value, (str, type)):
        looks = hasattr(value, "pixels") or hasattr(value, "image_mean")
        if not looks:
            try:
                params = [p for p in inspect.signature(value).parameters.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                          and p.default is p.empty]
            except (TypeError, ValueError):
                return value
            looks = len(params) == 1
        if looks:
            raise TypeError(f"{name}: got {type(value).__name__}, which looks like a preprocess "
                            "(one argument); explainers are called (model, inputs, target): "
                            "pass it as preprocess= (the order of widgets and jobs is (model, "
                            "data, explainers, *, preprocess=...))")
    return value


def check_progress(progress: Any) -> Callable | None:
    """None or a callable ``progress(done, total)``."""
    return check_callable(progress, "progress", "a callable(done, total) or None")
