"""Convolution arithmetic: which rows and columns each strided layer pads and leaves unused.

Alsallakh et al., "Mind the Pad -- CNNs can develop blind spots" (ICLR 2021): when
``(n + 2p - d(k-1) - 1) mod s != 0`` PyTorch never reaches the last padded rows/columns, so the
effective padding is ``(p, p - leftover)``: the top/left border is padded more than the
bottom/right one. TensorFlow's SAME puts any extra padding at the bottom/right instead. A ResNet at
224x224 is padded unevenly at every down-sampling layer; at 225x225 at none.

Padding that is not a layer's own ``padding`` argument counts as the padding of the convolution
or pooling it feeds (:mod:`.explicit`): pad modules (``nn.ZeroPad2d`` & co.) and ``F.pad`` calls
whose output goes straight into the layer, static TF-SAME pads inside a conv (EfficientNet ports:
``(0, 1)`` at 3x3/2 and ``(1, 2)`` at 5x5/2 when built for 224) and dynamic-SAME convs (amounts
from the traced input size). Where the padding cannot be read, the row's ``limitation`` says so.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..checks import check_int
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
from .explicit import PAD_MODULES, PadRecord, PadRecorder, layer_padding, pad_module_info
from .explicit import tf_same_padding as tf_same_padding  # defined there, part of this face
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
    "tf_pad_before_w", "tf_pad_after_w", "tf_uneven", "explicit_pad", "pad_source", "limitation",
)


def conv_out(n: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """Output length of a convolution (floor mode): ``floor((n + 2p - d(k-1) - 1) / s) + 1``."""
    _check_conv(n, k, s, d)
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _check_conv(n: int, k: int, s: int, d: int = 1) -> None:
    """The convolution arithmetic's arguments: positive sizes (a stride of 0 divides by 0)."""
    check_int("n", n, 0)
    for name, value in (("k", k), ("s", s), ("d", d)):
        check_int(name, value)


