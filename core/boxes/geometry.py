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

import warnings

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
    "PairIndex",
    "VOLUME_TEMPERATURE",
    "check_boxes",
    "gumbel_intersection",
    "hard_intersection",
    "hard_log_volume",
    "hard_pairwise_overlap",
    "log_volume",
    "pair_log_intersection",
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


_NEAR = 50.0  # |x - y| / tau beyond which the Gumbel max equals the hard max to ~tau * e^-50
_FAR = -80.0  # beta * side below which softplus(side) + 1e-13 is 1e-13 to ~e^-80 / beta


class PairIndex:
    """A fixed list of box pairs ``(rows[p], cols[p])`` for :func:`pair_log_intersection`, with
    the sparse ``(N, 2P)`` incidence matrix that sums per-pair gradients back onto boxes (built
    once per dtype and reused across training steps; a sparse product is several times faster
    than ``index_add_`` on CPU)."""

    def __init__(self, rows: Tensor, cols: Tensor, n: int) -> None:
        rows = torch.as_tensor(rows, dtype=torch.long)
        cols = torch.as_tensor(cols, dtype=torch.long)
        if rows.dim() != 1 or rows.shape != cols.shape:
            raise ValueError(f"rows, cols: expected two (P,) index tensors, got "
                             f"{tuple(rows.shape)} and {tuple(cols.shape)}")
        if rows.numel() and (min(int(rows.min()), int(cols.min())) < 0
                             or max(int(rows.max()), int(cols.max())) >= n):
            raise ValueError(f"rows, cols: expected indices in [0, {n}), got "
                             f"[{min(int(rows.min()), int(cols.min()))}, "
                             f"{max(int(rows.max()), int(cols.max()))}]")
        self.rows, self.cols, self.n = rows, cols, int(n)
        self._scatter: dict[tuple[torch.dtype, torch.device], Tensor] = {}

    def __len__(self) -> int:
        return self.rows.numel()

    def scatter(self, like: Tensor) -> Tensor:
        """``(N, 2P)`` sparse CSR incidence of ``[rows, cols]`` (dtype and device of ``like``):
        ``scatter @ v`` sums the rows of a ``(2P, k)`` ``v`` onto the boxes they belong to."""
        key = (like.dtype, like.device)
        if key not in self._scatter:
            index = torch.cat((self.rows, self.cols))
            order = torch.argsort(index, stable=True)
            crow = torch.zeros(self.n + 1, dtype=torch.long)
            crow[1:] = torch.bincount(index, minlength=self.n).cumsum(0)
            values = torch.ones(index.numel(), dtype=like.dtype)
            with warnings.catch_warnings():  # "sparse CSR support is in beta": spmm is stable
                warnings.simplefilter("ignore")
                self._scatter[key] = torch.sparse_csr_tensor(
                    crow, order, values, (self.n, index.numel()), device=like.device)
        return self._scatter[key]


