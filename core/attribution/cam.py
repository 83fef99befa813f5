"""Grad-CAM and Grad-CAM++ for CNN feature maps and for token models (ViT-style sequences and
channels-last grids).

Grad-CAM (Selvaraju et al., ICCV 2017): weights ``w_k = mean_ij ∂S/∂A^k_ij``, map
``ReLU(Σ_k w_k A^k)``, equal to Captum's ``LayerGradCam`` on ``(N, C, h, w)`` maps. Token
layers ``(N, T, D)`` are first laid out on their patch grid (prefix tokens -- CLS, distillation,
registers -- dropped; the grid inferred from T and the input size, see
``models.introspection.infer_token_layout``) and channels-last ``(N, h, w, C)`` maps permuted,
then the same formula applies.

Convention (Selvaraju et al., eqs. 1-2; pytorch-grad-cam): the ReLU acts on the map at layer
resolution (``relu=True``; Captum's ``LayerGradCam`` defaults to ``relu_attributions=False``),
then ``explain``/``attribute`` enlarge it to the input size *bilinearly* with
``align_corners=False`` (``postprocess.upsample``), where Captum's
``LayerAttribution.interpolate`` defaults to ``"nearest"``.

Grad-CAM++ (Chattopadhyay et al., WACV 2018, eqs. 19-20 with the exponential-score
simplification ``Y = exp(S)`` of §3.3): with ``g = ∂S/∂A^k_ij``

    α^k_ij = g² / (2 g² + Σ_ab A^k_ab g³),   w_k = Σ_ij α^k_ij ReLU(g),   map = ReLU(Σ_k w_k A^k)

(α = 0 where g = 0). The common factor exp(S) cancels in α and only scales w, so it is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.introspection import (
    LayerProposal,
    TokenLayout,
    infer_token_layout,
    patch_size_hint,
)
from .registry import MethodSpec, ParamSpec, register_method

__all__ = ["capture_layer", "grad_cam", "grad_cam_pp", "gradcam_pp_weights", "to_spatial"]

logger = logging.getLogger(__name__)


def _replaced(output: tuple | list | Mapping, key: Any, value: Tensor) -> object:
    """``output`` (a tuple, list, named tuple, dict or ModelOutput) with ``value`` at ``key``,
    in the output's own type; the same object when that type cannot be rebuilt (then an
    in-place op after the layer can still overwrite the stored activations: logged)."""
    kind = type(output)
    if isinstance(output, Mapping):
        items: Any = {**output, key: value}
        builds = (lambda: kind(**items), lambda: kind(items))
    else:
        items = [*output[:key], value, *output[key + 1:]]
        named = isinstance(output, tuple) and hasattr(output, "_fields")
        builds = ((lambda: kind(*items)) if named else (lambda: kind(items)),)
    for build in builds:
        try:
            return build()
        except Exception:  # noqa: BLE001 - a type with its own constructor: try the next form
            continue
    logger.info("Grad-CAM: cannot rebuild a %s output; its %r item is not copied",
                kind.__name__, key)
    return output


def capture_layer(
    forward: nn.Module, module: nn.Module, inputs: Tensor, target: Tensor
) -> tuple[Tensor, Tensor]:
    """Activations of ``module`` and the gradients of the summed target logits w.r.t. them, from
    one forward and one backward pass (the forward hook is removed, also on errors)."""
    store: dict[str, Tensor] = {}

    def hook(_module: nn.Module, _inputs: object, output: object) -> object:
        # The rest of the network gets a copy: an in-place op after the layer (ReLU(inplace=True))
        # would otherwise overwrite the stored activations, and the gradient would be taken
        # with respect to the op's output instead of the layer's.
        if isinstance(output, Tensor):
            store["act"] = output
            return output.clone()
        if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
            store["act"] = output[0]
            return _replaced(output, 0, output[0].clone())
        if isinstance(output, Mapping):  # a dict or HF ModelOutput: its logits, else first tensor
            key = "logits" if isinstance(output.get("logits"), Tensor) else next(
                (k for k, v in output.items() if isinstance(v, Tensor)), None)
            if key is not None:
                store["act"] = output[key]
                return _replaced(output, key, output[key].clone())
        return None

    handle = module.register_forward_hook(hook)
    try:
        x = inputs.detach().requires_grad_(True)  # a graph exists even with frozen weights
        out = forward(x)
    finally:
        handle.remove()
    if "act" not in store:
        raise ValueError("layer: the module produced no tensor output in the forward pass")
    act = store["act"]
    if not act.requires_grad:
        raise ValueError("layer: its output is outside the autograd graph (computed under "
                         "torch.no_grad() or detached in the model's forward), so it has no "
                         "gradient for Grad-CAM; pick a layer the logits are differentiated "
                         "through")
    score = out.gather(1, target.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(score, act, allow_unused=True)
    if grad is None:
        raise ValueError("layer: the target logits do not depend on this layer's output")
    return act.detach(), grad.detach()


def to_spatial(
    tensor: Tensor, layer: LayerProposal, input_hw: tuple[int, int], model: nn.Module
) -> Tensor:
    """Lay a layer output out as ``(N, C, h, w)``: conv maps pass through; token sequences are
    reshaped by the layer's ``TokenLayout`` (re-inferred if the token count changed)."""
    if layer.kind == "conv":
        if tensor.dim() != 4:
            raise ValueError(f"layer {layer.name!r}: expected an (N, C, h, w) map, got "
                             f"{tuple(tensor.shape)}")
        return tensor
    layout = layer.layout
    if tensor.dim() == 4:
        if layout is None or not layout.channels_last or layout.grid != tuple(tensor.shape[1:3]):
            layout = TokenLayout(0, (tensor.shape[1], tensor.shape[2]), channels_last=True)
    elif tensor.dim() == 3:
        if layout is None or layout.channels_last or layout.n_tokens != tensor.shape[1]:
            try:
                layout = infer_token_layout(tensor.shape[1], input_hw, patch_size_hint(model))
            except ValueError:
                layout = infer_token_layout(tensor.shape[1], input_hw)
    else:
        raise ValueError(f"layer {layer.name!r}: expected tokens (N, T, D) or a grid "
                         f"(N, h, w, C), got {tuple(tensor.shape)}")
    return layout.to_grid(tensor)


