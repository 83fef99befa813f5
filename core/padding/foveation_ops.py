"""Linear stand-ins shared by the foveation map and the spatial skeleton: window sums for
pooling layers and the list of element-wise modules that linearisation removes."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SumPool2d", "is_elementwise"]

_ELEMENTWISE = (
    nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
    nn.modules.dropout._DropoutNd, nn.Identity,
)
_NOT_ELEMENTWISE = (nn.MultiheadAttention, nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.Softmax2d,
                    nn.GLU)


def _as2(v: Any) -> tuple[int, int]:
    return tuple(int(i) for i in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


class SumPool2d(nn.Module):
    """Sum over each pooling window (an all-ones kernel per channel), with the window geometry,
    padding (zeros: pads carry no path) and ``ceil_mode`` of the pooling layer it replaces."""

    def __init__(self, kernel_size: Any, stride: Any, padding: Any, dilation: Any = 1,
                 ceil_mode: bool = False, shape_only: bool = False) -> None:
        super().__init__()
        self.shape_only = shape_only
        self.kernel_size, self.stride = _as2(kernel_size), _as2(stride or kernel_size)
        self.padding, self.dilation, self.ceil_mode = _as2(padding), _as2(dilation), ceil_mode

    def _out(self, n: int, axis: int) -> int:
        k, s, p, d = (self.kernel_size[axis], self.stride[axis], self.padding[axis],
                      self.dilation[axis])
        span = n + 2 * p - d * (k - 1) - 1
        if not self.ceil_mode:
            return span // s + 1
        out = -(-span // s) + 1
        return out - 1 if (out - 1) * s >= n + p else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (self.kernel_size, self.stride, self.padding,
                                                  self.dilation)
        for axis in (0, 1):
            if 2 * self.padding[axis] > self.dilation[axis] * (self.kernel_size[axis] - 1) + 1:
                raise RuntimeError("pad should be at most half of effective kernel size")
        oh, ow = self._out(x.shape[-2], 0), self._out(x.shape[-1], 1)
        if oh < 1 or ow < 1:
            raise RuntimeError(f"input {x.shape[-2]}x{x.shape[-1]} is too small for the pooling "
                               "window")
        if self.shape_only:
            return x.new_zeros(1, 1, oh, ow)
        extra_h = max(0, (oh - 1) * sh + dh * (kh - 1) + 1 - (x.shape[-2] + 2 * ph))
        extra_w = max(0, (ow - 1) * sw + dw * (kw - 1) + 1 - (x.shape[-1] + 2 * pw))
        padded = F.pad(x, (pw, pw + extra_w, ph, ph + extra_h))
        c = x.shape[1]
        ones = torch.ones(c, 1, kh, kw, dtype=x.dtype, device=x.device)
        return F.conv2d(padded, ones, None, (sh, sw), 0, (dh, dw), groups=c)


def is_elementwise(module: nn.Module) -> bool:
    """Normalisation, dropout, identity or an element-wise activation (removed when linearising)."""
    if isinstance(module, _ELEMENTWISE):
        return True
    return (type(module).__module__ == "torch.nn.modules.activation"
            and not isinstance(module, _NOT_ELEMENTWISE))
