"""Similarity between two saliency maps, as used by model-randomisation sanity checks.

Adebayo et al., "Sanity Checks for Saliency Maps" (NeurIPS 2018) compare the map of a trained
model with the map of a (partly) re-initialised one by Spearman rank correlation with and without
absolute values, SSIM and the Pearson correlation of HOG descriptors; Kokhlikyan et al.,
"Investigating sanity checks for saliency maps with image and text classification"
(arXiv:2106.07475) apply the rank correlations to token attributions of text models, where SSIM
and HOG have no meaning.

Conventions, against Adebayo et al.'s notebooks (``adebayoj/sanity_checks_saliency``): the rank
correlations match theirs up to their 99th-percentile clip (which only adds ties), on maps the
explainer has already reduced over channels (their absolute variant sums ``|.|`` over channels,
ours takes ``|.|`` of the reduced map). SSIM and HOG here see ``|map| / max|map|``, so a sign
flip is the same map; the notebooks min-max scale the *signed* map (``normalize_image``) and
compare HOG descriptors by Spearman rank correlation (we use Pearson, as the paper's text says).

Every function here compares two batches of maps pair by pair and returns ``(values, reasons)``:
a float64 array ``(N,)`` and a list of N strings, empty where the value is defined and a short
reason where it is NaN (non-finite map, constant map, fewer than two positions, all padding).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "IMAGE_MEASURES",
    "MEASURES",
    "TEXT_MEASURES",
    "average_ranks",
    "MEASURE_TITLES",
    "compare_maps",
    "hog_similarity",
    "spearman",
    "ssim_similarity",
]

MEASURES = ("spearman_abs", "spearman", "ssim", "hog")
IMAGE_MEASURES = MEASURES
TEXT_MEASURES = ("spearman_abs", "spearman")
#: Each measure in words, for tables and plot titles (Adebayo et al. 2018, §4).
MEASURE_TITLES = {"spearman_abs": "Spearman rank, |map|", "spearman": "Spearman rank, signed",
                  "ssim": "SSIM", "hog": "HOG similarity"}

Result = tuple[np.ndarray, list[str]]


def _as_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected a numeric tensor or array, got {type(x).__name__}") \
            from err
    return arr


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks ``1..n`` of a 1-D array, ties sharing the mean of their ranks (scipy's
    ``rankdata(method="average")``)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    n = v.size
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    # start of each run of equal values in the sorted order
    new_run = np.empty(n, dtype=bool)
    if n:
        new_run[0] = True
        new_run[1:] = sorted_v[1:] != sorted_v[:-1]
    run_id = np.cumsum(new_run) - 1
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], n)  # exclusive
    mean_rank = (starts + ends + 1) / 2.0  # mean of (starts+1 .. ends)
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = mean_rank[run_id]
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> tuple[float, str]:
    da, db = a - a.mean(), b - b.mean()
    na, nb = float(np.sqrt((da * da).sum())), float(np.sqrt((db * db).sum()))
    if na == 0.0 or nb == 0.0:
        return float("nan"), "constant map (correlation undefined)"
    return float(np.clip((da * db).sum() / (na * nb), -1.0, 1.0)), ""


def _pairs(a: Any, b: Any, mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"b: expected the shape of a {x.shape}, got {y.shape}")
    if x.ndim < 1:
        raise ValueError("a: expected maps (N, ...), got a scalar")
    if x.ndim == 1:
        x, y = x[None], y[None]
    m = None
    if mask is not None:
        m = _as_array(mask, "mask") != 0
        if m.ndim == 1 and x.shape[0] == 1:
            m = m[None]
        if m.shape != x.shape:
            raise ValueError(f"mask: expected the maps' shape {x.shape}, got {m.shape}")
    return x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1), \
        None if m is None else m.reshape(m.shape[0], -1)


def spearman(a: Any, b: Any, *, absolute: bool = False, mask: Any = None) -> Result:
    """Spearman rank correlation of each pair of maps (over all positions, or over ``mask``).

    ``a``, ``b``: ``(N, ...)`` maps (one map ``(P,)`` is a batch of one). ``absolute`` ranks
    ``|a|`` and ``|b|`` (Adebayo et al.'s "with absolute value"). Ties get average ranks, so the
    value equals ``scipy.stats.spearmanr``. ``mask`` (bool, same shape) keeps only the True
    positions -- for text, the non-padding tokens. NaN with a reason where a map is non-finite,
    constant, or has fewer than two kept positions.
    """
    x, y, m = _pairs(a, b, mask)
    values = np.full(x.shape[0], np.nan)
    reasons = [""] * x.shape[0]
    for i in range(x.shape[0]):
        u, v = x[i], y[i]
        if m is not None:
            keep = m[i]
            if not keep.any():
                reasons[i] = "all padding (no token to compare)"
                continue
            u, v = u[keep], v[keep]
        if not (np.isfinite(u).all() and np.isfinite(v).all()):
            reasons[i] = "non-finite map (NaN/inf)"
            continue
        if u.size < 2:
            reasons[i] = "fewer than two positions"
            continue
        if absolute:
            u, v = np.abs(u), np.abs(v)
        values[i], reasons[i] = _pearson(average_ranks(u), average_ranks(v))
    return values, reasons


def _unit_abs(x: np.ndarray) -> np.ndarray:
    """``|x| / max|x|`` per map into [0, 1] (a zero map stays zero)."""
    mag = np.abs(x)
    top = mag.reshape(mag.shape[0], -1).max(axis=1).reshape(-1, *([1] * (x.ndim - 1)))
    return np.where(top > 0, mag / np.where(top > 0, top, 1.0), 0.0)


def _check_images(a: Any, b: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.ndim == 2:
        x, y = x[None], y[None]
    if x.ndim != 3 or x.shape != y.shape:
        raise ValueError(f"{name}: expected two batches of image maps (N, H, W) of one shape, got "
                         f"{x.shape} and {y.shape}")
    return x, y


def ssim_similarity(a: Any, b: Any, *, win_size: int = 5) -> Result:
    """SSIM of each pair of image maps ``(N, H, W)`` after scaling ``|map|`` to [0, 1] by its
    maximum (Adebayo et al.'s notebooks min-max scale the signed map instead; see the module
    docstring), with data range 1; computed by
    :func:`visloupe.core.evaluation.ssim` (COSE's SSIM, Wang et al. 2004)."""
    from .ssim import ssim

    x, y = _check_images(a, b, "maps")
    values = np.full(x.shape[0], np.nan)
    reasons = [""] * x.shape[0]
    finite = np.isfinite(x).all(axis=(1, 2)) & np.isfinite(y).all(axis=(1, 2))
    for i in np.flatnonzero(~finite):
        reasons[i] = "non-finite map (NaN/inf)"
    if finite.any():
        win = min(win_size, *x.shape[1:]) if min(x.shape[1:]) >= 3 else None
        if win is None:
            for i in np.flatnonzero(finite):
                reasons[i] = "map smaller than 3x3 (SSIM undefined)"
            return values, reasons
        win = win if win % 2 else win - 1
        ux = torch.from_numpy(_unit_abs(x[finite]))
        uy = torch.from_numpy(_unit_abs(y[finite]))
        values[finite] = ssim(ux, uy, win_size=win, data_range=1.0).numpy()
    return values, reasons


def hog_descriptor(image: np.ndarray, cells: int = 4) -> np.ndarray:
    """HOG descriptor (Dalal & Triggs 2005; scikit-image's ``hog``) of one ``(H, W)`` map with 9
    unsigned orientations, about ``cells`` x ``cells`` cells over the map and 2x2-cell blocks
    (L2-Hys). Small cells suit the small maps of the built-ins; Adebayo et al. used skimage's
    defaults on 224x224 maps."""
    from skimage.feature import hog

    h, w = image.shape
    ppc = (max(2, h // cells), max(2, w // cells))
    per_block = (2, 2) if h // ppc[0] >= 2 and w // ppc[1] >= 2 else (1, 1)
    return hog(image, orientations=9, pixels_per_cell=ppc, cells_per_block=per_block,
               block_norm="L2-Hys", feature_vector=True)


def hog_similarity(a: Any, b: Any, *, cells: int = 4) -> Result:
    """Pearson correlation of the HOG descriptors of each pair of image maps ``(N, H, W)``,
    computed on ``|map|`` scaled to [0, 1] (Adebayo et al. 2018). NaN with a reason for non-finite
    maps and for flat maps (a constant descriptor)."""
    x, y = _check_images(a, b, "maps")
    if min(x.shape[1:]) < 4:
        raise ValueError(f"maps: HOG needs maps of at least 4x4 pixels, got {x.shape[1:]}")
    values = np.full(x.shape[0], np.nan)
    reasons = [""] * x.shape[0]
    for i in range(x.shape[0]):
        if not (np.isfinite(x[i]).all() and np.isfinite(y[i]).all()):
            reasons[i] = "non-finite map (NaN/inf)"
            continue
        hx = hog_descriptor(_unit_abs(x[i:i + 1])[0], cells)
        hy = hog_descriptor(_unit_abs(y[i:i + 1])[0], cells)
        values[i], reason = _pearson(hx, hy)
        reasons[i] = reason.replace("constant map", "flat map (constant HOG descriptor)")
    return values, reasons


_MEASURE_FNS: dict[str, Callable[..., Result]] = {
    "spearman_abs": lambda a, b, mask: spearman(a, b, absolute=True, mask=mask),
    "spearman": lambda a, b, mask: spearman(a, b, absolute=False, mask=mask),
    "ssim": lambda a, b, mask: ssim_similarity(a, b),
    "hog": lambda a, b, mask: hog_similarity(a, b),
}


def compare_maps(a: Any, b: Any, measure: str, mask: Any = None) -> Result:
    """``measure`` (one of ``MEASURES``) of each pair of maps; ``mask`` applies to the rank
    correlations only (SSIM and HOG are image measures and take whole maps)."""
    if measure not in _MEASURE_FNS:
        raise ValueError(f"measures: expected names from {list(MEASURES)}, got {measure!r}")
    if mask is not None and measure in ("ssim", "hog"):
        raise ValueError(f"measures: {measure!r} compares image maps and takes no token mask; "
                         f"use {list(TEXT_MEASURES)} for text")
    return _MEASURE_FNS[measure](a, b, mask)