def _user_model(forward: nn.Module) -> nn.Module:
    return getattr(forward, "model", forward)


def grad_cam(forward: nn.Module, inputs: Tensor, target: Tensor, *, baseline: Tensor | None,
             layer: LayerProposal, relu: bool = True) -> Tensor:
    """Grad-CAM at ``layer`` (Selvaraju et al., ICCV 2017), ``(n, 1, h, w)`` at layer resolution.

    One hook path for conv maps and token layers (reshaped to their grid first); the tests
    check it against Captum's ``LayerGradCam``. It hands the network a copy
    of the layer's output in the output's own type (tensor, tuple, named tuple), which Captum's
    hook does not: it turns a named tuple into a plain one.
    """
    act, grad = capture_layer(forward, layer.module, inputs, target)
    hw = (inputs.shape[-2], inputs.shape[-1])
    act = to_spatial(act, layer, hw, _user_model(forward))
    grad = to_spatial(grad, layer, hw, _user_model(forward))
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = (weights * act).sum(dim=1, keepdim=True)
    return F.relu(cam) if relu else cam


def gradcam_pp_weights(act: Tensor, grad: Tensor) -> Tensor:
    """Grad-CAM++ channel weights ``(N, K)`` from activations and score gradients
    ``(N, K, h, w)`` (Chattopadhyay et al. 2018, eq. 19 with Y = exp(S))."""
    g2 = grad.pow(2)
    g3 = grad.pow(3)
    denom = 2 * g2 + act.sum(dim=(2, 3), keepdim=True) * g3
    safe = torch.where(denom != 0, denom, torch.ones_like(denom))
    alpha = torch.where(grad != 0, g2 / safe, torch.zeros_like(grad))
    return (alpha * F.relu(grad)).sum(dim=(2, 3))


def grad_cam_pp(forward: nn.Module, inputs: Tensor, target: Tensor, *, baseline: Tensor | None,
                layer: LayerProposal, relu: bool = True) -> Tensor:
    """Grad-CAM++ at ``layer`` (Chattopadhyay et al., WACV 2018), ``(n, 1, h, w)``."""
    act, grad = capture_layer(forward, layer.module, inputs, target)
    hw = (inputs.shape[-2], inputs.shape[-1])
    act = to_spatial(act, layer, hw, _user_model(forward))
    grad = to_spatial(grad, layer, hw, _user_model(forward))
    weights = gradcam_pp_weights(act, grad)
    cam = (weights[:, :, None, None] * act).sum(dim=1, keepdim=True)
    return F.relu(cam) if relu else cam


_RELU = ParamSpec("relu", True, "bool", description="keep only positive evidence (ReLU)")

register_method(MethodSpec(
    "grad_cam", "Grad-CAM", grad_cam, params=(_RELU,), needs_layer=True, signed=False,
    description="Layer activations weighted by their mean gradient (Selvaraju et al. 2017), "
    "upsampled; works on CNN maps and ViT token grids.",
    single_pass=True, map_kind="cam",
))
register_method(MethodSpec(
    "grad_cam_pp", "Grad-CAM++", grad_cam_pp, params=(_RELU,), needs_layer=True, signed=False,
    description="Grad-CAM with pixel-wise weights from higher-order terms (Chattopadhyay et al. "
    "2018).",
    single_pass=True, map_kind="cam",
))
