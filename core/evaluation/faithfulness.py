"""Faithfulness of saliency maps: deletion curves (ABPC).

``abpc`` is the "area between perturbation curves" of the Split IG authors' evaluation code
(Miglani et al., "Investigating Saturation Effects in Integrated Gradients", ICML-WHI 2020,
notebook ``ImageNetSplitIG-Basic``); the idea of comparing least- and most-relevant-first
deletion goes back to Samek et al. (2017) and Schulz et al. (ICLR 2020).
Max-sensitivity lives in :mod:`.robustness` beside infidelity.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..attribution.explain import (
    Explainer,
    check_batch_size,
    check_inputs,
    resolve_baseline,
    resolve_explainer,
    resolve_targets,
)
from ..models.adapter import eval_mode, model_device
from ..models.adapter import logits as model_logits

__all__ = ["ABPCResult", "abpc"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def _logits(model: nn.Module, x: Tensor, batch_size: int | None) -> Tensor:
    step = x.shape[0] if batch_size is None else batch_size
    out = torch.cat([model_logits(model, chunk) for chunk in x.split(step)])
    if out.dim() != 2:
        raise ValueError(f"model output: expected logits (N, num_classes), got {tuple(out.shape)}")
    return out


def _targets(model: nn.Module, x: Tensor, target: Any, batch_size: int | None) -> Tensor:
    """``target`` as ``LongTensor (N,)`` on ``x``'s device; None -> the predicted class."""
    logits = _logits(model, x, batch_size)
    if target is None:
        return logits.argmax(dim=1)
    return resolve_targets(target, x.shape[0], logits.shape[1]).to(x.device)


def _maps_for(model: nn.Module, x: Tensor, maps: Any, target: Tensor) -> Tensor:
    """Saliency ``(N, H, W)`` from given maps ((N, H, W) or (N, C, H, W), summed over channels
    as in the authors' code) or from an explainer (registry name or callable)."""
    if isinstance(maps, Tensor):
        m = maps.detach()
    elif isinstance(maps, (str, Explainer, tuple)) or callable(maps):
        m = resolve_explainer(maps)(model, x, target).detach()
    else:
        raise TypeError(
            "maps: expected a tensor (N, H, W) / (N, C, H, W) or an explainer (method name or "
            f"callable (model, inputs, target) -> (N, H, W)), got {type(maps).__name__}"
        )
    if m.dim() == 4:
        m = m.sum(dim=1)
    n, _, h, w = x.shape
    if m.dim() != 3 or tuple(m.shape) != (n, h, w):
        raise ValueError(
            f"maps: expected shape (N, H, W) = {(n, h, w)} or (N, C, H, W), got {tuple(m.shape)}"
        )
    if not m.is_floating_point():
        m = m.float()
    if not torch.isfinite(m).all():
        raise ValueError("maps: expected finite values, got NaN or inf")
    return m.to(x.device)


# --------------------------------------------------------------------------------------------
# ABPC
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ABPCResult:
    """Area between perturbation curves per image (``scores`` ``(N,)``, higher is better) and its
    ``mean`` over images with a defined score.

    ``fractions`` ``(steps - 1,)`` are the deleted fractions t; ``lerf`` ``(N, steps - 1)`` is the
    normalised output after deleting the least relevant fraction t (keeping the top pixels; a
    faithful map keeps it high) and ``morf`` after deleting the most relevant fraction t (a
    faithful map makes it fall). Both are ``(f(x_t) - f(b)) / (f(x) - f(b))`` clipped to [0, 1].
    """

    scores: Tensor
    mean: float
    fractions: Tensor
    lerf: Tensor
    morf: Tensor
    input_output: Tensor
    baseline_output: Tensor
    target: Tensor

    def to_dict(self) -> dict[str, list]:
        """Per-image rows: target, f(x), f(b) and the ABPC score."""
        return {
            "target": self.target.cpu().tolist(),
            "input_output": self.input_output.cpu().tolist(),
            "baseline_output": self.baseline_output.cpu().tolist(),
            "abpc": self.scores.cpu().tolist(),
        }


