"""Post-processing of attribution maps shared by widgets and metrics.

Maps are ``(N, H, W)`` float tensors (a single ``(H, W)`` map is accepted and returned as such);
every operation works per map, so one map never rescales another.

``postprocess=`` (``explain``, the explainer contract, COSE) names how maps are scaled before
they are compared (:data:`POSTPROCESSES`, :func:`resolve_postprocess`):

- ``"minmax"``: per-map min-max into [0, 1] (:func:`normalize` ``"unit"``), what
  pytorch-grad-cam does to every CAM;
- ``"pair_grayscale"``: PAIR saliency's ``VisualizeImageGrayscale`` (:func:`pair_grayscale`):
  sum of |.| over channels, clip at the 99th percentile, min-max into [0, 1];
- ``"paper"``: what COSE's official code (Daroya, Sun, Maji, ICCV-W 2023, arXiv:2309.10989)
  applies to each kind of map: min-max for CAMs, the PAIR recipe for gradient maps, min-max
  for anything else (every map reaches SSIM in [0, 1]);
- ``"none"`` / None: raw maps; or a callable ``(N, H, W) -> (N, H, W)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MAP_KINDS",
    "POSTPROCESSES",
    "REDUCTIONS",
    "apply_postprocess",
    "clip_percentile",
    "normalize",
    "pair_grayscale",
    "reduce_channels",
    "resolve_postprocess",
    "upsample",
]

REDUCTIONS = ("sum", "abs_sum", "max_abs", "l2")
POSTPROCESSES = ("paper", "minmax", "pair_grayscale", "none")
MAP_KINDS = ("cam", "gradient", "perturbation")
"""What a method's map is (``MethodSpec.map_kind``): a class activation map, a gradient-based
input attribution, or a perturbation (occlusion/ablation) map; ``"paper"`` picks by it."""

Postprocess = str | Callable[[Tensor], Tensor] | None
"""A ``postprocess=`` value: a name of :data:`POSTPROCESSES`, a callable or None (raw)."""


def _check_tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name}: expected a floating tensor, got dtype {value.dtype}")
    return value


def _as_batch(maps: Tensor, name: str = "maps") -> tuple[Tensor, bool]:
    _check_tensor(name, maps)
    if maps.dim() == 2:
        return maps.unsqueeze(0), True
    if maps.dim() != 3:
        raise ValueError(f"{name}: expected (N, H, W) or (H, W), got shape {tuple(maps.shape)}")
    return maps, False


def reduce_channels(
    attr: Tensor, how: Literal["sum", "abs_sum", "max_abs", "l2"] = "sum"
) -> Tensor:
    """``(N, C, H, W)`` attributions -> ``(N, H, W)`` maps.

    ``sum`` keeps the sign (and completeness: the map sums to the attribution total);
    ``abs_sum`` = sum of |a|; ``max_abs`` = max over channels of |a| (Simonyan et al. 2014's
    saliency map); ``l2`` = Euclidean norm over channels.
    """
    _check_tensor("attr", attr)
    if attr.dim() != 4:
        raise ValueError(f"attr: expected (N, C, H, W) attributions, got shape {tuple(attr.shape)}")
    if how == "sum":
        return attr[:, 0] if attr.shape[1] == 1 else attr.sum(dim=1)
    if how == "abs_sum":
        return attr.abs().sum(dim=1)
    if how == "max_abs":
        return attr.abs().amax(dim=1)
    if how == "l2":
        return attr.pow(2).sum(dim=1).sqrt()
    raise ValueError(f"how: expected one of {list(REDUCTIONS)}, got {how!r}")


def clip_percentile(maps: Tensor, q: float = 99.0) -> Tensor:
    """Clamp each map to ``[-p, p]`` where ``p`` is the ``q``-th percentile of its |values|.

    Removes the few extreme pixels that otherwise wash out a colour map (q = 100 is the identity);
    non-negative maps stay non-negative.
    """
    batch, single = _as_batch(maps)
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q <= 100:
        raise ValueError(f"q: expected a percentile in (0, 100], got {q!r}")
    flat = batch.abs().flatten(1)
    exact = flat.dtype in (torch.float32, torch.float64)  # quantile's dtypes; keep float64
    p = torch.quantile(flat if exact else flat.float(), q / 100.0, dim=1)
    p = p.to(batch.dtype).view(-1, 1, 1)
    out = torch.maximum(torch.minimum(batch, p), -p)
    return out[0] if single else out


def normalize(maps: Tensor, mode: Literal["unit", "signed"] = "unit") -> Tensor:
    """Rescale each map: ``unit`` min-max into ``[0, 1]``; ``signed`` divides by max |value| into
    ``[-1, 1]`` keeping zero at zero. A constant map becomes zeros."""
    batch, single = _as_batch(maps)
    flat = batch.flatten(1)
    if mode == "unit":
        low = flat.amin(dim=1).view(-1, 1, 1)
        span = (flat.amax(dim=1).view(-1, 1, 1) - low)
        out = torch.where(span > 0, (batch - low) / span.clamp_min(1e-30), torch.zeros_like(batch))
    elif mode == "signed":
        scale = flat.abs().amax(dim=1).view(-1, 1, 1)
        out = torch.where(scale > 0, batch / scale.clamp_min(1e-30), torch.zeros_like(batch))
    else:
        raise ValueError(f"mode: expected 'unit' or 'signed', got {mode!r}")
    return out[0] if single else out


def pair_grayscale(attr: Tensor, percentile: float = 99.0) -> Tensor:
    """PAIR saliency's ``VisualizeImageGrayscale``, the map COSE compares for gradient methods.

    ``(N, C, H, W)`` attributions (or ``(N, H, W)`` / ``(H, W)`` maps, taken as one channel) ->
    ``(N, H, W)`` in [0, 1]: ``s = sum_c |a_c|``, then ``clip((s - min s) / (P - min s), 0, 1)``
    with ``P`` the ``percentile``-th percentile of ``s`` (linear interpolation, as
    ``np.percentile``). A map whose percentile equals its minimum (e.g. over 99 % zeros)
    becomes zeros, where PAIR divides by zero.
    """
    _check_tensor("attr", attr)
    maps = reduce_channels(attr, "abs_sum") if attr.dim() == 4 else attr.abs()
    return normalize(clip_percentile(maps, percentile), "unit")


def resolve_postprocess(postprocess: Postprocess, kind: str | None = None) -> str | Callable | None:
    """The concrete post-processing for a map of ``kind`` (one of :data:`MAP_KINDS`, None when
    unknown): ``"minmax"``, ``"pair_grayscale"``, a callable, or None (raw). ``"paper"`` is
    min-max for ``"cam"``, ``"pair_grayscale"`` for ``"gradient"`` and min-max otherwise."""
    if postprocess is None or callable(postprocess):
        return postprocess
    if not isinstance(postprocess, str) or postprocess not in POSTPROCESSES:
        raise ValueError(f"postprocess: expected one of {list(POSTPROCESSES)}, None or a callable "
                         f"(N, H, W) -> (N, H, W), got {postprocess!r}")
    if kind is not None and kind not in MAP_KINDS:
        raise ValueError(f"kind: expected one of {list(MAP_KINDS)} or None, got {kind!r}")
    if postprocess == "none":
        return None
    if postprocess == "paper":
        return "pair_grayscale" if kind == "gradient" else "minmax"
    return postprocess


def apply_postprocess(maps: Tensor, postprocess: Postprocess, kind: str | None = None) -> Tensor:
    """``maps`` ``(N, H, W)`` (or ``(N, C, H, W)`` attributions for ``"pair_grayscale"``) after
    ``postprocess`` (see :func:`resolve_postprocess`); a callable must keep the shape."""
    how = resolve_postprocess(postprocess, kind)
    if how is None:
        return maps
    if how in ("minmax", "pair_grayscale"):
        out = normalize(maps, "unit") if how == "minmax" else pair_grayscale(maps)
        return _keep_nonfinite(maps, out)
    out = how(maps)
    if not isinstance(out, Tensor) or tuple(out.shape) != tuple(maps.shape):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"postprocess: the callable must return maps of shape "
                         f"{tuple(maps.shape)}, got {got}")
    return out


def _keep_nonfinite(maps: Tensor, out: Tensor) -> Tensor:
    """``out`` with NaN for every map whose input held NaN/inf: scaling must not hide them."""
    if torch.isfinite(maps.sum()):
        return out
    single = maps.dim() == 2
    per_map = maps.reshape(1 if single else maps.shape[0], -1)
    bad = ~torch.isfinite(per_map).all(dim=1)
    mask = bad[0] if single else bad.view(-1, 1, 1)
    return torch.where(mask, torch.full_like(out, float("nan")), out)


def upsample(
    maps: Tensor, size: int | Sequence[int], mode: Literal["bilinear", "nearest"] = "bilinear"
) -> Tensor:
    """Resize ``(N, H, W)``, ``(H, W)`` or ``(N, C, H, W)`` maps to ``size`` ``(H', W')``
    (bilinear, ``align_corners=False``: cell centres stay aligned with the input pixels)."""
    _check_tensor("maps", maps)
    size_t = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(size_t) != 2 or min(size_t) < 1:
        raise ValueError(f"size: expected (H, W) positive ints, got {size!r}")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode: expected 'bilinear' or 'nearest', got {mode!r}")
    rank = maps.dim()
    if rank == 2:
        x = maps[None, None]
    elif rank == 3:
        x = maps[:, None]
    elif rank == 4:
        x = maps
    else:
        raise ValueError(
            f"maps: expected (H, W), (N, H, W) or (N, C, H, W), got {tuple(maps.shape)}"
        )
    h, w = x.shape[-2], x.shape[-1]
    if (h, w) != size_t:
        if mode == "bilinear" and size_t[0] >= h and size_t[1] >= w:
            # Bilinear enlargement is separable and linear: two small matrix products give
            # F.interpolate's values (to float rounding) in about half its time on CAM-sized maps.
            rows = _bilinear_matrix(h, size_t[0], x.dtype, x.device)
            cols = _bilinear_matrix(w, size_t[1], x.dtype, x.device)
            x = torch.matmul(torch.matmul(rows, x), cols.T)
        else:
            kwargs = {"align_corners": False} if mode == "bilinear" else {}
            x = F.interpolate(x, size=size_t, mode=mode, **kwargs)
    if rank == 2:
        return x[0, 0]
    if rank == 3:
        return x[:, 0]
    return x


@functools.lru_cache(maxsize=64)
def _bilinear_matrix(n_in: int, n_out: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(n_out, n_in)`` weights of 1-D linear interpolation with ``align_corners=False``, as
    ``F.interpolate`` computes them: source coordinate ``(o + 0.5) * n_in / n_out - 0.5``
    clamped at 0, split between its floor and the next sample (the last one repeats)."""
    out = torch.arange(n_out, dtype=torch.float64)
    src = ((out + 0.5) * (n_in / n_out) - 0.5).clamp_min(0)
    low = src.floor().long().clamp_max(n_in - 1)
    frac = (src - low).clamp(0, 1)
    high = torch.where(low < n_in - 1, low + 1, low)
    weights = torch.zeros(n_out, n_in, dtype=torch.float64)
    weights.index_put_((torch.arange(n_out), low), 1 - frac, accumulate=True)
    weights.index_put_((torch.arange(n_out), high), frac, accumulate=True)
    return weights.to(device=device, dtype=dtype)
