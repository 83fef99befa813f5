"""Convolution arithmetic: which rows and columns each strided layer pads and leaves unused.

Alsallakh et al., "Mind the Pad -- CNNs can develop blind spots" (ICLR 2021): when
``(n + 2p - d(k-1) - 1) mod s != 0`` PyTorch never reaches the last padded rows/columns, so the
effective padding is ``(p, p - leftover)``: the top/left border is padded more than the
bottom/right one. TensorFlow's SAME puts any extra padding at the bottom/right instead. A ResNet at
224x224 is padded unevenly at every down-sampling layer; at 225x225 at none.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

import pandas as pd
import torch
from torch import nn

from ._util import (
    POOLS,
    as_hw,
    call_names,
    check_model,
    eval_mode,
    hooks,
    in_channels,
    logger,
    pair,
)
from .skeleton import Unsupported, skeleton

__all__ = [
    "AUDIT_COLUMNS",
    "audit_padding",
    "conv_out",
    "even_input_sizes",
    "leftover",
    "suggest_input_size",
    "tf_same_padding",
    "torch_effective_padding",
    "uneven_count",
]

AUDIT_COLUMNS = (
    "name", "type", "in_h", "in_w", "out_h", "out_w", "kernel", "stride", "padding", "dilation",
    "groups", "ceil_mode", "padding_mode", "leftover_h", "leftover_w", "pad_before_h",
    "pad_after_h", "pad_before_w", "pad_after_w", "uneven", "tf_pad_before_h", "tf_pad_after_h",
    "tf_pad_before_w", "tf_pad_after_w", "tf_uneven",
)


def conv_out(n: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """Output length of a convolution (floor mode): ``floor((n + 2p - d(k-1) - 1) / s) + 1``."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def leftover(n: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """Padded rows the last window never reaches: ``(n + 2p - d(k-1) - 1) mod s``."""
    return (n + 2 * p - d * (k - 1) - 1) % s


def torch_effective_padding(n: int, k: int, s: int = 1, p: int = 0, d: int = 1
                            ) -> tuple[int, int]:
    """PyTorch's effective ``(before, after)`` padding: ``(p, p - leftover)`` (negative: real
    rows dropped)."""
    return p, p - leftover(n, k, s, p, d)


def tf_same_padding(n: int, k: int, s: int = 1, d: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding ``(before, after)``: output ``ceil(n/s)``, extra pad at the end."""
    out = -(-n // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def _geometry(module: nn.Module) -> dict[str, Any]:
    """Kernel, stride, dilation and nominal (before, after) pads per axis of a conv or pool."""
    k, s, d = pair(module.kernel_size), pair(module.stride or module.kernel_size), (1, 1)
    if isinstance(module, nn.Conv2d):
        d = pair(module.dilation)
        left, right, top, bottom = (int(v) for v in module._reversed_padding_repeated_twice)
        mode = getattr(module, "pad_mode", module.padding_mode)
        groups, ceil = int(module.groups), False
    else:
        if isinstance(module, nn.MaxPool2d):
            d = pair(module.dilation)
        ph, pw = pair(module.padding)
        left, right, top, bottom = pw, pw, ph, ph
        mode = "-infinity" if isinstance(module, nn.MaxPool2d) else "zeros"
        groups, ceil = 1, bool(module.ceil_mode)
    return {"kernel": k, "stride": s, "dilation": d, "pads": ((top, bottom), (left, right)),
            "padding_mode": mode, "groups": groups, "ceil_mode": ceil}


def _row(name: str, module: nn.Module, in_hw: tuple[int, int], out_hw: tuple[int, int]
         ) -> dict[str, Any]:
    g = _geometry(module)
    row: dict[str, Any] = {
        "name": name, "type": type(module).__name__, "in_h": in_hw[0], "in_w": in_hw[1],
        "out_h": out_hw[0], "out_w": out_hw[1], "kernel": g["kernel"], "stride": g["stride"],
        "padding": (g["pads"][0][0], g["pads"][1][0]), "dilation": g["dilation"],
        "groups": g["groups"], "ceil_mode": g["ceil_mode"], "padding_mode": g["padding_mode"],
    }
    uneven = False
    tf_uneven = False
    for axis, n, out, suffix in ((0, in_hw[0], out_hw[0], "h"), (1, in_hw[1], out_hw[1], "w")):
        k, s, d = g["kernel"][axis], g["stride"][axis], g["dilation"][axis]
        before, after = g["pads"][axis]
        span = (out - 1) * s + d * (k - 1) + 1  # rows covered by the windows, from -before
        eff_after = span - n - before
        row[f"leftover_{suffix}"] = n + before + after - span
        row[f"pad_before_{suffix}"] = before
        row[f"pad_after_{suffix}"] = eff_after
        uneven |= before != eff_after
        tb, ta = tf_same_padding(n, k, s, d)
        row[f"tf_pad_before_{suffix}"] = tb
        row[f"tf_pad_after_{suffix}"] = ta
        tf_uneven |= tb != ta
    row["uneven"] = uneven
    row["tf_uneven"] = tf_uneven
    return row


class _Uneven(Exception):
    """Raised by the hooks to end a forward pass early once a layer is known to be uneven."""


def _trace(model: nn.Module, x: torch.Tensor, meta: bool,
           origins: dict[nn.Module, tuple[str, nn.Module]] | None = None,
           stop: bool = False) -> list[dict[str, Any]]:
    """Run ``model`` on ``x`` with hooks on every conv and pool; one row per call. With
    ``origins`` (a skeleton's stand-in -> (name, original module)) rows describe the originals."""
    skeleton_run = origins is not None
    if origins is None:
        origins = {m: (n, m) for n, m in model.named_modules()
                   if isinstance(m, (nn.Conv2d, *POOLS))}
    name_of = call_names({m: name for m, (name, _) in origins.items()})
    rows: list[dict[str, Any]] = []
    pending: list[tuple[str, nn.Module, tuple[int, int]]] = []

    def pre(module: nn.Module, args: tuple) -> None:
        inp = args[0] if args else None
        if isinstance(inp, torch.Tensor) and inp.dim() >= 3:
            pending.append((name_of(module), module, (int(inp.shape[-2]), int(inp.shape[-1]))))

    def post(module: nn.Module, args: tuple, output: Any) -> None:
        for i in range(len(pending) - 1, -1, -1):
            if pending[i][1] is module:
                name, _, in_hw = pending.pop(i)
                out_hw = (int(output.shape[-2]), int(output.shape[-1]))
                rows.append(_row(name, origins[module][1], in_hw, out_hw))
                if stop and (rows[-1]["leftover_h"] or rows[-1]["leftover_w"]):
                    raise _Uneven
                return

    handles: list = []
    # a skeleton (``origins`` given) is built in eval mode and never trained: no mode switch
    mode = contextlib.nullcontext() if skeleton_run else eval_mode(model)
    with hooks(handles), mode, torch.no_grad():
        for m in origins:
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
        try:
            if meta:
                state = {k: torch.empty_like(v, device="meta")
                         for k, v in (*model.named_parameters(), *model.named_buffers())}
                torch.func.functional_call(model, state, (x,))
            else:
                model(x)
        except _Uneven:
            return rows
        except Exception as error:
            if pending:
                name, module, in_hw = pending[-1]
                raise _TooSmall(name, origins[module][1], in_hw, error) from error
            raise
    return rows


class _TooSmall(Exception):
    def __init__(self, name: str, module: nn.Module, in_hw: tuple[int, int], error: Exception):
        super().__init__(str(error))
        self.name, self.module, self.in_hw, self.error = name, module, in_hw, error


def _too_small(hw: tuple[int, int], err: _TooSmall) -> ValueError:
    return ValueError(
        f"input_size: {hw[0]}x{hw[1]} is too small for the network: layer {err.name!r} "
        f"({type(err.module).__name__}) receives a {err.in_hw[0]}x{err.in_hw[1]} input "
        f"({type(err.error).__name__}: {err.error})")


_SKELETONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _skeleton(model: nn.Module) -> tuple[nn.Module, dict] | None:
    """The model's spatial skeleton (cached per model object), or None if it has none."""
    entry = _SKELETONS.get(model)
    signature = tuple((n, type(m), m.extra_repr() if isinstance(m, (nn.Conv2d, *POOLS)) else "")
                      for n, m in model.named_modules())
    if entry is not None and entry[0] == signature:
        return entry[1]
    try:
        built: tuple[nn.Module, dict] | None = skeleton(model, torch.float32,
                                                             shape_only=True)
    except Unsupported as why:
        logger.debug("no spatial skeleton (%s); using the full model", why)
        built = None
    _SKELETONS[model] = (signature, built)
    return built


def _rows(model: nn.Module, hw: tuple[int, int], channels: int, stop: bool = False
          ) -> list[dict[str, Any]]:
    """Audit rows at ``hw``: on the one-channel skeleton, else a shape-only forward on the meta
    device, else a real forward."""
    skel = _skeleton(model)
    if skel is not None:
        try:
            return _trace(skel[0], torch.zeros(1, 1, *hw), False, skel[1], stop)
        except _TooSmall as err:
            raise _too_small(hw, err) from err.error
        except Exception as error:  # noqa: BLE001 - e.g. a reshape that needs the channels
            logger.debug("skeleton forward failed (%s); trying the meta device", error)
    try:
        return _trace(model, torch.zeros(1, channels, *hw, device="meta"), True, None, stop)
    except _TooSmall as err:
        raise _too_small(hw, err) from err.error
    except Exception as error:  # noqa: BLE001 - some models cannot run on meta tensors
        logger.debug("meta forward failed (%s); running the model for real", error)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    try:
        return _trace(model, torch.zeros(1, channels, *hw, device=device, dtype=dtype), False,
                      None, stop)
    except _TooSmall as err:
        raise _too_small(hw, err) from err.error
    except Exception as error:
        raise ValueError(f"model: the forward pass at input_size {hw[0]}x{hw[1]} failed: "
                         f"{type(error).__name__}: {error}") from error


def audit_padding(model: nn.Module, input_size: int | tuple[int, int],
                  in_channels: int | None = None) -> pd.DataFrame:
    """One row per convolution and pooling call of ``model`` at ``input_size`` (int or (h, w)).

    Recorded with forward hooks (always removed) on a shape-only forward pass in eval mode, so
    nested blocks, shortcuts, grouped and dilated convolutions and ``ceil_mode`` pooling are
    audited as they actually run. Columns (:data:`AUDIT_COLUMNS`): ``name``, ``type``, input and
    output size, ``kernel``/``stride``/``padding``/``dilation`` as ``(h, w)`` pairs, ``groups``,
    ``ceil_mode``, ``padding_mode``; ``leftover_h/w`` (padded rows/cols never reached; negative
    when a ceil-mode window overhangs the padding); PyTorch's effective padding
    ``pad_before_h/pad_after_h/pad_before_w/pad_after_w`` (a negative after-pad means real rows
    are dropped); ``uneven`` (before != after on some axis); TensorFlow SAME's padding
    ``tf_pad_*`` and ``tf_uneven``. Alsallakh et al., ICLR 2021, §3 and Fig. 6.
    """
    check_model(model)
    hw = as_hw(input_size)
    channels = _channels(model, in_channels)
    frame = pd.DataFrame(_rows(model, hw, channels), columns=list(AUDIT_COLUMNS))
    return frame


def _channels(model: nn.Module, channels: int | None) -> int:
    if channels is None:
        return in_channels(model)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"in_channels: expected a positive int or None, got {channels!r}")
    return channels


