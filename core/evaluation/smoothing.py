"""Smoothing a network for smoother explanations: ReLU -> Softplus, max pooling -> LogSumExp.

Kokhlikyan et al., "Investigating sanity checks for saliency maps with image and text
classification" (arXiv:2106.07475) report that replacing ReLUs by Softplus and max pooling by
LogSumExp (LSE) pooling gives explanations with lower infidelity. Softplus_β tends to ReLU as
β -> ∞, and the gradient of a Softplus unit is a smoothed (SmoothGrad-like) average of the ReLU
unit's gradient (Dombrowski et al., NeurIPS 2019, Thm. 2). LSE pooling over a window W with
temperature r is ``(1/r) log((1/|W|) Σ exp(r x_i))``: it tends to the maximum as r -> ∞ and to
the mean as r -> 0 (the ``1/|W|`` removes the ``log|W|/r`` upward bias).

``smooth_model`` swaps *modules*: ``nn.ReLU``, ``nn.MaxPool1d/2d`` and ``nn.AdaptiveMaxPool1d/2d``.
Functional calls inside a ``forward`` (``F.relu``, ``torch.amax``) cannot be swapped from the
outside; the built-in ``TextCNN``'s functional max-over-time is the one case handled (its
``pool`` slot takes a :class:`~visloupe.core.models.GlobalLSEPool`). Note that smoothing a trained
ReLU network post hoc changes the function it computes: compare accuracies, or train the smooth
architecture (``SmallResNet(activation="softplus", pooling="lse")``, ``TextCNN(...)``).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.architectures import GlobalLSEPool, TextCNN

__all__ = [
    "AdaptiveLSEPool1d",
    "AdaptiveLSEPool2d",
    "LSEPool1d",
    "LSEPool2d",
    "SmoothingReport",
    "lse_pool2d",
    "smooth_model",
]

logger = logging.getLogger(__name__)


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    out = tuple(int(v) for v in value)
    if len(out) != 2:
        raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
    return out  # type: ignore[return-value]


def _check_temperature(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or \
            not math.isfinite(value):
        raise ValueError(f"lse_temperature: expected a finite positive number, got {value!r}")
    return float(value)


def lse_pool2d(x: Tensor, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None,
               padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1,
               temperature: float = 10.0) -> Tensor:
    """LogSumExp pooling of ``x (N, C, H, W)``, normalised by the number of in-image positions
    of each window (padding contributes nothing, as padding never wins a max pool)."""
    k = _pair(kernel_size, "kernel_size")
    s = _pair(stride if stride is not None else kernel_size, "stride")
    p = _pair(padding, "padding")
    d = _pair(dilation, "dilation")
    r = _check_temperature(temperature)
    n, c, h, w = x.shape
    xp = F.pad(x, (p[1], p[1], p[0], p[0]), value=float("-inf")) if any(p) else x
    cols = F.unfold(xp.reshape(n * c, 1, *xp.shape[-2:]), k, dilation=d, stride=s)
    out_h = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    out_w = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    lse = torch.logsumexp(r * cols, dim=1)  # (n*c, L)
    if any(p):
        ones = F.pad(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device),
                     (p[1], p[1], p[0], p[0]))
        count = F.unfold(ones, k, dilation=d, stride=s).sum(dim=1)  # (1, L)
    else:
        count = torch.full((1, 1), float(k[0] * k[1]), dtype=x.dtype, device=x.device)
    return ((lse - count.log()) / r).reshape(n, c, out_h, out_w)


class LSEPool2d(nn.Module):
    """Drop-in smooth replacement for ``nn.MaxPool2d`` (same window arguments, ``ceil_mode``
    not supported): ``(1/r) log(mean_W exp(r x))`` per window."""

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1,
                 temperature: float = 10.0) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.padding, self.dilation = padding, dilation
        self.temperature = _check_temperature(temperature)

    def forward(self, x: Tensor) -> Tensor:
        squeeze = x.dim() == 3
        y = lse_pool2d(x[None] if squeeze else x, self.kernel_size, self.stride, self.padding,
                       self.dilation, self.temperature)
        return y[0] if squeeze else y

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"temperature={self.temperature}")


class LSEPool1d(nn.Module):
    """Drop-in smooth replacement for ``nn.MaxPool1d`` on ``(N, C, L)``."""

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0,
                 dilation: int = 1, temperature: float = 10.0) -> None:
        super().__init__()
        self.kernel_size, self.stride = int(kernel_size), stride
        self.padding, self.dilation = int(padding), int(dilation)
        self.temperature = _check_temperature(temperature)

    def forward(self, x: Tensor) -> Tensor:
        stride = self.kernel_size if self.stride is None else int(self.stride)
        y = lse_pool2d(x[:, :, None, :], (1, self.kernel_size), (1, stride),
                       (0, self.padding), (1, self.dilation), self.temperature)
        return y[:, :, 0, :]

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, " \
               f"temperature={self.temperature}"


def _adaptive_bounds(size: int, out: int) -> list[tuple[int, int]]:
    """torch's adaptive pooling windows: ``[floor(i size/out), ceil((i+1) size/out))``."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


