"""Axis-aligned box geometry: intersection, volume and the asymmetric overlap score.

A box is a pair ``(lo, hi)`` of tensors of shape ``(..., d)``: its lower-left and upper-right
corners. The soft operations follow Task2Box (Daroya, Sun, Maji, CVPR 2024), which uses the Gumbel
boxes of Dasgupta et al. (NeurIPS 2020, "Improving local identifiability in probabilistic box
embeddings"): a Gumbel intersection (a smooth max/min at temperature ``intersection_temperature``)
and the softplus ("Bessel-approximate") expected volume

    log Vol(B) = sum_k log( softplus_{1/tau_v}(hi_k - lo_k - 2 * gamma * tau_i) + 1e-13 ),

so that disjoint boxes still get a small positive volume and gradients (Li et al., ICLR 2019,
"Smoothing the geometry of probabilistic box embeddings"). The hard variants (plain max/min and a
clamped product of side lengths) are the exact geometry, kept for checks and display.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EULER_GAMMA = 0.5772156649015329
VOLUME_TEMPERATURE = 0.1
INTERSECTION_TEMPERATURE = 1e-4
_EPS = 1e-13

__all__ = [
    "EULER_GAMMA",
    "INTERSECTION_TEMPERATURE",
    "VOLUME_TEMPERATURE",
    "check_boxes",
    "gumbel_intersection",
    "hard_intersection",
    "hard_log_volume",
    "hard_pairwise_overlap",
    "log_volume",
    "pairwise_log_intersection",
    "pairwise_log_overlap",
    "pairwise_overlap",
]


def check_boxes(lo: Tensor, hi: Tensor, name: str = "boxes", *, strict: bool = False) -> None:
    """Raise TypeError/ValueError unless ``lo``/``hi`` are float tensors of one shape ``(..., d)``,
    finite, and (``strict``) with ``hi >= lo`` everywhere."""
    for label, t in (("lo", lo), ("hi", hi)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected {label} to be a torch.Tensor, got "
                            f"{type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name}: expected a float {label} tensor, got dtype {t.dtype}")
        if t.dim() < 1 or t.shape[-1] < 1:
            raise ValueError(f"{name}: expected {label} of shape (..., d) with d >= 1, got "
                             f"{tuple(t.shape)}")
    if lo.shape != hi.shape:
        raise ValueError(f"{name}: lo and hi must have one shape, got {tuple(lo.shape)} and "
                         f"{tuple(hi.shape)}")
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ValueError(f"{name}: corners contain NaN or infinite values")
    if strict and (hi < lo).any():
        k = int((hi < lo).any(dim=-1).nonzero()[0, 0]) if lo.dim() > 1 else 0
        raise ValueError(f"{name}: expected hi >= lo, but box {k} has hi < lo "
                         f"(lo={lo.reshape(-1, lo.shape[-1])[k].tolist()}, "
                         f"hi={hi.reshape(-1, hi.shape[-1])[k].tolist()})")


def gumbel_intersection(lo1: Tensor, hi1: Tensor, lo2: Tensor, hi2: Tensor,
                        temperature: float = INTERSECTION_TEMPERATURE) -> tuple[Tensor, Tensor]:
    """Gumbel-box intersection (Dasgupta et al. 2020): the corners of the intersection as smooth
    max (lower) and min (upper) at ``temperature``; tends to :func:`hard_intersection` as
    ``temperature -> 0``. Broadcasts like ``torch.maximum``. The result may be "flipped"
    (``hi < lo``) for disjoint boxes; :func:`log_volume` then gives a tiny positive volume."""
    if temperature <= 0:
        return hard_intersection(lo1, hi1, lo2, hi2)
    lo = temperature * torch.logaddexp(lo1 / temperature, lo2 / temperature)
    hi = -temperature * torch.logaddexp(-hi1 / temperature, -hi2 / temperature)
    return lo, hi


def hard_intersection(lo1: Tensor, hi1: Tensor, lo2: Tensor,
                      hi2: Tensor) -> tuple[Tensor, Tensor]:
    """Exact intersection corners ``(max(lo1, lo2), min(hi1, hi2))``; flipped when disjoint."""
    return torch.maximum(lo1, lo2), torch.minimum(hi1, hi2)


def log_volume(lo: Tensor, hi: Tensor, volume_temperature: float = VOLUME_TEMPERATURE,
               intersection_temperature: float = INTERSECTION_TEMPERATURE) -> Tensor:
    """Softplus ("Bessel-approximate") log expected volume of Gumbel boxes, shape ``(...)``.

    ``sum_k log(softplus_beta(hi_k - lo_k - 2 gamma tau_i) + 1e-13)`` with ``beta = 1 /
    volume_temperature`` (Task2Box uses tau_v = 0.1, tau_i = 1e-4). Always finite.
    """
    if volume_temperature <= 0:
        raise ValueError(f"volume_temperature: expected > 0, got {volume_temperature}")
    side = hi - lo - 2.0 * EULER_GAMMA * intersection_temperature
    soft = F.softplus(side, beta=1.0 / volume_temperature)
    return torch.log(soft + _EPS).sum(dim=-1)


def hard_log_volume(lo: Tensor, hi: Tensor) -> Tensor:
    """Exact log volume ``sum_k log(max(hi_k - lo_k, 0))``; ``-inf`` for an empty box."""
    return torch.log(torch.clamp(hi - lo, min=0.0)).sum(dim=-1)


class _PairwiseLogIntersection(torch.autograd.Function):
    """``(N, N)`` soft log-volume of every pairwise Gumbel intersection, with a hand-written
    backward: the same numbers as composing :func:`gumbel_intersection` and :func:`log_volume`,
    but a few fused passes over the ``(N, N, d)`` pair tensor instead of autograd's dozens
    (this op dominates a Task2Box training step)."""

    @staticmethod
    def forward(ctx, lo: Tensor, hi: Tensor, tv: float, ti: float) -> Tensor:  # type: ignore[override]
        a = lo[:, None, :] - lo[None, :, :]
        b = hi[:, None, :] - hi[None, :, :]
        # tau * logaddexp(x/tau, y/tau) = max(x, y) + tau * softplus(-|x - y| / tau)
        z = torch.maximum(lo[:, None, :], lo[None, :, :]) + ti * F.softplus(-a.abs() / ti)
        zz = torch.minimum(hi[:, None, :], hi[None, :, :]) - ti * F.softplus(-b.abs() / ti)
        side = zz - z - 2.0 * EULER_GAMMA * ti
        soft = F.softplus(side, beta=1.0 / tv)
        out = torch.log(soft + _EPS).sum(dim=-1)
        # d log(soft + eps) / d side, with softplus' linear branch (beta * side > 20) kept exact
        dside = torch.where(side / tv > 20.0, torch.ones_like(side),
                            torch.sigmoid(side / tv)) / (soft + _EPS)
        ctx.save_for_backward(torch.sigmoid(a / ti), torch.sigmoid(b / ti), dside)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None, None]:  # type: ignore[override]
        sa, sb, dside = ctx.saved_tensors
        g = grad[:, :, None] * dside  # d loss / d side, (N, N, d)
        gz = g * sa  # share of the lower corner max going to item i (rows)
        gzz = g * sb
        d_lo = -(gz.sum(dim=1) + (g - gz).sum(dim=0))
        d_hi = (g - gzz).sum(dim=1) + gzz.sum(dim=0)
        return d_lo, d_hi, None, None


def pairwise_log_intersection(lo: Tensor, hi: Tensor,
                              volume_temperature: float = VOLUME_TEMPERATURE,
                              intersection_temperature: float = INTERSECTION_TEMPERATURE) -> Tensor:
    """``(N, N)`` soft ``log Vol(B_i ∩ B_j)`` of Gumbel intersections (fused, differentiable)."""
    needs_grad = torch.is_grad_enabled() and (lo.requires_grad or hi.requires_grad)
    if intersection_temperature <= 0 or not needs_grad:  # composed ops: fastest without grad
        ilo, ihi = gumbel_intersection(lo[:, None, :], hi[:, None, :], lo[None, :, :],
                                       hi[None, :, :], intersection_temperature)
        return log_volume(ilo, ihi, volume_temperature, intersection_temperature)
    return _PairwiseLogIntersection.apply(lo, hi, float(volume_temperature),
                                          float(intersection_temperature))


def pairwise_log_overlap(lo: Tensor, hi: Tensor,
                         volume_temperature: float = VOLUME_TEMPERATURE,
                         intersection_temperature: float = INTERSECTION_TEMPERATURE,
                         fused: bool = True) -> Tensor:
    """``(N, N)`` matrix of ``log ov(i -> j) = log Vol(B_i ∩ B_j) - log Vol(B_i)`` (soft boxes).

    ``lo``, ``hi``: ``(N, d)``. Row ``i`` holds how much of box ``i`` lies inside each box ``j``.
    ``fused`` uses a single autograd node with a hand-written gradient for the pairwise part
    (same values and gradients as the composed ops, which ``fused=False`` runs).
    """
    if lo.dim() != 2:
        raise ValueError(f"boxes: expected lo/hi of shape (N, d), got {tuple(lo.shape)}")
    if volume_temperature <= 0:
        raise ValueError(f"volume_temperature: expected > 0, got {volume_temperature}")
    own = log_volume(lo, hi, volume_temperature, intersection_temperature)
    if fused:
        inter = pairwise_log_intersection(lo, hi, volume_temperature, intersection_temperature)
    else:
        ilo, ihi = gumbel_intersection(lo[:, None, :], hi[:, None, :], lo[None, :, :],
                                       hi[None, :, :], intersection_temperature)
        inter = log_volume(ilo, ihi, volume_temperature, intersection_temperature)
    return inter - own[:, None]


def pairwise_overlap(lo: Tensor, hi: Tensor, volume_temperature: float = VOLUME_TEMPERATURE,
                     intersection_temperature: float = INTERSECTION_TEMPERATURE) -> Tensor:
    """``(N, N)`` asymmetric overlap ``ov(i -> j) = Vol(B_i ∩ B_j) / Vol(B_i)`` of soft boxes:
    the fraction of box ``i`` inside box ``j`` (a conditional probability P(j | i)). A child
    inside its parent gives ``ov(child -> parent) ≈ 1`` and ``ov(parent -> child) = |child| /
    |parent|``; disjoint boxes give ≈ 0. Task2Box, §3 of the paper."""
    check_boxes(lo, hi)
    return pairwise_log_overlap(lo, hi, volume_temperature, intersection_temperature).exp()


def hard_pairwise_overlap(lo: Tensor, hi: Tensor) -> Tensor:
    """Exact ``(N, N)`` overlap ``Vol(B_i ∩ B_j) / Vol(B_i)`` of hard boxes (0 for an empty
    box ``i``). Used by the widget's table and to check the soft version."""
    check_boxes(lo, hi, strict=True)
    if lo.dim() != 2:
        raise ValueError(f"boxes: expected lo/hi of shape (N, d), got {tuple(lo.shape)}")
    ilo, ihi = hard_intersection(lo[:, None, :], hi[:, None, :], lo[None, :, :], hi[None, :, :])
    inter = torch.clamp(ihi - ilo, min=0.0).prod(dim=-1)
    own = (hi - lo).prod(dim=-1)
    out = torch.where(own[:, None] > 0, inter / own[:, None].clamp(min=1e-300),
                      torch.zeros_like(inter))
    return out
