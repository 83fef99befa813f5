"""Input-space attribution methods, through Captum where Captum has them.

Each function follows the registry's method contract (see ``registry``) and is registered at
import. Papers: Simonyan et al. 2014 (saliency), Shrikumar et al. 2016 (input x gradient),
Sundararajan et al. 2017 (integrated gradients), Smilkov et al. 2017 (SmoothGrad), Adebayo et
al. 2018 (VarGrad), Shrikumar et al. 2017 (DeepLIFT), Springenberg et al. 2015 (guided
backpropagation), Zeiler & Fergus 2014 (occlusion), Achanta et al. 2012 (SLIC superpixels).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from captum.attr import (
    DeepLift,
    FeatureAblation,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    Occlusion,
    Saliency,
)
from torch import Tensor, nn

from .registry import MethodSpec, ParamSpec, register_method

__all__ = [
    "deeplift",
    "deeplift_unsupported",
    "feature_ablation",
    "guided_backprop",
    "input_x_gradient",
    "integrated_gradients",
    "occlusion",
    "saliency",
    "saliency_abs",
    "slic_segments",
    "smoothgrad",
]

IG_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right",
              "riemann_middle")


@contextlib.contextmanager
def _quiet_hooks() -> Iterator[None]:
    """Silence Captum's per-call 'setting hooks on activations' notices (they are removed)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Setting (forward, )?backward hooks")
        yield


def _leaf(inputs: Tensor) -> Tensor:
    """A detached copy that requires grad (what Captum's gradient methods expect)."""
    return inputs.detach().clone().requires_grad_(True)


def saliency(forward: nn.Module, inputs: Tensor, target: Tensor, *, baseline: Tensor | None,
             layer=None) -> Tensor:
    """Signed gradient ∂f_target/∂x (Simonyan et al., ICLR-W 2014)."""
    return Saliency(forward).attribute(_leaf(inputs), target=target, abs=False)


def saliency_abs(forward: nn.Module, inputs: Tensor, target: Tensor, *, baseline: Tensor | None,
                 layer=None) -> Tensor:
    """|∂f_target/∂x| (Simonyan et al., ICLR-W 2014; Captum's default ``abs=True``)."""
    return Saliency(forward).attribute(_leaf(inputs), target=target, abs=True)


def input_x_gradient(forward: nn.Module, inputs: Tensor, target: Tensor, *, baseline: Tensor | None,
                     layer=None) -> Tensor:
    """x ⊙ ∂f/∂x (Shrikumar et al. 2016); the baseline is implicitly zero."""
    return InputXGradient(forward).attribute(_leaf(inputs), target=target)


def integrated_gradients(forward: nn.Module, inputs: Tensor, target: Tensor, *,
                         baseline: Tensor, layer=None, n_steps: int = 50,
                         quadrature: str = "gausslegendre",
                         internal_batch_size: int = 0) -> Tensor:
    """(x − x')⊙∫₀¹ ∂f(x' + α(x − x'))/∂x dα (Sundararajan et al., ICML 2017) with Captum's
    ``quadrature`` rule (Captum's ``method=``; renamed so it does not clash with ``explain``'s
    ``method``); the attributions sum to f(x) − f(x') up to the quadrature error. Defaults are
    Captum's ``IntegratedGradients.attribute``: ``n_steps=50``, Gauss-Legendre nodes on [0, 1],
    the all-zeros baseline (``explain``'s ``baseline=None``)."""
    return IntegratedGradients(forward).attribute(
        inputs, baselines=baseline, target=target, n_steps=n_steps, method=quadrature,
        internal_batch_size=internal_batch_size or None,
    )


def _noise(inputs: Tensor, seeds: Sequence[int], samples: int, stdevs: float) -> Tensor:
    """Gaussian noise ``(samples, n, C, H, W)``: image i's noise comes from its own seeded CPU
    generator, so it does not depend on the batch it is in or on the device; std = ``stdevs`` ×
    the image's value range (Smilkov et al.'s σ / (x_max − x_min))."""
    n = inputs.shape[0]
    draws = []
    for i in range(n):
        gen = torch.Generator().manual_seed(int(seeds[i]))
        draws.append(torch.randn((samples, *inputs.shape[1:]), generator=gen))
    noise = torch.stack(draws, dim=1).to(device=inputs.device, dtype=inputs.dtype)
    flat = inputs.detach().flatten(1)
    span = (flat.amax(dim=1) - flat.amin(dim=1)).view(1, n, 1, 1, 1)
    span = torch.where(span > 0, span, torch.ones_like(span))
    return noise * (stdevs * span)