def _keep_masks(saliency: Tensor, steps: int) -> Tensor:
    """Keep-masks ``(2 (steps - 1), H*W)`` for one map: first the LeRF rows, then the MoRF rows.

    As in the authors' code, with ``v`` the ascending sorted scores and ``k = int(HW * t)``:
    LeRF keeps ``s > v[k]`` (deletes the lowest fraction t), MoRF keeps ``s < v[HW - k]`` (deletes
    the highest fraction t). Ties at the threshold are deleted in both.
    """
    s = saliency.flatten()
    v = torch.sort(s).values
    total = s.numel()
    ks = [total * i // steps for i in range(1, steps)]  # int(HW * i / steps) without float error
    lerf = torch.stack([s > v[k] for k in ks])
    morf = torch.stack([s < v[total - k] for k in ks])
    return torch.cat([lerf, morf])


def abpc(
    model: nn.Module,
    inputs: Tensor,
    maps: Tensor | str | Callable[..., Tensor],
    target: int | Sequence[int] | Tensor | None = None,
    *,
    steps: int = 10,
    baseline: Tensor | float | str | None = None,
    batch_size: int | None = None,
) -> ABPCResult:
    """Area between the LeRF and MoRF deletion curves (Split IG authors' protocol; higher is
    better).

    For each image and each fraction ``t = i / steps`` (i = 1..steps-1), pixels (all channels)
    are set to the ``baseline`` -- zeros by default, the IG baseline in normalised space -- either
    least relevant first (LeRF) or most relevant first (MoRF); each output is normalised as
    ``clip((f(x_t) - f(b)) / (f(x) - f(b)), 0, 1)`` and the score is
    ``sum_t max(LeRF(t) - MoRF(t), 0) / steps``. With the default ``steps=10`` this is the authors'
    ``area_betw_pert_curves`` exactly (nine thresholds, divided by 10). Images with
    ``f(x) == f(b)`` get NaN and are left out of ``mean``.

    Args:
        maps: ``(N, H, W)`` maps, ``(N, C, H, W)`` attributions (summed over channels), or an
            explainer (registry method name or callable ``(model, inputs, target) -> (N, H, W)``).
        target: class per image; None -> the predicted class (also passed to the explainer).
        batch_size: perturbed images per forward pass (None: one image's ``2 (steps - 1)``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps: expected an int >= 2, got {steps!r}")
    batch_size = check_batch_size(batch_size)
    x_user = check_inputs(model, inputs)
    device = model_device(model)
    x = x_user.detach().to(device)
    n, c, h, w = x.shape
    if h * w < steps:
        raise ValueError(f"inputs: expected at least steps={steps} pixels, got {h}x{w}")
    b = resolve_baseline(baseline, x)
    with eval_mode(model):
        target_t = _targets(model, x, target, batch_size)
        saliency = _maps_for(model, x, maps, target_t)
        rows = torch.arange(n, device=device)
        fx = _logits(model, x, batch_size)[rows, target_t]
        fb = _logits(model, b, batch_size)[rows, target_t]
        per_image = 2 * (steps - 1)
        chunk = batch_size or per_image
        keep = torch.stack([_keep_masks(saliency[i], steps) for i in range(n)])  # (n, 2(s-1), HW)
        keep = keep.view(n * per_image, 1, h, w)
        outputs = torch.empty(n * per_image, device=device, dtype=fx.dtype)
        for start in range(0, n * per_image, chunk):
            idx = torch.arange(start, min(start + chunk, n * per_image), device=device)
            img = idx // per_image
            perturbed = torch.where(keep[idx], x[img], b[img])
            outputs[idx] = _logits(model, perturbed, None)[torch.arange(idx.numel()),
                                                             target_t[img]]
    change = fx - fb
    if (change == 0).any():
        logger.warning("abpc: f(x) == f(baseline) for some images; their score is NaN")
    normalised = ((outputs.view(n, per_image) - fb[:, None]) / change[:, None]).clamp(0, 1)
    normalised = torch.where((change != 0)[:, None], normalised,
                             torch.full_like(normalised, float("nan")))
    lerf, morf = normalised[:, :steps - 1], normalised[:, steps - 1:]
    scores = (lerf - morf).clamp(min=0).sum(dim=1) / steps
    scores = torch.where(change != 0, scores, torch.full_like(scores, float("nan")))
    valid = torch.isfinite(scores)
    mean = float(scores[valid].mean()) if valid.any() else float("nan")
    out = x_user.device
    return ABPCResult(
        scores=scores.to(out), mean=mean,
        fractions=torch.arange(1, steps, dtype=torch.float64) / steps,
        lerf=lerf.to(out), morf=morf.to(out), input_output=fx.to(out),
        baseline_output=fb.to(out), target=target_t.to(out),
    )


# --------------------------------------------------------------------------------------------
# max-sensitivity
# --------------------------------------------------------------------------------------------
