"""Padding that is not a layer's own ``padding`` argument: explicit pad modules, TensorFlow-SAME
convolutions (static and dynamic), and ``F.pad`` calls seen while a model runs.

Alsallakh et al., "Mind the Pad -- CNNs can develop blind spots" (ICLR 2021): what biases a CNN
is the padding a convolution or pooling window actually consumes. Ports of TensorFlow models
(EfficientNet, timm's ``tf_*`` models) pad with TF's SAME rule -- any extra pad at the
bottom/right -- through a separate pad before each convolution:

- *static* SAME (``efficientnet_lite_pytorch.Conv2dStaticSamePadding``): an ``nn.Conv2d``
  subclass (own ``padding`` 0) holding a ``static_padding`` pad module computed once, at
  construction, for one input size (224: ``(0, 1)`` for 3x3/2, ``(1, 2)`` for 5x5/2);
- *dynamic* SAME (``Conv2dDynamicSamePadding``, timm's ``Conv2dSame``, ``MaxPool2dSame``): the
  TF rule applied in ``forward`` to the size of each input (:func:`tf_same_padding`);
- a pad module (``nn.ZeroPad2d``, ``ConstantPad2d``, ``ReflectionPad2d``, ``ReplicationPad2d``,
  ``CircularPad2d``) or an ``F.pad`` call whose output feeds a convolution directly.

Everything here is duck-typed (class names, a ``static_padding`` attribute): timm and torchvision
are never imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..checks import check_int

__all__ = ["DYNAMIC_SAME", "PAD_MODULES", "LayerPad", "PadRecord", "PadRecorder",
           "layer_padding", "pad_module_info", "same_kind", "tf_same_padding"]

Pads = tuple[int, int, int, int]
"""``(left, right, top, bottom)``, the order of ``F.pad`` and ``nn.ZeroPad2d``."""

_PAD_BASES = tuple(c for c in (
    getattr(nn.modules.padding, "_ConstantPadNd", None),
    getattr(nn.modules.padding, "_ReflectionPadNd", None),
    getattr(nn.modules.padding, "_ReplicationPadNd", None),
    getattr(nn.modules.padding, "_CircularPadNd", None),
) if c is not None)
PAD_MODULES = tuple(c for c in (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d,
                                nn.ReplicationPad2d, getattr(nn, "CircularPad2d", None))
                    if c is not None)
"""The 2-D pad modules torch ships; :func:`pad_module_info` reads any ``_*PadNd`` with 4 pads."""

DYNAMIC_SAME = frozenset({
    "Conv2dDynamicSamePadding", "MaxPool2dDynamicSamePadding",  # efficientnet(-lite)-pytorch
    "Conv2dSame", "Conv2dSameExport", "MaxPool2dSame", "AvgPool2dSame",  # timm
})
"""Class names of layers that apply TF SAME padding to each input in their ``forward``."""

_LAYERS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


def tf_same_padding(n: int, k: int, s: int = 1, d: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding ``(before, after)``: output ``ceil(n/s)``, extra pad at the end."""
    check_int("n", n, 0)
    for name, value in (("k", k), ("s", s), ("d", d)):
        check_int(name, value)
    out = -(-n // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


def _mode_name(kind: str, value: float | None = 0.0) -> str:
    if kind == "constant":
        return "zeros" if not value else f"constant({float(value):g})"
    return kind


def pad_module_info(module: nn.Module) -> tuple[Pads, str] | None:
    """``((left, right, top, bottom), mode)`` of a 2-D pad module (torch's or
    :class:`~.modes.SymmetricPad2d`), else None."""
    from .modes import SymmetricPad2d  # modes imports this module

    if isinstance(module, SymmetricPad2d):
        return module.padding, "symmetric"
    if not _PAD_BASES or not isinstance(module, _PAD_BASES):
        return None
    pads = tuple(int(p) for p in getattr(module, "padding", ()))
    if len(pads) != 4:
        return None
    name = type(module).__name__
    if "Reflection" in name:
        mode = "reflect"
    elif "Replication" in name:
        mode = "replicate"
    elif "Circular" in name:
        mode = "circular"
    else:
        mode = _mode_name("constant", getattr(module, "value", 0.0))
    return pads, mode  # type: ignore[return-value]


def _identity_like(module: nn.Module) -> bool:
    """``nn.Identity`` or a parameter-free class named ``Identity`` (the EfficientNet ports')."""
    return isinstance(module, nn.Identity) or (
        type(module).__name__ == "Identity" and not any(True for _ in module.parameters()))


def same_kind(module: nn.Module) -> str | None:
    """``"static"`` (a ``static_padding`` module inside a conv/pool), ``"dynamic"`` (TF SAME in
    ``forward``, :data:`DYNAMIC_SAME`) or None for a layer that pads in neither way."""
    if not isinstance(module, _LAYERS):
        return None
    if isinstance(getattr(module, "static_padding", None), nn.Module):
        return "static"
    if type(module).__name__ in DYNAMIC_SAME:
        return "dynamic"
    return None


def _own_forward(module: nn.Module) -> bool:
    """Whether a conv/pool subclass replaces how torch's layer pads (``forward`` or
    ``_conv_forward`` overridden)."""
    base = next(b for b in _LAYERS if isinstance(module, b))
    cls = type(module)
    return cls.forward is not base.forward or (
        base is nn.Conv2d and cls._conv_forward is not nn.Conv2d._conv_forward)


@dataclass(frozen=True)
class LayerPad:
    """How a conv/pool layer pads an ``h x w`` input: ``own`` (its padding arguments) plus
    ``extra`` (what it pads itself first: static/dynamic SAME, a ``PadConv2d``'s explicit pads),
    both ``(left, right, top, bottom)``; ``source`` in words; ``limitation`` non-empty when the
    amounts cannot be read."""

    own: Pads
    extra: Pads
    mode: str
    source: str
    limitation: str = ""

    @property
    def total(self) -> Pads:
        """``own + extra`` per side."""
        return tuple(a + b for a, b in zip(self.own, self.extra, strict=True))  # type: ignore


def _window(module: nn.Module) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    k = _pair(module.kernel_size)
    s = _pair(module.stride or module.kernel_size)
    d = _pair(getattr(module, "dilation", 1))
    return k, s, d


def _same(module: nn.Module, hw: tuple[int, int]) -> Pads:
    (kh, kw), (sh, sw), (dh, dw) = _window(module)
    top, bottom = tf_same_padding(hw[0], kh, sh, dh)
    left, right = tf_same_padding(hw[1], kw, sw, dw)
    return left, right, top, bottom


def layer_padding(module: nn.Module, hw: tuple[int, int]) -> LayerPad:
    """The padding conv/pool ``module`` applies to an ``hw`` input (see :class:`LayerPad`).

    Static SAME amounts are read from ``static_padding``; dynamic SAME ones are computed with
    :func:`tf_same_padding` from ``hw`` (what the layer's ``forward`` computes); a ``PadConv2d``
    reports its explicit pads. A subclass with its own ``forward`` that is none of these gets a
    ``limitation``: only its padding arguments are counted.
    """
    zero: Pads = (0, 0, 0, 0)
    if isinstance(module, nn.Conv2d):
        own: Pads = tuple(int(v) for v in module._reversed_padding_repeated_twice)  # type: ignore
        mode = str(getattr(module, "pad_mode", None) or module.padding_mode)
    else:
        ph, pw = _pair(module.padding)
        own = (pw, pw, ph, ph)
        mode = "-infinity" if isinstance(module, nn.MaxPool2d) else "zeros"
    kind = same_kind(module)
    if kind == "static":
        inner = module.static_padding
        info = pad_module_info(inner)
        if info is not None:
            pads, pad_mode = info
            mixed = any(own) and pad_mode != mode
            return LayerPad(own, pads, f"{pad_mode}+{mode}" if mixed else pad_mode,
                            "static SAME (static_padding)")
        if _identity_like(inner):
            return LayerPad(own, zero, mode, "static SAME (none needed)")
        return LayerPad(own, zero, mode, "static SAME", f"static_padding is a "
                        f"{type(inner).__name__}: its amounts cannot be read; only the layer's "
                        "padding arguments are counted")
    if kind == "dynamic":
        # timm's MaxPool2dSame pads with -inf, the EfficientNet ports' pools and convs with 0
        dyn_mode = "-infinity" if type(module).__name__ == "MaxPool2dSame" else "zeros"
        return LayerPad(own, _same(module, hw), dyn_mode, "dynamic SAME (TF rule on the input)")
    pads_for = getattr(module, "pads_for", None)
    if isinstance(module, nn.Conv2d) and callable(pads_for) and hasattr(module, "extra_pads"):
        total = tuple(int(v) for v in pads_for(*hw))
        extra: Pads = tuple(t - o for t, o in zip(total, own, strict=True))  # type: ignore
        spec = module.extra_pads
        source = ("conv" if spec == zero else "PadConv2d (dynamic SAME)" if spec == "same"
                  else f"PadConv2d (explicit {tuple(spec)})")
        return LayerPad(own, extra, mode, source)
    if type(module) not in _LAYERS and _own_forward(module):
        return LayerPad(own, zero, mode, "conv" if isinstance(module, nn.Conv2d) else "pool",
                        f"{type(module).__name__} has its own forward: padding applied there "
                        "cannot be read; only its padding arguments are counted")
    return LayerPad(own, zero, mode, "conv" if isinstance(module, nn.Conv2d) else "pool")


# --------------------------------------------------------------------------- F.pad recorder


@dataclass
class PadRecord:
    """One pad applied while the model ran: amounts (summed over a chain of pads), mode, where
    it came from, the spatial size before padding, and the layer call count at that moment."""

    pads: Pads
    mode: str
    source: str
    in_hw: tuple[int, int]
    call: int
    consumed: bool = False


_PAD_FUNCS = ("pad", "constant_pad_nd")


def _call_pads(func: Any, args: tuple, kwargs: dict) -> tuple[Pads, str] | None:
    """Spatial ``(left, right, top, bottom)`` and mode of an ``F.pad``/``constant_pad_nd``
    call, else None."""
    name = getattr(func, "__name__", "")
    if name not in _PAD_FUNCS or not args:
        return None
    pad = kwargs.get("pad", args[1] if len(args) > 1 else None)
    if pad is None:
        return None
    pad = [int(p) for p in pad] + [0] * max(0, 4 - len(pad))
    if name == "constant_pad_nd":
        mode = _mode_name("constant", kwargs.get("value", args[2] if len(args) > 2 else 0.0))
    else:
        kind = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
        value = kwargs.get("value", args[3] if len(args) > 3 else None)
        mode = _mode_name(str(kind), value)
    return (pad[0], pad[1], pad[2], pad[3]), mode


class PadRecorder(TorchFunctionMode):
    """Record every ``F.pad`` (and ``torch.constant_pad_nd``) call on a 3-D or larger tensor;
    :meth:`feed` tells whether a layer's input is such a pad's output (identity, not value).

    Pads made while a hooked layer runs (``depth > 0``: inside a SAME convolution, say) belong to
    that layer and are kept in :attr:`inner` instead. A pad whose input is another pad's output
    is merged into one record (amounts summed)."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.calls = 0
        self.records: dict[int, tuple[torch.Tensor, PadRecord]] = {}
        self.inner: list[tuple[Pads, str]] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        info = _call_pads(func, args, kwargs)
        x = args[0] if args else None
        if info is None or not isinstance(x, torch.Tensor) or x.dim() < 3 or \
                not isinstance(out, torch.Tensor):
            return out
        self.record(x, out, *info)
        return out

    def record(self, x: torch.Tensor, out: torch.Tensor, pads: Pads, mode: str,
               source: str = "F.pad") -> None:
        """Record that ``out`` is ``x`` padded by ``pads`` with ``mode``."""
        if self.depth:
            self.inner.append((pads, mode))
            return
        prev = self.records.get(id(x))
        if prev is not None and prev[0] is x:
            old = prev[1]
            old.consumed = True
            rec = PadRecord(tuple(a + b for a, b in zip(old.pads, pads, strict=True)),  # type: ignore
                            old.mode if old.mode == mode else f"{old.mode}+{mode}",
                            f"{old.source} + {source}", old.in_hw, old.call)
        else:
            rec = PadRecord(pads, mode, source, (int(x.shape[-2]), int(x.shape[-1])),
                            self.calls)
        self.records[id(out)] = (out, rec)

    def feed(self, x: Any) -> PadRecord | None:
        """The record of the pad whose output is ``x`` (marked consumed), else None."""
        entry = self.records.get(id(x)) if isinstance(x, torch.Tensor) else None
        if entry is None or entry[0] is not x:
            return None
        entry[1].consumed = True
        return entry[1]

    def name(self, x: Any, source: str) -> bool:
        """Name the pad that produced ``x`` (a pad module's qualified name and type); False
        when no ``F.pad`` produced it (a pad module that pads in its own way)."""
        entry = self.records.get(id(x)) if isinstance(x, torch.Tensor) else None
        if entry is None or entry[0] is not x:
            return False
        rec = entry[1]
        rec.source = (source if rec.source == "F.pad"
                      else rec.source.rsplit(" + ", 1)[0] + f" + {source}")
        return True

    def unattributed(self) -> list[PadRecord]:
        """Pads with non-zero spatial amounts whose output fed no conv/pool layer directly."""
        return [r for _, r in self.records.values() if not r.consumed and any(r.pads)]
