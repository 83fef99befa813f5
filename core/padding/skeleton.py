"""A one-channel "spatial skeleton" of a CNN: the same spatial operations, no channels, no weights.

Padding arithmetic and path counts depend only on the spatial geometry of each convolution and
pooling window, so both run on a skeleton in which every convolution is a single-channel,
all-ones convolution with the same kernel, stride, padding, padding mode and dilation (input
channels summed first), pooling windows are sums, and normalisation, dropout, element-wise
activations and linear layers are identities. For a ResNet-50 at 224x224 this is thousands of
times cheaper than the real network. Models the skeleton cannot express (modules with their own
parameters, Conv2d or pooling subclasses with their own ``forward``) raise :class:`Unsupported`
and callers fall back to the full model. TF-SAME convolutions (static ``static_padding`` or
dynamic, see :mod:`.explicit`) become a convolution with the same explicit pads; pad modules are
kept as they are (they have no parameters).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ._util import drop_hooks
from .explicit import layer_padding, same_kind
from .foveation_ops import SumPool2d, is_elementwise
from .modes import PadConv2d

__all__ = ["CountConv2d", "Unsupported", "skeleton"]


class Unsupported(Exception):
    """The model has a module the skeleton cannot stand in for."""


class CountConv2d(nn.Module):
    """Sum the input channels, then a 1 -> 1 all-ones convolution with ``conv``'s geometry and
    padding mode (``pad_mode`` of a :class:`PadConv2d`, else ``padding_mode``); ``pads`` and
    ``mode`` override the explicit pads (see :class:`PadConv2d`) and the mode."""

    def __init__(self, conv: nn.Conv2d, dtype: torch.dtype, device: torch.device | str,
                 shape_only: bool = False, pads: tuple[int, int, int, int] | str | None = None,
                 mode: str | None = None) -> None:
        super().__init__()
        self.shape_only = shape_only
        mode = mode or getattr(conv, "pad_mode", None) or conv.padding_mode
        if pads is None:
            pads = getattr(conv, "extra_pads", None)
        self.conv = PadConv2d(1, 1, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                              bias=False, dtype=dtype, device=device,
                              pad_mode=mode, pads=pads)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
        self.conv.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shape_only:
            return x.new_zeros(1, 1, *self.out_size(x.shape[-2], x.shape[-1]))
        if x.shape[1] != 1:
            x = x.sum(dim=1, keepdim=True)
        return self.conv(x.to(self.conv.weight.dtype))

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        """Output size for an ``h x w`` input, with torch's errors for pads or inputs that do
        not fit (checked like the real layer, without computing it)."""
        left, right, top, bottom = self.conv.pads_for(h, w)
        mode = self.conv.pad_mode
        for n, (before, after), axis in ((h, (top, bottom), "H"), (w, (left, right), "W")):
            if mode == "reflect" and max(before, after) >= n or \
                    mode in ("circular", "symmetric") and max(before, after) > n:
                raise ValueError(f"pad: {mode} padding of {max(before, after)} does not fit an "
                                 f"input of {n} along {axis}; use a larger input_size or "
                                 "another padding mode")
        out = []
        for n, before, after, k, s, d in ((h, top, bottom, *self._geom(0)),
                                          (w, left, right, *self._geom(1))):
            size = (n + before + after - d * (k - 1) - 1) // s + 1
            if size < 1:
                raise RuntimeError(f"input {h}x{w} (padded) is smaller than the kernel")
            out.append(size)
        return out[0], out[1]

    def _geom(self, axis: int) -> tuple[int, int, int]:
        c = self.conv
        return c.kernel_size[axis], c.stride[axis], c.dilation[axis]


def _stand_in(module: nn.Module, dtype: torch.dtype, device: torch.device | str,
              shape_only: bool) -> nn.Module | None:
    if isinstance(module, nn.Conv2d):
        if type(module) in (nn.Conv2d, PadConv2d):
            return CountConv2d(module, dtype, device, shape_only)
        return _same_stand_in(module, dtype, device, shape_only)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)) and \
            type(module) not in (nn.MaxPool2d, nn.AvgPool2d):
        raise Unsupported(f"{type(module).__name__} may pad in its own way")
    if isinstance(module, nn.MaxPool2d):
        return SumPool2d(module.kernel_size, module.stride, module.padding, module.dilation,
                         module.ceil_mode, shape_only)
    if isinstance(module, nn.AvgPool2d):
        return SumPool2d(module.kernel_size, module.stride, module.padding, 1, module.ceil_mode,
                         shape_only)
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveAvgPool2d(module.output_size)
    if isinstance(module, nn.Linear) or is_elementwise(module):
        return nn.Identity()
    return None


def _same_stand_in(conv: nn.Conv2d, dtype: torch.dtype, device: torch.device | str,
                   shape_only: bool) -> CountConv2d:
    """A :class:`CountConv2d` for a TF-SAME conv (static amounts or the dynamic rule)."""
    kind = same_kind(conv)
    if kind == "dynamic":
        return CountConv2d(conv, dtype, device, shape_only, pads="same", mode="zeros")
    if kind == "static":
        pad = layer_padding(conv, (1, 1))
        if not pad.limitation and pad.mode in _MODES and min(pad.extra) >= 0:
            return CountConv2d(conv, dtype, device, shape_only, pads=pad.extra, mode=pad.mode)
    raise Unsupported(f"{type(conv).__name__} may pad in its own way")


_MODES = ("zeros", "reflect", "replicate", "circular")


def skeleton(model: nn.Module, dtype: torch.dtype = torch.float64,
             device: torch.device | str = "cpu", shape_only: bool = False,
             ) -> tuple[nn.Module, dict[nn.Module, tuple[str, nn.Module]]]:
    """The skeleton of ``model`` (a new module; ``model`` is untouched, its weights are not
    copied) and ``origins``: stand-in -> (qualified name, original conv or pooling module).
    ``shape_only=True``: convolutions and pools return zeros of the size torch would produce
    (with torch's size checks) instead of computing, which is all the padding audit needs."""
    placeholders = {id(t): nn.Parameter(torch.empty(0), requires_grad=False)
                    for t in (*model.parameters(), *model.buffers())}
    net = drop_hooks(copy.deepcopy(model, memo=dict(placeholders)))
    originals = dict(model.named_modules())
    origins: dict[nn.Module, tuple[str, nn.Module]] = {}
    replaced: set[str] = set()
    for name, module in list(net.named_modules()):
        if any(name.startswith(prefix + ".") for prefix in replaced):
            continue
        new = _stand_in(module, dtype, device, shape_only)
        if new is None:
            if any(p.numel() == 0 for p in module.parameters(recurse=False)) or any(
                    b.numel() == 0 for b in module.buffers(recurse=False)):
                raise Unsupported(f"{name or 'the model'} ({type(module).__name__}) has its own "
                                  "parameters")
            continue
        if name == "":
            raise Unsupported("the model is a single layer")
        parent_name, _, child = name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        parent._modules[child] = new
        replaced.add(name)
        if isinstance(new, (CountConv2d, SumPool2d)):
            origins[new] = (name, originals[name])
    return net.eval(), origins
