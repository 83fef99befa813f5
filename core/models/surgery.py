"""Model surgery: every function here returns a modified *copy* of a model, never the model.

- Padding swap (Alsallakh et al., "Mind the Pad -- CNNs can develop blind spots", ICLR 2021):
  :func:`swap_padding` makes every ``nn.Conv2d`` pad with another mode (zeros, reflect,
  replicate, circular, TensorFlow's SYMMETRIC, partial convolution), TF-SAME ports included
  (their static pads kept or made dynamic).
- Smoothing (Kokhlikyan et al., "Investigating sanity checks for saliency maps with image and
  text classification", arXiv:2106.07475; Dombrowski et al., NeurIPS 2019): :func:`smooth_model`
  replaces ReLU by Softplus and max pooling by LogSumExp pooling (:class:`LSEPool2d` & co.).
  Softplus_beta tends to ReLU as beta -> inf, and the gradient of a Softplus unit is a smoothed
  (SmoothGrad-like) average of the ReLU unit's gradient (Dombrowski et al., Thm. 2). LSE pooling
  over a window W with temperature r is ``(1/r) log((1/|W|) sum exp(r x_i))``: it tends to the
  maximum as r -> inf and to the mean as r -> 0 (the ``1/|W|`` removes the ``log|W|/r`` bias).
  The paper's β and r are not in the sources we could read (its full text was not); the defaults
  ``softplus_beta=10`` (torch's ``Softplus(beta)``, ``(1/β) log(1 + e^{βz})``) and
  ``lse_temperature=10`` are ours, applied post hoc to the trained weights.
- Re-initialisation for the model-parameter randomisation test (Adebayo et al., "Sanity Checks
  for Saliency Maps", NeurIPS 2018): :func:`reinitialize_layers` and :func:`randomized_copies`
  (cascading / independent).

``smooth_model`` swaps *modules* (``nn.ReLU``, ``nn.MaxPool1d/2d``, ``nn.AdaptiveMaxPool1d/2d``);
functional calls inside a ``forward`` (``F.relu``, ``torch.amax``) cannot be swapped from the
outside, except the built-in ``TextCNN``'s max-over-time (its ``pool`` slot takes a
:class:`GlobalLSEPool`). Smoothing a trained ReLU network post hoc changes the function it
computes: compare accuracies, or train the smooth architecture.
"""

from __future__ import annotations

import copy
import logging
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_module
from .architectures import GlobalLSEPool, TextCNN

logger = logging.getLogger(__name__)

RANDOMIZATION_MODES = ("cascading", "independent")


def _check_positive(name: str, value: object) -> float:
    """A finite number > 0 (Softplus beta, LSE temperature), else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or \
            not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite positive number, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- padding swap


def _plain_conv(conv: nn.Conv2d) -> nn.Conv2d:
    new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding, conv.dilation, conv.groups, bias=conv.bias is not None,
                    padding_mode="zeros", device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(conv.weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    new.train(conv.training)
    return new


SAME_CHOICES = ("keep", "dynamic")
"""``swap_padding``'s ``same``: TF-SAME convs keep their amounts, or pad by the TF rule per
input."""


def _swapped_conv(conv: nn.Conv2d, mode: str, same: str) -> nn.Conv2d | None:
    """The replacement of ``conv`` (None: leave it). ``mode`` "keep": the conv's own mode."""
    from ..padding.explicit import layer_padding, same_kind
    from ..padding.modes import PadConv2d

    kind = same_kind(conv)
    if kind is None and type(conv) not in (nn.Conv2d, PadConv2d):
        return None
    if kind == "static":
        pad = layer_padding(conv, (1, 1))
        if pad.limitation or min(pad.extra) < 0 or "+" in pad.mode:
            return None
        own = pad.mode if pad.mode in ("zeros", "reflect", "replicate", "circular") else None
        new_mode = own if mode == "keep" else mode
        if new_mode is None:
            return None
        return PadConv2d.from_conv(conv, new_mode, "same" if same == "dynamic" else pad.extra)
    if kind == "dynamic":
        return PadConv2d.from_conv(conv, "zeros" if mode == "keep" else mode, "same")
    if mode == "keep":
        if same == "dynamic" and isinstance(conv, PadConv2d) and conv.extra_pads != (0, 0, 0, 0):
            return PadConv2d.from_conv(conv, conv.pad_mode, "same")
        return None
    if mode == "zeros" and getattr(conv, "extra_pads", (0, 0, 0, 0)) == (0, 0, 0, 0):
        return _plain_conv(conv)
    return PadConv2d.from_conv(conv, mode)


