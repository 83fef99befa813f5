"""Taskonomy transfer affinities (Zamir et al., CVPR 2018) as Task2Box targets.

:func:`load_taskonomy_affinities` reads the first-order affinity CSV (``source,target,affinity``),
by default the table shipped in ``visloupe/core/data/taskonomy/`` (MIT licence, with its
provenance in the README there). Task2Box
regresses box overlap onto ``tanh(50 * affinity)`` (:func:`affinity_targets`). The per-task
attribute vectors Task2Box used are unpublished; :data:`TASKONOMY_ATTRIBUTES` is our own small
hand-made table (output type, geometry vs semantics, ...) to play that role.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "ATTRIBUTE_NAMES",
    "SHIPPED_AFFINITIES",
    "TASKONOMY_ATTRIBUTES",
    "TaskAffinities",
    "affinity_targets",
    "load_taskonomy_affinities",
    "task_attributes",
]


@dataclass(frozen=True)
class TaskAffinities:
    """``matrix[i, j]``: affinity of source task ``sources[i]`` to target task ``targets[j]``
    (NaN where not measured). :meth:`square` gives the tasks that are both."""

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    matrix: Tensor

    def square(self, exclude: tuple[str, ...] = ("self", "random")) -> tuple[tuple[str, ...],
                                                                              Tensor]:
        """Tasks that are both sources and targets (pseudo-sources excluded), and the ``(T, T)``
        affinity matrix ``A[i, j]`` = transfer from task ``i`` to task ``j``."""
        tasks = tuple(t for t in self.targets if t in self.sources and t not in exclude)
        si = [self.sources.index(t) for t in tasks]
        ti = [self.targets.index(t) for t in tasks]
        return tasks, self.matrix[si][:, ti].clone()


SHIPPED_AFFINITIES = Path(__file__).resolve().parents[1] / "data" / "taskonomy" / \
    "affinities_first_order.csv"


def load_taskonomy_affinities(path: str | Path | None = None) -> TaskAffinities:
    """Read a ``source,target,affinity`` CSV (header row required) into :class:`TaskAffinities`;
    ``path`` None reads the Taskonomy table shipped with the package."""
    p = SHIPPED_AFFINITIES if path is None else Path(path)
    if p.is_dir():
        p = p / "affinities_first_order.csv"
    if not p.exists():
        raise FileNotFoundError(f"path: {p} does not exist (expected the Taskonomy affinity CSV)")
    rows: list[tuple[str, str, float]] = []
    with open(p, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["source", "target", "affinity"]:
            raise ValueError(f"path: expected a header 'source,target,affinity' in {p}, got "
                             f"{header}")
        for k, row in enumerate(reader, start=2):
            if len(row) < 3:
                raise ValueError(f"path: line {k} of {p} has {len(row)} fields, expected 3")
            try:
                value = float(row[2])
            except ValueError as error:
                raise ValueError(f"path: line {k} of {p}: affinity {row[2]!r} is not a "
                                 "number") from error
            rows.append((row[0].strip(), row[1].strip(), value))
    sources = tuple(sorted({r[0] for r in rows}))
    targets = tuple(sorted({r[1] for r in rows}))
    matrix = torch.full((len(sources), len(targets)), math.nan)
    for s, t, v in rows:
        matrix[sources.index(s), targets.index(t)] = v
    return TaskAffinities(sources, targets, matrix)


def affinity_targets(affinity: Tensor, k: float = 50.0) -> Tensor:
    """Task2Box's overlap target ``tanh(k * affinity)`` (k = 50), NaN kept; monotone, so rank
    correlations with the raw affinities are unchanged."""
    return torch.tanh(k * torch.as_tensor(affinity, dtype=torch.float32).clamp(min=0))


ATTRIBUTE_NAMES = ("pixelwise_output", "image_level_output", "geometric_3d", "geometric_2d",
                   "semantic", "low_level", "needs_two_images", "camera_pose", "continuous_output",
                   "edges_or_keypoints", "depth_like", "self_supervised")

# Our own hand-made attributes (1 = yes), one row per Taskonomy task, columns ATTRIBUTE_NAMES.
TASKONOMY_ATTRIBUTES: dict[str, tuple[int, ...]] = {
    "autoencoder": (1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1),
    "class_1000": (0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0),
    "class_selected": (0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0),
    "colorization": (1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1),
    "curvature": (1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0),
    "denoise": (1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1),
    "edge2d": (1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1),
    "edge3d": (1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0),
    "ego_motion": (0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0),
    "fix_pose": (0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0),
    "impainting_whole": (1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1),
    "jigsaw": (0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1),
    "keypoint2d": (1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1),
    "keypoint3d": (1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0),
    "non_fixated_pose": (0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0),
    "point_match": (0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0),
    "reshade": (1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0),
    "rgb2depth": (1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0),
    "rgb2mist": (1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0),
    "rgb2sfnorm": (1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0),
    "room_layout": (0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0),
    "segment25d": (1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0),
    "segment2d": (1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1),
    "segmentsemantic_rb": (1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0),
    "vanishing_point_well_defined": (0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0),
}


def task_attributes(tasks: tuple[str, ...] | list[str]) -> Tensor:
    """``(T, len(ATTRIBUTE_NAMES))`` float attribute matrix of ``tasks`` from
    :data:`TASKONOMY_ATTRIBUTES`."""
    missing = [t for t in tasks if t not in TASKONOMY_ATTRIBUTES]
    if missing:
        raise ValueError(f"tasks: no attributes for {missing}; known: "
                         f"{sorted(TASKONOMY_ATTRIBUTES)}")
    return torch.tensor([TASKONOMY_ATTRIBUTES[t] for t in tasks], dtype=torch.float32)