class AdaptiveLSEPool2d(nn.Module):
    """Smooth replacement for ``nn.AdaptiveMaxPool2d``: LSE over torch's adaptive windows."""

    def __init__(self, output_size: int | Sequence[int | None], temperature: float = 10.0) -> None:
        super().__init__()
        self.output_size = output_size
        self.temperature = _check_temperature(temperature)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        size = self.output_size
        oh, ow = (size, size) if isinstance(size, int) else tuple(size)
        oh, ow = h if oh is None else int(oh), w if ow is None else int(ow)
        r = self.temperature
        rows = []
        for r0, r1 in _adaptive_bounds(h, oh):
            cols = []
            for c0, c1 in _adaptive_bounds(w, ow):
                win = x[..., r0:r1, c0:c1].flatten(-2)
                cols.append((torch.logsumexp(r * win, dim=-1) - math.log(win.shape[-1])) / r)
            rows.append(torch.stack(cols, dim=-1))
        return torch.stack(rows, dim=-2)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, temperature={self.temperature}"


class AdaptiveLSEPool1d(nn.Module):
    """Smooth replacement for ``nn.AdaptiveMaxPool1d`` on ``(N, C, L)``."""

    def __init__(self, output_size: int, temperature: float = 10.0) -> None:
        super().__init__()
        self.output_size = output_size
        self.inner = AdaptiveLSEPool2d((1, output_size), temperature)

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x[:, :, None, :])[:, :, 0, :]


@dataclass(frozen=True)
class SmoothingReport:
    """What ``smooth_model`` replaced: ``(qualified name, old type, new module repr)``."""

    replaced: tuple[tuple[str, str, str], ...]
    softplus_beta: float
    lse_temperature: float


def _replacement(module: nn.Module, beta: float, r: float) -> nn.Module | None:
    if isinstance(module, nn.ReLU):
        return nn.Softplus(beta=beta)
    if isinstance(module, nn.MaxPool2d):
        if module.ceil_mode:
            raise ValueError("model: MaxPool2d with ceil_mode=True has no LSE replacement here")
        if module.return_indices:
            raise ValueError("model: MaxPool2d with return_indices=True has no LSE replacement")
        return LSEPool2d(module.kernel_size, module.stride, module.padding, module.dilation, r)
    if isinstance(module, nn.MaxPool1d):
        if module.ceil_mode or module.return_indices:
            raise ValueError("model: MaxPool1d with ceil_mode/return_indices has no LSE "
                             "replacement here")
        k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
        s = module.stride if isinstance(module.stride, int) or module.stride is None \
            else module.stride[0]
        p = module.padding if isinstance(module.padding, int) else module.padding[0]
        d = module.dilation if isinstance(module.dilation, int) else module.dilation[0]
        return LSEPool1d(k, s, p, d, r)
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return AdaptiveLSEPool2d(module.output_size, r)
    if isinstance(module, nn.AdaptiveMaxPool1d):
        size = module.output_size
        return AdaptiveLSEPool1d(size if isinstance(size, int) else size[0], r)
    return None


def smooth_model(
    model: nn.Module,
    softplus_beta: float = 10.0,
    lse_temperature: float = 10.0,
    *,
    strict: bool = True,
    return_report: bool = False,
) -> nn.Module | tuple[nn.Module, SmoothingReport]:
    """A deep copy of ``model`` (weights kept, in eval mode) with every ``nn.ReLU`` replaced by
    ``nn.Softplus(softplus_beta)`` and every max pooling module (``MaxPool1d/2d``,
    ``AdaptiveMaxPool1d/2d``) by LogSumExp pooling with temperature ``lse_temperature``
    normalised by the window size; for the built-in ``TextCNN`` the functional max-over-time
    becomes LSE over time. The caller's model is not changed.

    ``strict``: raise ``ValueError`` when nothing could be replaced (e.g. a model that only uses
    functional ``F.relu``), rather than returning an unsmoothed copy. ``return_report``: also
    return a :class:`SmoothingReport` listing the swaps. Built-in architectures get their
    ``config`` updated so ``save_model``/``load_model`` rebuild the smoothed copy.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(softplus_beta, bool) or not isinstance(softplus_beta, (int, float)) or \
            not softplus_beta > 0 or not math.isfinite(softplus_beta):
        raise ValueError(f"softplus_beta: expected a finite positive number, got "
                         f"{softplus_beta!r}")
    beta, r = float(softplus_beta), _check_temperature(lse_temperature)
    smooth = copy.deepcopy(model).eval()
    replaced: list[tuple[str, str, str]] = []
    for name, module in list(smooth.named_modules()):
        for child_name, child in list(module.named_children()):
            new = _replacement(child, beta, r)
            if new is not None:
                setattr(module, child_name, new)
                full = f"{name}.{child_name}" if name else child_name
                replaced.append((full, type(child).__name__, repr(new)))
    if isinstance(smooth, TextCNN) and smooth.pool is None:
        smooth.pool = GlobalLSEPool(r)
        replaced.append(("pool", "max over time (torch.amax)", repr(smooth.pool)))
    if not replaced and strict:
        raise ValueError(
            "model: found no nn.ReLU or max-pooling module to replace (functional F.relu / "
            "torch.max calls inside forward cannot be swapped from outside); pass strict=False "
            "to accept an unchanged copy"
        )
    config = getattr(smooth, "config", None)
    if isinstance(config, dict) and type(smooth).__name__ in ("SmallResNet", "TextCNN"):
        swapped = {old for _, old, _ in replaced}
        if "ReLU" in swapped and config.get("activation") == "relu":
            config.update(activation="softplus", softplus_beta=beta)
        if config.get("pooling") == "max" and swapped - {"ReLU"}:
            config.update(pooling="lse", lse_temperature=r)
        smooth.config = config
    logger.info("smooth_model: replaced %d module(s): %s", len(replaced),
                ", ".join(n for n, _, _ in replaced))
    report = SmoothingReport(tuple(replaced), beta, r)
    return (smooth, report) if return_report else smooth