def _pad_module(pads: tuple[int, int, int, int], mode: str) -> nn.Module:
    """A pad module padding by ``pads`` with ``mode`` (a pad mode, not ``partial``)."""
    from ..padding.modes import SymmetricPad2d

    if mode == "symmetric":
        return SymmetricPad2d(pads)
    cls = {"zeros": nn.ZeroPad2d, "reflect": nn.ReflectionPad2d,
           "replicate": nn.ReplicationPad2d, "circular": nn.CircularPad2d}[mode]
    return cls(pads)


def _swap_pad_modules(out: nn.Module, mode: str) -> None:
    """Give ``out``'s own pad modules (``nn.ZeroPad2d`` & co., outside TF-SAME convs) ``mode``.

    ``partial`` is a convolution, not a pad: a pad module directly followed by a convolution in
    an ``nn.Sequential`` is folded into it (the pad becomes ``nn.Identity``; the conv a partial
    ``PadConv2d`` whose own padding grows by even pads, or whose explicit pads grow by uneven
    ones); any other pad module stays and is logged. A module used at several places is
    replaced at each (one new module for all). Cropping pads (negative amounts) are the same in
    every mode and stay."""
    from ..padding.explicit import pad_module_info

    new_of: dict[int, nn.Module] = {}
    done: set[tuple[int, str]] = set()  # a shared block is reached once per use: fold it once
    for name, module in list(out.named_modules(remove_duplicate=False)):
        info = pad_module_info(module)
        if info is None or not name or _inside_same_layer(out, name):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        if (id(parent), child) in done:
            continue
        done.add((id(parent), child))
        pads, own = info
        if min(pads) < 0:
            logger.info("swap_padding: %s (%s) crops (pads %s); kept", name,
                        type(module).__name__, pads)
            continue
        if mode != "partial":
            if own != mode:
                if id(module) not in new_of:
                    new_of[id(module)] = _pad_module(pads, mode)
                parent._modules[child] = new_of[id(module)]
            continue
        if not _fold_partial(parent, child, pads):
            logger.warning("swap_padding: %s (%s) pads with %s; partial padding is a convolution "
                           "and this pad module feeds none directly in an nn.Sequential, so it "
                           "stays as it is", name, type(module).__name__, own)


def _fold_partial(parent: nn.Module, child: str, pads: tuple[int, int, int, int]) -> bool:
    """Fold the pad module ``parent.child`` into the convolution after it (in an
    ``nn.Sequential``) as partial padding; False when there is none to fold into."""
    from ..padding.modes import PadConv2d

    keys = list(parent._modules)
    nxt = keys.index(child) + 1
    conv = parent._modules[keys[nxt]] if nxt < len(keys) else None
    if not isinstance(parent, nn.Sequential) or type(conv) not in (nn.Conv2d, PadConv2d):
        return False
    extra = getattr(conv, "extra_pads", (0, 0, 0, 0))
    if not isinstance(extra, tuple) or isinstance(conv.padding, str):
        return False
    left, right, top, bottom = pads
    if left == right and top == bottom:  # even: the conv's own padding, as a native conv has it
        new = PadConv2d.from_conv(conv, "partial", extra,
                                  padding=(conv.padding[0] + top, conv.padding[1] + left))
    else:
        new = PadConv2d.from_conv(conv, "partial",
                                  tuple(a + b for a, b in zip(extra, pads, strict=True)))
    parent._modules[keys[nxt]] = new
    parent._modules[child] = nn.Identity()
    return True


def _inside_same_layer(model: nn.Module, name: str) -> bool:
    """Whether the module called ``name`` sits inside a TF-SAME conv or pool (its
    ``static_padding``), which the conv's own swap handles."""
    from ..padding.explicit import same_kind

    parts = name.split(".")
    return any(same_kind(model.get_submodule(".".join(parts[:i]))) is not None
               for i in range(1, len(parts)))


