"""Padding modes: ``pad2d`` and :class:`PadConv2d`; the padding swap itself, :func:`swap_padding`,
is model surgery and lives in :mod:`visloupe.core.models.surgery` (re-exported here).

Alsallakh et al., "Mind the Pad -- CNNs can develop blind spots" (ICLR 2021) recommend padding
that treats border pixels like interior ones -- TensorFlow's SYMMETRIC mirror or circular padding
-- over zero padding. PyTorch has ``zeros | reflect | replicate | circular``; ``symmetric``
(mirror *including* the edge pixel) and partial-convolution padding (Liu et al., "Partial
Convolution based Padding", 2018) are added here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.surgery import swap_padding  # the padding swap is model surgery (one copy)
from .explicit import tf_same_padding

__all__ = ["PADDING_MODES", "PadConv2d", "SymmetricPad2d", "pad2d", "swap_padding"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular", "symmetric", "partial")
"""Modes :func:`swap_padding` accepts. ``partial`` is a convolution, not a pad (see
:class:`PadConv2d`)."""

_PAD_ONLY = ("zeros", "reflect", "replicate", "circular", "symmetric")


def _check_mode(mode: object, choices: Sequence[str] = PADDING_MODES) -> str:
    if mode not in choices:
        raise ValueError(f"mode: expected one of {list(choices)}, got {mode!r}")
    return str(mode)


def _check_pads(pads: Sequence[int] | str | None) -> tuple[int, int, int, int] | str:
    """``None`` -> no extra pads; ``"same"``; or four non-negative ints (left, right, top,
    bottom)."""
    if pads is None:
        return (0, 0, 0, 0)
    if isinstance(pads, str):
        if pads != "same":
            raise ValueError(f"pads: expected 'same' or (left, right, top, bottom), got {pads!r}")
        return pads
    out = tuple(int(p) for p in pads)
    if len(out) != 4 or min(out) < 0:
        raise ValueError(f"pads: expected four non-negative ints (left, right, top, bottom), "
                         f"got {tuple(pads)!r}")
    return out  # type: ignore[return-value]


def _mirror(x: torch.Tensor, before: int, after: int, dim: int) -> torch.Tensor:
    """SYMMETRIC mirror along ``dim``: ``[x1 x0 | x0 x1 ... xn | xn xn-1]`` for pad 2."""
    if before == 0 and after == 0:
        return x
    n = x.shape[dim]
    parts = []
    if before:
        parts.append(x.narrow(dim, 0, before).flip(dim))
    parts.append(x)
    if after:
        parts.append(x.narrow(dim, n - after, after).flip(dim))
    return torch.cat(parts, dim)


def pad2d(x: torch.Tensor, pad: Sequence[int], mode: str = "zeros") -> torch.Tensor:
    """Pad the last two dims of ``x (..., H, W)`` by ``pad = (left, right, top, bottom)``.

    ``mode``: ``zeros``, ``reflect`` (mirror excluding the edge, needs pad < size),
    ``replicate``, ``circular`` (needs pad <= size) or ``symmetric`` (mirror including the edge,
    TensorFlow's SYMMETRIC; needs pad <= size; equals ``replicate`` for pad 1).
    """
    mode = _check_mode(mode, _PAD_ONLY)
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise TypeError(f"x: expected a tensor (..., H, W), got "
                        f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    left, right, top, bottom = (int(p) for p in pad)
    if min(left, right, top, bottom) < 0:
        raise ValueError(f"pad: expected non-negative pads, got {tuple(pad)}")
    if not (left or right or top or bottom):
        return x
    h, w = x.shape[-2], x.shape[-1]
    limit = {"reflect": (h - 1, w - 1), "circular": (h, w), "symmetric": (h, w)}.get(mode)
    if limit is not None and (max(top, bottom) > limit[0] or max(left, right) > limit[1]):
        need = "smaller than" if mode == "reflect" else "at most"
        raise ValueError(
            f"pad: {mode} padding needs each pad {need} the input size, got pads (left, right, "
            f"top, bottom) = {(left, right, top, bottom)} for an input of {h}x{w}; use a larger "
            "input_size or another padding mode")
    if mode == "zeros":
        return F.pad(x, (left, right, top, bottom))
    if mode == "symmetric":
        return _mirror(_mirror(x, left, right, x.dim() - 1), top, bottom, x.dim() - 2)
    if x.dim() == 2:  # torch's non-constant modes want a batch/channel dim
        return F.pad(x[None, None], (left, right, top, bottom), mode=mode)[0, 0]
    if x.dim() == 3 and mode != "circular":
        return F.pad(x[None], (left, right, top, bottom), mode=mode)[0]
    return F.pad(x, (left, right, top, bottom), mode=mode)


class SymmetricPad2d(nn.Module):
    """A pad module like ``nn.ReflectionPad2d`` that mirrors *including* the edge pixel
    (TensorFlow's SYMMETRIC): what :func:`swap_padding` puts in place of a model's own pad
    modules for ``mode="symmetric"``. ``padding``: an int or ``(left, right, top, bottom)``."""

    def __init__(self, padding: int | Sequence[int]) -> None:
        super().__init__()
        pads = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
        if len(pads) != 4 or not all(isinstance(p, int) and p >= 0 for p in pads):
            raise ValueError(f"padding: expected a non-negative int or four (left, right, top, "
                             f"bottom), got {padding!r}")
        self.padding: tuple[int, int, int, int] = pads  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pad2d(x, self.padding, "symmetric")

    def extra_repr(self) -> str:
        return f"{self.padding}"


class PadConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that pads explicitly with ``pad_mode`` before a padding-free convolution.

    Same parameters and state-dict keys as the ``nn.Conv2d`` it replaces, so weights load either
    way and ``isinstance(m, nn.Conv2d)`` holds. ``pad_mode="partial"`` is partial-convolution
    padding (Liu et al. 2018): zero padding whose output is re-weighted by ``window size / number
    of real pixels in the window``, so a constant input gives a constant output.

    ``pads``: padding added to the symmetric ``padding`` argument -- ``(left, right, top,
    bottom)``, e.g. the fixed amounts of a TF-SAME port's ``static_padding`` (``(0, 1, 0, 1)``
    for a 3x3/2 conv built for 224), or ``"same"``: TensorFlow's SAME rule on each input's size,
    as a dynamic-SAME conv computes it (Alsallakh et al., ICLR 2021: SAME puts any extra pad at
    the bottom/right).
    """

    def __init__(self, *args, pad_mode: str = "symmetric",
                 pads: Sequence[int] | str | None = None, **kwargs) -> None:
        kwargs["padding_mode"] = "zeros"
        super().__init__(*args, **kwargs)
        self.pad_mode = _check_mode(pad_mode)
        self.extra_pads: tuple[int, int, int, int] | str = _check_pads(pads)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, pad_mode: str,
                  pads: Sequence[int] | str | None = None,
                  padding: tuple[int, int] | None = None) -> PadConv2d:
        """A ``PadConv2d`` with ``conv``'s geometry, weights, device, dtype and training flag;
        ``pads`` None keeps a ``PadConv2d``'s explicit pads (none for other convs); ``padding``
        (None: the conv's) replaces its own symmetric padding."""
        if pads is None and isinstance(conv, PadConv2d):
            pads = conv.extra_pads
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                  conv.padding if padding is None else padding, conv.dilation, conv.groups,
                  bias=conv.bias is not None,
                  device=conv.weight.device, dtype=conv.weight.dtype, pad_mode=pad_mode,
                  pads=pads)
        with torch.no_grad():
            new.weight.copy_(conv.weight)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
        new.weight.requires_grad_(conv.weight.requires_grad)
        new.train(conv.training)
        return new

    def pads_for(self, h: int, w: int) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)`` this layer pads an ``h x w`` input by."""
        left, right, top, bottom = (int(p) for p in self._reversed_padding_repeated_twice)
        extra = self.extra_pads
        if extra == "same":
            (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
            t, b = tf_same_padding(int(h), kh, sh, dh)
            el, er = tf_same_padding(int(w), kw, sw, dw)
            extra = (el, er, t, b)
        return left + extra[0], right + extra[1], top + extra[2], bottom + extra[3]

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)`` as the convolution would pad (fixed pads only; a
        ``pads="same"`` layer depends on the input: :meth:`pads_for`)."""
        if self.extra_pads == "same":
            raise ValueError("pads: this layer pads with TF SAME, which depends on the input "
                             "size; use pads_for(h, w)")
        return self.pads_for(0, 0)

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        pads = self.pads_for(input.shape[-2], input.shape[-1])
        if self.pad_mode == "partial":
            return self._partial(input, weight, bias, pads)
        return F.conv2d(pad2d(input, pads, self.pad_mode), weight, bias, self.stride, 0,
                        self.dilation, self.groups)

    def _partial(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 pads: tuple[int, int, int, int]) -> torch.Tensor:
        kh, kw = self.kernel_size
        h, w = x.shape[-2:]
        mask = F.pad(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device), pads)
        valid = F.conv2d(mask, torch.ones(1, 1, kh, kw, dtype=x.dtype, device=x.device),
                         None, self.stride, 0, self.dilation)
        covered = (valid > 0).to(x.dtype)
        ratio = (kh * kw) / valid.clamp_min(1.0) * covered
        out = F.conv2d(F.pad(x, pads), weight, None, self.stride, 0, self.dilation,
                       self.groups) * ratio
        if bias is not None:
            out = out + bias.view(1, -1, 1, 1) * covered
        return out

    def extra_repr(self) -> str:
        extra = "" if self.extra_pads == (0, 0, 0, 0) else f", pads={self.extra_pads!r}"
        return f"{super().extra_repr()}, pad_mode={self.pad_mode!r}{extra}"