def leftover(n: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """Padded rows the last window never reaches: ``(n + 2p - d(k-1) - 1) mod s``."""
    return (n + 2 * p - d * (k - 1) - 1) % s


def torch_effective_padding(n: int, k: int, s: int = 1, p: int = 0, d: int = 1
                            ) -> tuple[int, int]:
    """PyTorch's effective ``(before, after)`` padding: ``(p, p - leftover)`` (negative: real
    rows dropped)."""
    return p, p - leftover(n, k, s, p, d)


def _geometry(module: nn.Module) -> dict[str, Any]:
    """Kernel, stride, dilation, groups and ceil mode of a conv or pool (the padding comes from
    :func:`.explicit.layer_padding`)."""
    k, s, d = pair(module.kernel_size), pair(module.stride or module.kernel_size), (1, 1)
    if isinstance(module, nn.Conv2d):
        d = pair(module.dilation)
        groups, ceil = int(module.groups), False
    else:
        if isinstance(module, nn.MaxPool2d):
            d = pair(module.dilation)
        groups, ceil = 1, bool(module.ceil_mode)
    return {"kernel": k, "stride": s, "dilation": d, "groups": groups, "ceil_mode": ceil}


def _add(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x + y for x, y in zip(a, b, strict=True))


def _row(name: str, module: nn.Module, seen_hw: tuple[int, int], out_hw: tuple[int, int],
         feed: PadRecord | None = None, inner: list | tuple = ()) -> dict[str, Any]:
    """One audit row. ``seen_hw``: the size the layer received; ``feed``: the pad (module or
    ``F.pad``) that produced that input, whose amounts count as this layer's padding and whose
    input size is the row's ``in_h/in_w``; ``inner``: pads seen inside the layer's forward."""
    g = _geometry(module)
    lp = layer_padding(module, seen_hw)
    fed = feed.pads if feed is not None else (0, 0, 0, 0)
    in_hw = feed.in_hw if feed is not None else seen_hw
    left, right, top, bottom = _add(fed, lp.total)
    modes = ([feed.mode] if feed is not None and any(fed) else []) + \
        ([lp.mode] if any(lp.total) or feed is None or not any(fed) else [])
    limitation = lp.limitation
    if limitation and inner:
        seen = "; ".join(f"{pads} {mode}" for pads, mode in inner)
        limitation += f" (F.pad inside its forward: {seen})"
    row: dict[str, Any] = {
        "name": name, "type": type(module).__name__, "in_h": in_hw[0], "in_w": in_hw[1],
        "out_h": out_hw[0], "out_w": out_hw[1], "kernel": g["kernel"], "stride": g["stride"],
        "padding": (lp.own[2], lp.own[0]), "dilation": g["dilation"],
        "groups": g["groups"], "ceil_mode": g["ceil_mode"],
        "padding_mode": "+".join(dict.fromkeys(p for m in modes for p in m.split("+"))),
        "explicit_pad": _add(fed, lp.extra),
        "pad_source": " + ".join(([feed.source] if feed is not None else []) + [lp.source]),
        "limitation": limitation,
    }
    uneven = False
    tf_uneven = False
    for axis, n, out, (before, after), suffix in (
            (0, in_hw[0], out_hw[0], (top, bottom), "h"),
            (1, in_hw[1], out_hw[1], (left, right), "w")):
        k, s, d = g["kernel"][axis], g["stride"][axis], g["dilation"][axis]
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
    ``origins`` (a skeleton's stand-in -> (name, original module)) rows describe the originals.

    Every ``F.pad`` is recorded (:class:`.explicit.PadRecorder`): a pad whose output is a layer's
    input counts as that layer's padding; one that reaches a layer only through other operations
    is stated in the ``limitation`` of the next layer that runs."""
    skeleton_run = origins is not None
    if origins is None:
        origins = {m: (n, m) for n, m in model.named_modules()
                   if isinstance(m, (nn.Conv2d, *POOLS))}
    name_of = call_names({m: name for m, (name, _) in origins.items()})
    pad_names = {m: n for n, m in model.named_modules()
                 if m not in origins and pad_module_info(m) is not None}
    rows: list[dict[str, Any]] = []
    row_of_call: dict[int, int] = {}
    pending: list[tuple[str, nn.Module, tuple[int, int], PadRecord | None, int, int]] = []
    recorder = PadRecorder()

    def pre(module: nn.Module, args: tuple) -> None:
        inp = args[0] if args else None
        if isinstance(inp, torch.Tensor) and inp.dim() >= 3:
            pending.append((name_of(module), module, (int(inp.shape[-2]), int(inp.shape[-1])),
                            recorder.feed(inp), recorder.calls, len(recorder.inner)))
            recorder.calls += 1
            recorder.depth += 1

    def post(module: nn.Module, args: tuple, output: Any) -> None:
        for i in range(len(pending) - 1, -1, -1):
            if pending[i][1] is module:
                name, _, in_hw, feed, call, n_inner = pending.pop(i)
                recorder.depth -= 1
                inner = recorder.inner[n_inner:]
                del recorder.inner[n_inner:]
                out_hw = (int(output.shape[-2]), int(output.shape[-1]))
                row_of_call[call] = len(rows)
                rows.append(_row(name, origins[module][1], in_hw, out_hw, feed, inner))
                if stop and rows[-1]["uneven"]:
                    raise _Uneven
                return

    def pad_post(module: nn.Module, args: tuple, output: Any) -> None:
        source = f"{type(module).__name__} {pad_names[module] or '(model)'}"
        if not recorder.name(output, source) and args and isinstance(args[0], torch.Tensor) \
                and isinstance(output, torch.Tensor) and output.dim() >= 3:
            recorder.record(args[0], output, *pad_module_info(module), source=source)

    handles: list = []
    # a skeleton (``origins`` given) is built in eval mode and never trained: no mode switch
    mode = contextlib.nullcontext() if skeleton_run else eval_mode(model)
    with hooks(handles), mode, torch.no_grad():
        for m in origins:
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
        for m in pad_names:
            handles.append(m.register_forward_hook(pad_post))
        try:
            with recorder:
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
                name, module, in_hw = pending[-1][:3]
                raise _TooSmall(name, origins[module][1], in_hw, error) from error
            raise
    _unattributed(rows, row_of_call, recorder)
    return rows


def _unattributed(rows: list[dict[str, Any]], row_of_call: dict[int, int],
                  recorder: PadRecorder) -> None:
    """State, on the next layer that ran, every pad that fed no layer directly (it went through
    other operations first): the audit cannot tell which layer's padding it is."""
    for rec in recorder.unattributed():
        index = row_of_call.get(rec.call)
        if index is None:
            continue
        row = rows[index]
        note = (f"a {rec.mode} pad {rec.pads} (left, right, top, bottom; {rec.source}) made "
                "before this layer reaches a layer only through other operations: not counted")
        row["limitation"] = f"{row['limitation']}; {note}" if row["limitation"] else note


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
    signature = tuple((n, type(m), m.extra_repr()
                       if isinstance(m, (nn.Conv2d, *POOLS, *PAD_MODULES)) else "")
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

    Explicit padding counts as the padding of the layer it feeds: ``in_h/in_w`` are the sizes
    *before* it, ``padding`` stays the layer's own argument, ``explicit_pad`` is the rest
    ``(left, right, top, bottom)`` (a pad module or ``F.pad`` whose output is the layer's input,
    a static ``static_padding``, the TF rule of a dynamic-SAME conv on the traced size) and
    ``pad_source`` says where each part comes from. ``limitation`` is non-empty where the
    padding cannot be read (a conv subclass with its own ``forward``, a pad that reaches the
    layer through other operations); ``frame.attrs["limitations"]`` lists them. Padding built
    by other ops (``torch.cat`` with zeros, writing into a larger tensor) is invisible.
    """
    check_model(model)
    hw = as_hw(input_size)
    channels = _channels(model, in_channels)
    frame = pd.DataFrame(_rows(model, hw, channels), columns=list(AUDIT_COLUMNS))
    frame.attrs["limitations"] = _limitations(frame.to_dict("records"))
    return frame


def _limitations(rows: list[dict[str, Any]]) -> list[str]:
    """``"layer: why"`` for every row whose padding cannot be fully read."""
    return [f"{r['name']}: {r['limitation']}" for r in rows if r["limitation"]]


def _warn_limits(rows: list[dict[str, Any]], hw: tuple[int, int]) -> None:
    notes = _limitations(rows)
    if notes:
        logger.warning("padding at %dx%d cannot be read for %d layer(s), counted from what can "
                       "be read (see audit_padding's limitation column): %s", hw[0], hw[1],
                       len(notes), "; ".join(notes[:3]))


def _channels(model: nn.Module, channels: int | None) -> int:
    if channels is None:
        return in_channels(model)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"in_channels: expected a positive int or None, got {channels!r}")
    return channels


def _is_even(rows: list[dict[str, Any]]) -> bool:
    return not any(r["uneven"] for r in rows)


def uneven_count(model: nn.Module, input_size: int | tuple[int, int],
                 in_channels: int | None = None) -> int:
    """How many layer calls pad unevenly at ``input_size``: effective before != after on some
    axis, whether PyTorch leaves padded rows unused or a TF-SAME pad is itself asymmetric
    (``(0, 1)``); explicit pads count (see :func:`audit_padding`)."""
    hw = as_hw(input_size)
    rows = _rows(check_model(model), hw, _channels(model, in_channels))
    _warn_limits(rows, hw)
    return sum(bool(r["uneven"]) for r in rows)


def _check_range(lo: Any, hi: Any) -> tuple[int, int]:
    for arg, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{arg}: expected a positive int, got {v!r}")
    if hi <= lo:
        raise ValueError(f"hi: expected hi > lo, got lo={lo}, hi={hi}")
    return lo, hi


def even_input_sizes(model: nn.Module, lo: int, hi: int, in_channels: int | None = None
                     ) -> list[int]:
    """Square sizes ``n`` in ``[lo, hi)`` at which every conv and pooling layer pads evenly
    (effective before == after: no padded row left unused, no asymmetric explicit pad used).

    Sizes too small for the network are skipped. For a ResNet stem and backbone (five stride-2
    layers) these are ``32 m + 1``: 129, 161, 193, 225, 257, 289 in [100, 300). Static TF-SAME
    pads are fixed when the model is built: for the sizes of the model rebuilt for each size,
    audit ``swap_padding(model, "keep", same="dynamic")``.
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
    """The even-padding square size closest to ``near`` (ties go to the larger size), for the
    model as it is (see :func:`even_input_sizes`).

    Searches up to ``max_distance`` (default ``near // 2``) away; ``ValueError`` if none.
    Example: 225 for a ResNet at 224.
    """
    check_model(model)
    if isinstance(near, bool) or not isinstance(near, int) or near < 1:
        raise ValueError(f"near: expected a positive int, got {near!r}")
    limit = max(near // 2, 1) if max_distance is None else check_int("max_distance",
                                                                      max_distance, 0)
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