def swap_padding(model: nn.Module, mode: str, *, same: str = "keep") -> nn.Module:
    """A copy of ``model`` in which every ``nn.Conv2d`` pads with ``mode``; weights are kept.

    ``mode`` is one of ``visloupe.core.padding.PADDING_MODES`` (the padding layer,
    ``PadConv2d``, lives in the padding package and is imported at call time), or ``"keep"``:
    each convolution keeps its mode (with ``same="dynamic"``, to rebuild only the amounts). The
    input model is never changed. Pooling layers keep their own padding. A ``config`` dict with
    a ``padding_mode`` key (the built-in ``SmallResNet``) is updated on the copy for the native
    torch modes.

    TF-SAME convolutions (ports of TensorFlow models such as EfficientNet; duck-typed, see
    ``visloupe.core.padding.explicit``) are swapped too: a conv with a static pad module
    (``static_padding``) becomes one ``PadConv2d`` of the requested mode with the *same*
    amounts, ``(0, 1)`` stays ``(0, 1)`` -- the sampling grid and output sizes the weights were
    trained with are kept and only the padded values change (made even, ``(1, 1)``, the grid
    would move by a pixel and, at 224, PyTorch would leave the extra row unused, i.e. uneven the
    other way; Alsallakh et al., ICLR 2021). ``same="dynamic"`` instead pads by TensorFlow's
    SAME rule on each input's size, as the model built for that size (or with
    ``image_size=None``) would: then the input size decides whether padding is even (225 for
    EfficientNet). Dynamic-SAME convs stay dynamic. Other ``nn.Conv2d`` subclasses (which may
    pad in their own way) are left alone and logged.

    The model's own pad modules (``nn.ZeroPad2d``, ``ConstantPad2d``, ``ReflectionPad2d``, ...)
    pad with ``mode`` too, with their amounts (``symmetric``: :class:`SymmetricPad2d`), also
    one that feeds a pooling layer (unlike the pool's own padding); for ``partial`` one is
    folded into the convolution it feeds in an ``nn.Sequential``, else kept and logged.
    ``F.pad`` calls inside a ``forward`` cannot be swapped.
    """
    from ..padding.modes import PADDING_MODES  # the padding layer, at call time

    check_module(model)
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise ValueError(f"model: expected a network with at least one nn.Conv2d, found none "
                         f"in {type(model).__name__}")
    if mode not in PADDING_MODES and mode != "keep":
        raise ValueError(f"mode: expected one of {[*PADDING_MODES, 'keep']}, got {mode!r}")
    if same not in SAME_CHOICES:
        raise ValueError(f"same: expected one of {list(SAME_CHOICES)}, got {same!r}")
    out = copy.deepcopy(model)
    if isinstance(out, nn.Conv2d):
        new = _swapped_conv(out, mode, same)
        if new is None and mode != "keep":
            logger.warning("swap_padding: leaving the model (%s) as it is", type(out).__name__)
        return out if new is None else new
    new_of: dict[int, nn.Conv2d | None] = {}  # a conv used at several places: one new conv
    for name, module in list(out.named_modules(remove_duplicate=False)):
        if not isinstance(module, nn.Conv2d):
            continue
        if id(module) not in new_of:
            new_of[id(module)] = _swapped_conv(module, mode, same)
            if new_of[id(module)] is None and mode != "keep":
                logger.warning("swap_padding: leaving %s (%s) as it is", name,
                               type(module).__name__)
        new = new_of[id(module)]
        if new is None:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        parent._modules[child] = new
    if mode != "keep":
        _swap_pad_modules(out, mode)
    config = getattr(out, "config", None)
    if isinstance(config, dict) and "padding_mode" in config and mode in PADDING_MODES[:4]:
        out.config = {**config, "padding_mode": mode}
    return out


# --------------------------------------------------------------------------- smoothing


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    out = tuple(int(v) for v in value)
    if len(out) != 2:
        raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
    return out  # type: ignore[return-value]


def _check_temperature(value: float) -> float:
    return _check_positive("lse_temperature", value)


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


