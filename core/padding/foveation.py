"""Foveation maps: how many convolution paths connect each input pixel to the output.

Alsallakh et al., "Mind the Pad" (ICLR 2021, §4 and Fig. 11) and the companion explainer
"Convolution can incur foveation effects": linearise the network (every kernel all ones, no
biases, normalisation and activations removed, pooling windows as all-ones kernels) and count,
for each input pixel, the paths through which it reaches the output, i.e. ``d(sum of the last
feature map) / d(input)``. The map depends on the architecture, input size and padding only.
Zero padding under-uses border pixels; uneven padding makes the map asymmetric; circular and
SYMMETRIC padding give uniform single-layer counts.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._util import as_hw, check_model, drop_hooks, hooks
from ._util import in_channels as _first_in_channels
from .explicit import same_kind, tf_same_padding
from .foveation_ops import SumPool2d, is_elementwise
from .modes import swap_padding

__all__ = ["foveation_map", "linearize"]

class _SamePadPool(nn.Module):
    """Linear stand-in of a TF-SAME pooling layer (EfficientNet ports' ``MaxPool2d*SamePadding``,
    timm's ``MaxPool2dSame``): its static pad module, or zeros by the TF rule on each input,
    then the window sum. Pads carry no path whatever value they hold."""

    def __init__(self, module: nn.Module, pool: SumPool2d) -> None:
        super().__init__()
        static = same_kind(module) == "static"
        self.pad = copy.deepcopy(module.static_padding) if static else None
        self.window = pool.kernel_size, pool.stride, pool.dilation
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            return self.pool(self.pad(x))
        (kh, kw), (sh, sw), (dh, dw) = self.window
        top, bottom = tf_same_padding(x.shape[-2], kh, sh, dh)
        left, right = tf_same_padding(x.shape[-1], kw, sw, dw)
        return self.pool(F.pad(x, (left, right, top, bottom)))


def _linear_stand_in(module: nn.Module) -> nn.Module | None:
    """The replacement of ``module`` in the linearised network, or None to keep it."""
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)) and same_kind(module) is not None:
        dilation = module.dilation if isinstance(module, nn.MaxPool2d) else 1
        return _SamePadPool(module, SumPool2d(module.kernel_size, module.stride, module.padding,
                                              dilation, module.ceil_mode))
    if isinstance(module, nn.MaxPool2d):
        return SumPool2d(module.kernel_size, module.stride, module.padding, module.dilation,
                         module.ceil_mode)
    if isinstance(module, nn.AvgPool2d):
        return SumPool2d(module.kernel_size, module.stride, module.padding, 1, module.ceil_mode)
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveAvgPool2d(module.output_size)
    if is_elementwise(module):
        return nn.Identity()
    return None


def linearize(model: nn.Module, dtype: torch.dtype = torch.float64) -> nn.Module:
    """A linear copy of ``model`` whose convolutions count paths (the input is not changed).

    Convolution weights become ``1 / (in_channels / groups)`` -- every channel then carries the
    same map, equal to the single-channel path count, whatever the widths -- and biases 0;
    normalisation, dropout and element-wise activations become identities; max and average
    pooling become window sums; linear layers average their inputs. In eval mode, no gradients
    for parameters.
    """
    check_model(model)
    return _linearize_inplace(copy.deepcopy(model), dtype)


def _linearize_inplace(net: nn.Module, dtype: torch.dtype) -> nn.Module:
    net = drop_hooks(net).to(dtype).eval()
    for name, module in list(net.named_modules()):
        if name == "":
            continue
        new = _linear_stand_in(module)
        if new is not None:
            parent_name, _, child = name.rpartition(".")
            parent = net.get_submodule(parent_name) if parent_name else net
            parent._modules[child] = new
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.fill_(1.0 / (module.in_channels // module.groups))
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Linear):
                module.weight.fill_(1.0 / module.in_features)
                if module.bias is not None:
                    module.bias.zero_()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def foveation_map(model: nn.Module, input_size: int | tuple[int, int],
                  padding_mode: str | None = None, in_channels: int | None = None,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-pixel path counts ``(H, W)`` of ``model`` at ``input_size`` (int or (h, w)).

    ``padding_mode`` (one of ``swap_padding``'s modes) first swaps every convolution's padding;
    None keeps the model's own. Counts are exact for the linearised network (Alsallakh et al.,
    ICLR 2021): ``d(sum of the last feature map)/d(input)`` (global adaptive pooling excluded, it
    only rescales), in float64 (integers exact up to 2**53), for a single-channel network with the
    model's spatial layout. Computed on the one-channel skeleton when the model allows it, else
    on a linearised full copy. The model itself is never changed.
    """
    from .skeleton import skeleton

    check_model(model)
    h, w = as_hw(input_size)
    base = swap_padding(model, padding_mode) if padding_mode is not None else model
    try:
        net, _ = skeleton(base, dtype)
        return _path_counts(net, torch.ones(1, 1, h, w, dtype=dtype))
    except Exception:  # noqa: BLE001 - Unsupported, or e.g. a reshape that needs the channels:
        pass  # the full linearised model below runs (and reports a size error clearly)
    net = _linearize_inplace(copy.deepcopy(base) if base is model else base, dtype)
    channels = _first_in_channels(net) if in_channels is None else int(in_channels)
    device = next(net.parameters()).device
    return _path_counts(net, torch.ones(1, channels, h, w, dtype=dtype, device=device))


def _path_counts(net: nn.Module, ones: torch.Tensor) -> torch.Tensor:
    """``d(sum of the last 4-D output that is not a global adaptive pooling)/d(ones)``, summed
    over channels: ``(H, W)``."""
    x = ones.requires_grad_(True)
    last: list[torch.Tensor] = []
    pooled: set[int] = set()

    def keep(module: nn.Module, args: tuple, output: Any) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() != 4 or not output.requires_grad:
            return
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            pooled.add(id(output))
        if id(output) not in pooled:
            last[:] = [output]

    handles = [m.register_forward_hook(keep) for m in net.modules()]
    h, w = x.shape[-2:]
    with hooks(handles), torch.enable_grad():
        try:
            net(x)
        except Exception as error:
            raise ValueError(f"input_size: the network cannot run at {h}x{w} "
                             f"({type(error).__name__}: {error})") from error
    if not last:
        raise ValueError("model: no layer produced a 4-D feature map")
    # every channel of the linearised network carries the same map: count it once
    (grad,) = torch.autograd.grad(last[0].mean(dim=1).sum(), x)
    return grad.sum(dim=1)[0].detach()