class _PairLogIntersection(torch.autograd.Function):
    """Soft ``log Vol(B_i ∩ B_j)`` for the listed pairs, shape ``(P,)``, with a hand-written
    backward: the numbers of :func:`gumbel_intersection` then :func:`log_volume`, in a handful of
    passes over ``(2, P, d)`` tensors instead of autograd's dozens over ``(N, N, d)`` (this op
    dominates a Task2Box training step). Corners are stacked as ``[lo, -hi]`` so that one smooth
    max gives both intersection corners; the smooth max's correction ``tau log(1 + e^-|x-y|/tau)``
    is computed only for pairs with some ``|x - y| < 50 tau`` (elsewhere it is below
    ``tau e^-50``, and ``exp`` of far-underflowing inputs is what makes ``logaddexp`` slow)."""

    @staticmethod
    def forward(ctx, lo: Tensor, hi: Tensor, pairs: PairIndex, tv: float,  # type: ignore[override]
                ti: float) -> Tensor:
        corners = torch.stack((lo, -hi))  # (2, N, d)
        ci, cj = corners.index_select(1, pairs.rows), corners.index_select(1, pairs.cols)
        delta = ci.sub_(cj)  # reuses ci's buffer
        m = delta.clamp(min=0.0).add_(cj)  # max(ci, cj)
        grad = any(ctx.needs_input_grad[:2])
        # d m / d ci: 0 or 1 where |delta| >= tau (exact beyond 50 tau), refined below if nearer
        share = delta.mul(1.0 / ti).clamp_(0.0, 1.0) if grad else None
        gap = torch.minimum(delta[0].abs(), delta[1].abs()).amin(dim=1)  # (P,)
        near = (gap < _NEAR * ti).nonzero().squeeze(1)
        if near.numel():
            z = delta.index_select(1, near).div_(ti)
            if share is not None:
                share.index_copy_(1, near, torch.sigmoid(z))
            m.index_add_(1, near, torch.exp(-z.abs()).log1p_().mul_(ti))
        # beta * intersection side: (min(hi) - max(lo) - 2 gamma tau_i) / tau_v, clamped below
        # (changes softplus by < e^-80, next to the 1e-13 floor) so exp() never underflows
        bs = torch.add(m[0], m[1]).add_(2.0 * EULER_GAMMA * ti).mul_(-1.0 / tv).clamp_(min=_FAR)
        # softplus as log1p(exp) (with its linear branch above 20, as torch's), sharing exp with
        # the derivative sigmoid = e / (1 + e)
        e = torch.exp(bs.clamp(max=20.0))
        soft = torch.log1p(e)
        linear = bool(bs.max() > 20.0)
        if linear:
            soft = torch.where(bs > 20.0, bs, soft)
        soft.mul_(tv).add_(_EPS)  # softplus_beta(side) + eps
        out = torch.log(soft) @ soft.new_ones(soft.shape[1])  # sum over d (faster than .sum(1))
        if grad:  # d log(soft) / d side
            dside = e.div_((e + 1.0).mul_(soft))
            if linear:
                dside = torch.where(bs > 20.0, 1.0 / soft, dside)
            ctx.save_for_backward(share, dside)
            ctx.pairs = pairs
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None, None, None]:  # type: ignore[override]
        share, dside = ctx.saved_tensors
        p, d = dside.shape
        g = grad[:, None] * dside  # d loss / d side, (P, d), the same for both corner halves
        # per half (lo, -hi): the share of each pair's max going to rows[p], then to cols[p]
        scatter = ctx.pairs.scatter(g)
        halves = []
        for h in range(2):
            split = g.new_empty(2 * p, d)
            torch.mul(share[h], g, out=split[:p])
            torch.sub(g, split[:p], out=split[p:])
            halves.append(scatter @ split)
        # side = -(max(lo) + max(-hi)): d lo = -sum over the lo half, d hi = +sum over the hi half
        return halves[0].neg_(), halves[1], None, None, None


def pair_log_intersection(lo: Tensor, hi: Tensor, rows: Tensor | PairIndex,
                          cols: Tensor | None = None,
                          volume_temperature: float = VOLUME_TEMPERATURE,
                          intersection_temperature: float = INTERSECTION_TEMPERATURE) -> Tensor:
    """``(P,)`` soft ``log Vol(B_rows[p] ∩ B_cols[p])`` of Gumbel intersections for listed pairs,
    fused and differentiable. ``rows``, ``cols``: int64 ``(P,)``, or a :class:`PairIndex` as
    ``rows`` (``cols=None``) to reuse across calls. The intersection is symmetric, so a loss over
    ordered pairs needs each unordered pair once."""
    pairs = rows if isinstance(rows, PairIndex) else PairIndex(rows, cols, lo.shape[0])
    if lo.dim() != 2 or pairs.n != lo.shape[0]:
        raise ValueError(f"boxes: expected lo/hi of shape ({pairs.n}, d), got {tuple(lo.shape)}")
    if volume_temperature <= 0:
        raise ValueError(f"volume_temperature: expected > 0, got {volume_temperature}")
    if intersection_temperature <= 0:
        ilo, ihi = hard_intersection(lo[pairs.rows], hi[pairs.rows], lo[pairs.cols],
                                     hi[pairs.cols])
        return log_volume(ilo, ihi, volume_temperature, intersection_temperature)
    return _PairLogIntersection.apply(lo, hi, pairs, float(volume_temperature),
                                      float(intersection_temperature))


def pairwise_log_intersection(lo: Tensor, hi: Tensor,
                              volume_temperature: float = VOLUME_TEMPERATURE,
                              intersection_temperature: float = INTERSECTION_TEMPERATURE) -> Tensor:
    """``(N, N)`` soft ``log Vol(B_i ∩ B_j)`` of Gumbel intersections (fused, differentiable):
    computed once per unordered pair (the matrix is symmetric) and mirrored."""
    if intersection_temperature <= 0:
        ilo, ihi = hard_intersection(lo[:, None, :], hi[:, None, :], lo[None, :, :],
                                     hi[None, :, :])
        return log_volume(ilo, ihi, volume_temperature, intersection_temperature)
    n = lo.shape[0]
    rows, cols = torch.triu_indices(n, n, device=lo.device)
    upper = pair_log_intersection(lo, hi, PairIndex(rows, cols, n), None, volume_temperature,
                                  intersection_temperature)
    return upper.new_empty(n, n).index_put((rows, cols), upper).index_put((cols, rows), upper)


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