class SoftplusReLU6(nn.Module):
    """``softplus_β(z) - softplus_β(z - 6)``: the smooth counterpart of ``ReLU6 = min(max(z, 0),
    6)`` (MobileNet/EfficientNet-Lite), as Softplus is of ReLU; it tends to ReLU6 as β grows."""

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = float(beta)

    def forward(self, x: Tensor) -> Tensor:
        return F.softplus(x, beta=self.beta) - F.softplus(x - 6.0, beta=self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


@dataclass(frozen=True)
class SmoothingReport:
    """What ``smooth_model`` replaced: ``(qualified name, old type, new module repr)``."""

    replaced: tuple[tuple[str, str, str], ...]
    softplus_beta: float
    lse_temperature: float


def _replacement(module: nn.Module, beta: float, r: float) -> nn.Module | None:
    if isinstance(module, nn.ReLU6):
        return SoftplusReLU6(beta)
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
    ``nn.Softplus(softplus_beta)`` (``nn.ReLU6`` by :class:`SoftplusReLU6`) and every max
    pooling module (``MaxPool1d/2d``, ``AdaptiveMaxPool1d/2d``) by LogSumExp pooling with
    temperature ``lse_temperature`` normalised by the window size; for the built-in ``TextCNN``
    the functional max-over-time becomes LSE over time. The caller's model is not changed.

    ``strict``: raise ``ValueError`` when nothing could be replaced (e.g. a model that only uses
    functional ``F.relu``), rather than returning an unsmoothed copy. ``return_report``: also
    return a :class:`SmoothingReport` listing the swaps. Built-in architectures get their
    ``config`` updated so ``save_model``/``load_model`` rebuild the smoothed copy.
    """
    check_module(model)
    beta = _check_positive("softplus_beta", softplus_beta)
    r = _check_temperature(lse_temperature)
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
            "model: found no nn.ReLU, nn.ReLU6 or max-pooling module to replace (functional "
            "F.relu / torch.max calls inside forward cannot be swapped from outside); pass "
            "strict=False "
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


# --------------------------------------------------------------------------- re-initialisation


def has_own_parameters(module: nn.Module) -> bool:
    """Whether ``module`` itself (not only its children) registers parameters."""
    return any(True for _ in module.parameters(recurse=False))


def _layer_seed(seed: int, name: str) -> int:
    return zlib.crc32(f"{int(seed)}:{name}".encode()) & 0x7FFFFFFF


def _reset(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module`` (a part of a copy) in place: every submodule that owns
    parameters calls its own ``reset_parameters()`` (BatchNorm also resets its running
    statistics), with the global RNG seeded by ``seed`` inside ``torch.random.fork_rng``, so the
    caller's RNG state is untouched and the same seed gives the same weights."""
    devices = sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(int(seed))
        for sub in module.modules():
            if has_own_parameters(sub):
                reset = getattr(sub, "reset_parameters", None)
                if not callable(reset):
                    raise ValueError(f"layers: module {type(sub).__name__} has parameters but no "
                                     "reset_parameters() to re-initialise them")
                reset()


def _check_layer_names(model: nn.Module, layers: Sequence[str]) -> list[str]:
    if isinstance(layers, str):
        layers = [layers]
    names = list(layers)
    modules = dict(model.named_modules())
    for name in names:
        if not isinstance(name, str) or name == "" or name not in modules:
            raise ValueError(f"layers: expected names of submodules of the model, got {name!r}")
    return names


def reinitialize_layers(model: nn.Module, layers: Sequence[str], *, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` (eval mode) with the named submodules re-initialised by their own
    ``reset_parameters()``; layer ``name`` gets weights seeded by ``(seed, name)``, the same in
    every call. ``model`` is not changed."""
    check_module(model)
    names = _check_layer_names(model, layers)
    out = copy.deepcopy(model).eval()
    for name in names:
        _reset(out.get_submodule(name), _layer_seed(seed, name))
    return out


def randomized_copies(
    model: nn.Module,
    layers: Sequence[str],
    mode: str = "cascading",
    *,
    seed: int = 0,
) -> Iterator[tuple[int, str, nn.Module]]:
    """Yield ``(step, layer, copy)``: step 0 is an unchanged copy (layer ``"(original)"``); in
    ``"cascading"`` mode step k has ``layers[:k]`` re-initialised (in the order given, outermost
    first for Adebayo et al.'s cascade), in ``"independent"`` mode only ``layers[k - 1]``. A
    layer gets the same new weights in both modes (seeded by ``(seed, layer name)``). Every
    yielded model is a fresh copy in eval mode; ``model`` is never changed."""
    check_module(model)
    if mode not in RANDOMIZATION_MODES:
        raise ValueError(f"mode: expected one of {list(RANDOMIZATION_MODES)}, got {mode!r}")
    names = _check_layer_names(model, layers)
    work = copy.deepcopy(model).eval()
    yield 0, "(original)", copy.deepcopy(work)
    for k, name in enumerate(names, start=1):
        if mode == "independent":
            work = copy.deepcopy(model).eval()
        _reset(work.get_submodule(name), _layer_seed(seed, name))
        yield k, name, copy.deepcopy(work) if mode == "cascading" else work