def _is_even(rows: list[dict[str, Any]]) -> bool:
    return all(r["leftover_h"] == 0 and r["leftover_w"] == 0 for r in rows)


def uneven_count(model: nn.Module, input_size: int | tuple[int, int],
                 in_channels: int | None = None) -> int:
    """How many layer calls leave padded rows or columns unused at ``input_size``."""
    rows = _rows(check_model(model), as_hw(input_size), _channels(model, in_channels))
    return sum(r["leftover_h"] != 0 or r["leftover_w"] != 0 for r in rows)


def _check_range(lo: Any, hi: Any) -> tuple[int, int]:
    for arg, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{arg}: expected a positive int, got {v!r}")
    if hi <= lo:
        raise ValueError(f"hi: expected hi > lo, got lo={lo}, hi={hi}")
    return lo, hi


def even_input_sizes(model: nn.Module, lo: int, hi: int, in_channels: int | None = None
                     ) -> list[int]:
    """Square sizes ``n`` in ``[lo, hi)`` at which no conv or pooling layer leaves padded rows or
    columns unused (leftover 0 everywhere), so PyTorch pads every layer evenly.

    Sizes too small for the network are skipped. For a ResNet stem and backbone (five stride-2
    layers) these are ``32 m + 1``: 129, 161, 193, 225, 257, 289 in [100, 300).
    """
    check_model(model)
    lo, hi = _check_range(lo, hi)
    channels = _channels(model, in_channels)
    sizes = []
    for n in range(lo, hi):
        try:
            rows = _rows(model, (n, n), channels, stop=True)
        except ValueError:
            continue
        if _is_even(rows):
            sizes.append(n)
    return sizes


def suggest_input_size(model: nn.Module, near: int, max_distance: int | None = None,
                       in_channels: int | None = None) -> int:
    """The even-padding square size closest to ``near`` (ties go to the larger size).

    Searches up to ``max_distance`` (default ``near // 2``) away; ``ValueError`` if none.
    Example: 225 for a ResNet at 224.
    """
    check_model(model)
    if isinstance(near, bool) or not isinstance(near, int) or near < 1:
        raise ValueError(f"near: expected a positive int, got {near!r}")
    limit = max(near // 2, 1) if max_distance is None else int(max_distance)
    channels = _channels(model, in_channels)
    for dist in range(0, limit + 1):
        for n in (near + dist, near - dist) if dist else (near,):
            if n < 1:
                continue
            try:
                if _is_even(_rows(model, (n, n), channels, stop=True)):
                    return n
            except ValueError:
                continue
    raise ValueError(f"near: no size within {limit} of {near} pads every layer evenly; pass a "
                     f"larger max_distance (searched [{max(near - limit, 1)}, {near + limit}])")



