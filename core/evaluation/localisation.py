"""Localisation scores of saliency maps against object masks.

``energy_in_mask`` is the energy-based pointing game of Score-CAM (Wang et al., "Score-CAM:
Score-Weighted Visual Explanations for CNNs", CVPR-W 2020): the share of the map's positive
energy that falls inside the object. ``pointing_game`` is Zhang et al.'s pointing game
("Top-down Neural Attention by Excitation Backprop", ECCV 2016; IJCV 2018): a hit when the
map's maximum lies on the object or within ``tolerance`` pixels of it (15 px in the paper).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["PointingGameResult", "as_masks", "energy_in_mask", "pointing_game"]

logger = logging.getLogger(__name__)


def as_masks(masks: Any, name: str = "masks") -> Tensor:
    """Object masks as a bool tensor ``(N, H, W)``.

    Accepts a bool tensor/array; an integer one (uint8 0/255 as the shapes dataset's PIL "L"
    masks, or 0/1): object where > 127 for uint8 masks reaching above 1 (0/255), > 0
    otherwise (0/1 label masks, whatever their dtype); a float one: object where
    > 0.5; or a sequence of PIL images / 2-D arrays. A single ``(H, W)`` mask gets N = 1.
    """
    if isinstance(masks, Sequence) and not isinstance(masks, (str, bytes)):
        if not masks:
            raise ValueError(f"{name}: expected at least one mask, got an empty sequence")
        return torch.cat([as_masks(m, name) for m in masks])
    if not isinstance(masks, (Tensor, np.ndarray)) and hasattr(masks, "mode"):  # PIL image
        masks = np.asarray(masks.convert("L"))
    if isinstance(masks, np.ndarray):
        masks = torch.from_numpy(np.array(masks, copy=True))
    if not isinstance(masks, Tensor):
        raise TypeError(
            f"{name}: expected a bool tensor (N, H, W), an array, or PIL images, got "
            f"{type(masks).__name__}"
        )
    if masks.dim() == 2:
        masks = masks.unsqueeze(0)
    if masks.dim() != 3:
        raise ValueError(f"{name}: expected shape (N, H, W) or (H, W), got {tuple(masks.shape)}")
    if masks.dtype == torch.bool:
        return masks
    if masks.dtype == torch.uint8:  # 0/255 images, or 0/1 label masks (mask.astype(uint8))
        return masks > (127 if int(masks.max()) > 1 else 0)
    if masks.is_floating_point():
        return masks > 0.5
    return masks > 0


def _pair(maps: Tensor, masks: Any) -> tuple[Tensor, Tensor]:
    if not isinstance(maps, Tensor) or not maps.is_floating_point():
        got = maps.dtype if isinstance(maps, Tensor) else type(maps).__name__
        raise TypeError(f"maps: expected a float tensor (N, H, W), got {got}")
    if maps.dim() == 2:
        maps = maps.unsqueeze(0)
    if maps.dim() != 3:
        raise ValueError(f"maps: expected shape (N, H, W), got {tuple(maps.shape)}")
    m = as_masks(masks).to(maps.device)
    if m.shape != maps.shape:
        raise ValueError(
            f"masks: expected the maps' shape {tuple(maps.shape)}, got {tuple(m.shape)} "
            "(resize the masks or upsample the maps first)"
        )
    return maps.detach(), m


def energy_in_mask(maps: Tensor, masks: Any) -> Tensor:
    """Share of each map's positive energy inside the object, ``(N,)`` in [0, 1] (Wang et al.,
    2020): ``sum_{mask} max(s, 0) / sum max(s, 0)``. Negative evidence is ignored; a map with no
    positive value scores NaN. Use ``maps.abs()`` to score unsigned magnitude instead."""
    maps, m = _pair(maps, masks)
    positive = maps.clamp(min=0).flatten(1)
    total = positive.sum(dim=1)
    inside = (positive * m.flatten(1)).sum(dim=1)
    score = inside / total
    return torch.where(total > 0, score, torch.full_like(score, float("nan")))


@dataclass(frozen=True, eq=False)
class PointingGameResult:
    """Pointing game: ``hits`` ``(N,)`` 1.0 / 0.0 (NaN for an empty mask), the maximum's
    ``points`` ``(N, 2)`` as (row, col), and ``accuracy`` = mean hit over defined images."""

    hits: Tensor
    points: Tensor
    accuracy: float
    tolerance: float


def pointing_game(maps: Tensor, masks: Any, tolerance: float = 15) -> PointingGameResult:
    """Zhang et al. (2016)'s pointing game: a hit when the map's maximum (the first one in
    raster order if tied) lies within Euclidean distance ``tolerance`` (pixels) of an object
    pixel, i.e. inside the mask dilated by a disc of that radius. ``tolerance=0`` requires the
    maximum on the object itself."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not (
        tolerance >= 0
    ):
        raise ValueError(f"tolerance: expected a number >= 0 (pixels), got {tolerance!r}")
    maps, m = _pair(maps, masks)
    n, h, w = maps.shape
    flat = maps.flatten(1).argmax(dim=1)
    rows, cols = flat // w, flat % w
    yy = torch.arange(h, device=maps.device).view(1, h, 1)
    xx = torch.arange(w, device=maps.device).view(1, 1, w)
    dist2 = (yy - rows.view(n, 1, 1)) ** 2 + (xx - cols.view(n, 1, 1)) ** 2
    hit = ((dist2 <= float(tolerance) ** 2) & m).flatten(1).any(dim=1)
    empty = ~m.flatten(1).any(dim=1)
    if empty.any():
        logger.warning("pointing_game: %d empty mask(s); their hit is NaN", int(empty.sum()))
    hits = torch.where(empty, torch.full((n,), float("nan"), device=maps.device), hit.float())
    valid = ~empty
    accuracy = float(hits[valid].mean()) if valid.any() else float("nan")
    return PointingGameResult(hits=hits, points=torch.stack([rows, cols], dim=1),
                              accuracy=accuracy, tolerance=float(tolerance))