def smoothgrad(forward: nn.Module, inputs: Tensor, target: Tensor, *, baseline: Tensor,
               layer=None, seeds: Sequence[int], nt_samples: int = 16, stdevs: float = 0.15,
               nt_type: str = "smoothgrad", base: str = "saliency", n_steps: int = 16) -> Tensor:
    """Average a base attribution over noisy copies of the input (SmoothGrad, Smilkov et al.
    2017); ``nt_type="smoothgrad_sq"`` averages squares, ``"vargrad"`` takes the variance
    (Adebayo et al. 2018). Same estimator as Captum's ``NoiseTunnel``, but the noise is drawn from
    per-image seeded generators instead of the global RNG."""
    noise = _noise(inputs, seeds, nt_samples, stdevs)
    n = inputs.shape[0]
    per_pass = max(1, 64 // max(n, 1))
    total = torch.zeros_like(inputs)
    total_sq = torch.zeros_like(inputs)
    for start in range(0, nt_samples, per_pass):
        block = noise[start:start + per_pass]
        k = block.shape[0]
        noisy = (inputs.unsqueeze(0) + block).reshape(k * n, *inputs.shape[1:])
        noisy = _leaf(noisy)
        tgt = target.repeat(k)
        if base == "saliency":
            attr = Saliency(forward).attribute(noisy, target=tgt, abs=False)
        elif base == "saliency_abs":
            attr = Saliency(forward).attribute(noisy, target=tgt, abs=True)
        elif base == "input_x_gradient":
            attr = InputXGradient(forward).attribute(noisy, target=tgt)
        else:
            attr = IntegratedGradients(forward).attribute(
                noisy, baselines=baseline.repeat(k, 1, 1, 1), target=tgt, n_steps=n_steps)
        attr = attr.detach().reshape(k, n, *inputs.shape[1:])
        for sample in attr:  # one sample at a time: the sum's order does not depend on n
            total += sample
            total_sq += sample * sample
    mean = total / nt_samples
    if nt_type == "smoothgrad":
        return mean
    if nt_type == "smoothgrad_sq":
        return total_sq / nt_samples
    return (total_sq / nt_samples - mean.pow(2)).clamp_min(0)


_DEEPLIFT_EXACT = ("ReLU", "ELU", "LeakyReLU", "Sigmoid", "Tanh", "Softplus", "MaxPool1d/2d/3d")
"""Nonlinear modules Captum's DeepLIFT rescale rule covers (besides linear layers)."""

_DEEPLIFT_INEXACT = (
    nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.ReLU6, nn.PReLU,
    nn.SELU, nn.CELU, nn.GLU, nn.LogSigmoid, nn.Softsign, nn.Tanhshrink, nn.Softmin,
    nn.LogSoftmax, nn.Softmax, nn.Softmax2d, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
    nn.modules.instancenorm._InstanceNorm, nn.MultiheadAttention, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
# class-name parts of nonlinear modules from other libraries (timm, Hugging Face)
_DEEPLIFT_INEXACT_NAMES = ("GELU", "SiLU", "Swish", "Mish", "LayerNorm", "RMSNorm", "Attention",
                           "Softmax")


def deeplift_unsupported(modules: Sequence[nn.Module]) -> list[str]:
    """Type names of the modules among ``modules`` whose nonlinearity Captum's DeepLIFT does not
    serve with a rescale rule (it falls back to the plain gradient, or to an approximate rule for
    softmax), sorted; empty when the attributions keep completeness."""
    found = set()
    for module in modules:
        name = type(module).__name__
        if isinstance(module, _DEEPLIFT_INEXACT) or (
            type(module).__module__.split(".")[0] != "torch"
            and any(part.lower() in name.lower() for part in _DEEPLIFT_INEXACT_NAMES)
        ):
            found.add(name)
    return sorted(found)


def _deeplift_caveat(modules: list[nn.Module]) -> str | None:
    bad = deeplift_unsupported(modules)
    if not bad:
        return None
    return (f"deeplift: the model contains {', '.join(bad)}, which Captum's DeepLIFT rules do not "
            f"cover exactly (rules exist for linear layers and {', '.join(_DEEPLIFT_EXACT)}); "
            "there the attributions follow the plain gradient and no longer sum to "
            "f(x) - f(baseline). Prefer integrated_gradients for such models.")


def deeplift(forward: nn.Module, inputs: Tensor, target: Tensor, *, baseline: Tensor,
             layer=None) -> Tensor:
    """DeepLIFT rescale rule (Shrikumar et al., ICML 2017) via Captum; needs ``nn.ReLU``-style
    activation modules (not functional calls) and sums to f(x) − f(baseline) only when every
    nonlinearity is one Captum has a rule for (see ``deeplift_unsupported``)."""
    with _quiet_hooks():
        return DeepLift(forward).attribute(_leaf(inputs), baselines=baseline, target=target)


def guided_backprop(forward: nn.Module, inputs: Tensor, target: Tensor, *, baseline: Tensor | None,
                    layer=None) -> Tensor:
    """Guided backpropagation (Springenberg et al., ICLR-W 2015) via Captum (ReLU modules)."""
    with _quiet_hooks():
        return GuidedBackprop(forward).attribute(_leaf(inputs), target=target)


def _check_window(name: str, value: int, inputs: Tensor) -> None:
    h, w = inputs.shape[-2:]
    if value > min(h, w):
        raise ValueError(f"{name}: expected at most the input size {min(h, w)}, got {value}")


def occlusion(forward: nn.Module, inputs: Tensor, target: Tensor, *, baseline: Tensor,
              layer=None, window: int = 8, stride: int = 4,
              perturbations_per_eval: int = 16) -> Tensor:
    """Slide a ``window``×``window`` patch (all channels) set to the baseline and record the drop
    of the target logit, averaged over the windows covering each pixel (Zeiler & Fergus, ECCV
    2014) via Captum. Returns ``(n, 1, H, W)`` in the inputs' dtype: the map is shared by all
    channels. (Captum's occlusion accumulates in float32, so a float64 model's map carries
    float32 rounding, about 1e-8 relative.)"""
    _check_window("window", window, inputs)
    _check_window("stride", stride, inputs)
    c = inputs.shape[1]
    attr = Occlusion(forward).attribute(
        inputs, sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
        baselines=baseline, target=target, perturbations_per_eval=perturbations_per_eval,
    )
    return attr.mean(dim=1, keepdim=True).to(inputs.dtype)


def slic_segments(inputs: Tensor, n_segments: int = 50, compactness: float = 10.0) -> Tensor:
    """SLIC superpixels (Achanta et al., TPAMI 2012; scikit-image) of each image, computed on the
    image min-max scaled to [0, 1]. Returns ``LongTensor (n, 1, H, W)`` of labels from 0."""
    from skimage.segmentation import slic

    masks = []
    for image in inputs.detach().cpu().float():
        low, high = image.min(), image.max()
        scaled = (image - low) / (high - low) if high > low else torch.zeros_like(image)
        array = scaled.permute(1, 2, 0).numpy().astype(np.float64)
        channel_axis: int | None = -1
        if array.shape[-1] == 1:
            array, channel_axis = array[..., 0], None
        labels = slic(array, n_segments=n_segments, compactness=compactness,
                      channel_axis=channel_axis, start_label=0)
        _, labels = np.unique(labels, return_inverse=True)  # consecutive ids
        masks.append(torch.from_numpy(labels.reshape(image.shape[1:]).astype(np.int64)))
    return torch.stack(masks).unsqueeze(1).to(inputs.device)


def patch_segments(inputs: Tensor, patch_size: int) -> Tensor:
    """Square-patch feature ids ``LongTensor (n, 1, H, W)``, row-major from 0."""
    n, _, h, w = inputs.shape
    rows = torch.arange(h, device=inputs.device) // patch_size
    cols = torch.arange(w, device=inputs.device) // patch_size
    n_cols = (w + patch_size - 1) // patch_size
    ids = rows[:, None] * n_cols + cols[None, :]
    return ids.expand(n, 1, h, w).contiguous()


def feature_ablation(forward: nn.Module, inputs: Tensor, target: Tensor, *, baseline: Tensor,
                     layer=None, segmentation: str = "patches", patch_size: int = 8,
                     n_segments: int = 50, compactness: float = 10.0,
                     perturbations_per_eval: int = 16) -> Tensor:
    """Set each segment (square patches or SLIC superpixels) to the baseline and record the drop
    of the target logit, via Captum's ``FeatureAblation``. Returns ``(n, 1, H, W)``."""
    if segmentation == "slic":
        mask = slic_segments(inputs, n_segments, compactness)
    else:
        _check_window("patch_size", patch_size, inputs)
        mask = patch_segments(inputs, patch_size)
    attr = FeatureAblation(forward).attribute(
        inputs, baselines=baseline, target=target, feature_mask=mask,
        perturbations_per_eval=perturbations_per_eval,
    )
    return attr.mean(dim=1, keepdim=True)


_STEPS = ParamSpec("n_steps", 50, "int", 1, 1000, 1, description="integration steps")

register_method(MethodSpec(
    "saliency", "Saliency (signed gradient)", saliency,
    description="Gradient of the target logit w.r.t. the input pixels (Simonyan et al. 2014), "
    "signed.",
    single_pass=True,
    map_kind="gradient",
))
register_method(MethodSpec(
    "saliency_abs", "Saliency |gradient|", saliency_abs, signed=False,
    description="Absolute gradient of the target logit w.r.t. the input (Simonyan et al. 2014).",
    single_pass=True,
    map_kind="gradient",
))
register_method(MethodSpec(
    "input_x_gradient", "Input × Gradient", input_x_gradient, multiplies_by_input=True,
    description="Input times gradient (Shrikumar et al. 2016).",
    single_pass=True,
    map_kind="gradient",
))
register_method(MethodSpec(
    "integrated_gradients", "Integrated Gradients", integrated_gradients,
    params=(
        _STEPS,
        ParamSpec("quadrature", "gausslegendre", "choice", choices=IG_METHODS,
                  description="quadrature rule"),
        ParamSpec("internal_batch_size", 0, "int", 0, 4096, 1,
                  description="path points per forward pass (0 = all at once)"),
    ),
    multiplies_by_input=True,
    description="Path integral of gradients from the baseline to the input (Sundararajan et al. "
    "2017); sums to f(x) - f(baseline).",
    map_kind="gradient",
))
register_method(MethodSpec(
    "smoothgrad", "SmoothGrad", smoothgrad,
    params=(
        ParamSpec("nt_samples", 16, "int", 1, 256, 1, description="noisy samples"),
        ParamSpec("stdevs", 0.15, "float", 0.0, 1.0, 0.01,
                  description="noise std as a fraction of the image's value range"),
        ParamSpec("nt_type", "smoothgrad", "choice",
                  choices=("smoothgrad", "smoothgrad_sq", "vargrad")),
        ParamSpec("base", "saliency", "choice",
                  choices=("saliency", "saliency_abs", "input_x_gradient",
                           "integrated_gradients")),
        ParamSpec("n_steps", 16, "int", 1, 1000, 1,
                  description="integration steps when base is integrated_gradients"),
        ParamSpec("seed", 0, "int", 0, 2**31 - 1, 1, description="noise seed"),
    ),
    description="Average of gradients over noisy copies of the input (Smilkov et al. 2017); "
    "smoothgrad_sq / vargrad variants (Adebayo et al. 2018).",
    stochastic=True,
    map_kind="gradient",
))
register_method(MethodSpec(
    "deeplift", "DeepLIFT", deeplift, multiplies_by_input=True,
    description="DeepLIFT rescale rule against the baseline (Shrikumar et al. 2017); exact "
    "(sums to "
    "f(x) - f(baseline)) only for ReLU-family, sigmoid/tanh/softplus and max-pooling networks.",
    notes="Captum's rescale rules cover linear layers and " + ", ".join(_DEEPLIFT_EXACT) + ". "
    "Other nonlinearities (GELU, SiLU, LayerNorm, softmax/attention, ...) get the plain gradient, "
    "which breaks completeness (by tens of percent on a GELU + LayerNorm MLP); explain() warns.",
    caveat=_deeplift_caveat,
    map_kind="gradient",
))
register_method(MethodSpec(
    "guided_backprop", "Guided Backprop", guided_backprop,
    description="Gradient with negative ReLU gradients zeroed (Springenberg et al. 2015).",
    single_pass=True,
    map_kind="gradient",
))
register_method(MethodSpec(
    "occlusion", "Occlusion", occlusion,
    params=(
        ParamSpec("window", 8, "int", 1, 256, 1, description="square window side (pixels)"),
        ParamSpec("stride", 4, "int", 1, 256, 1, description="window stride (pixels)"),
        ParamSpec("perturbations_per_eval", 16, "int", 1, 1024, 1,
                  description="occluded copies per forward pass"),
    ),
    description="Drop of the target logit when a sliding window is set to the baseline (Zeiler "
    "& Fergus 2014).",
    map_kind="perturbation",
))
register_method(MethodSpec(
    "feature_ablation", "Feature ablation", feature_ablation,
    params=(
        ParamSpec("segmentation", "patches", "choice", choices=("patches", "slic")),
        ParamSpec("patch_size", 8, "int", 1, 256, 1, description="square patch side (pixels)"),
        ParamSpec("n_segments", 50, "int", 2, 2000, 1, description="SLIC superpixels (approx.)"),
        ParamSpec("compactness", 10.0, "float", 0.01, 100.0, 0.01,
                  description="SLIC colour vs. space trade-off"),
        ParamSpec("perturbations_per_eval", 16, "int", 1, 1024, 1,
                  description="ablated copies per forward pass"),
    ),
    description="Drop of the target logit when each patch or superpixel is set to the baseline.",
    map_kind="perturbation",
))
