"""visloupe.core.boxes: Task2Box, datasets and tasks as boxes (Daroya, Sun, Maji, CVPR 2024).

- Geometry: :func:`pairwise_overlap` (soft Gumbel boxes, ``ov(i->j) = Vol(Bi∩Bj)/Vol(Bi)``),
  :func:`hard_pairwise_overlap`, :func:`log_volume`, :func:`gumbel_intersection`.
- Model: :class:`Task2Box` (feature -> box network or free boxes), :func:`task2box_loss`,
  :func:`parent_rule`; ``fit`` / ``boxes`` / ``overlap`` / ``predict_relations`` / ``save`` /
  ``load``.
- Evaluation: :func:`pair_split`, :func:`novel_split`, :func:`hierarchy_f1`, :func:`spearman`,
  baselines :class:`PairClassifier`, :func:`gaussian_kl_scores`,
  :func:`asymmetric_distance_scores`, :func:`random_scores`; the paper's protocols end to end:
  :func:`hierarchy_protocol` (Table 2), :func:`taskonomy_protocol` (Table 3).
- Data: :func:`synthetic_hierarchy`, :func:`imagenet_hierarchy` (WordNet 3.0, offline),
  :func:`hierarchical_features`, :func:`dataset_features` (any encoder),
  :func:`load_taskonomy_affinities`.
"""

from .evaluation import (
    HierarchyScore,
    PairClassifier,
    asymmetric_distance_scores,
    gaussian_kl_scores,
    hierarchy_f1,
    novel_masks,
    novel_split,
    pair_split,
    random_scores,
    spearman,
)
from .features import DatasetFeatures, dataset_features
from .geometry import (
    EULER_GAMMA,
    INTERSECTION_TEMPERATURE,
    VOLUME_TEMPERATURE,
    PairIndex,
    check_boxes,
    gumbel_intersection,
    hard_intersection,
    hard_log_volume,
    hard_pairwise_overlap,
    log_volume,
    pair_log_intersection,
    pairwise_log_intersection,
    pairwise_log_overlap,
    pairwise_overlap,
)
from .hierarchy import (
    Hierarchy,
    HierarchyFeatures,
    hierarchical_features,
    imagenet_hierarchy,
    synthetic_hierarchy,
)
from .model import (
    HIERARCHY_WEIGHTS,
    TASKONOMY_WEIGHTS,
    BoxNet,
    FreeBoxes,
    LossTerms,
    LossWeights,
    Relations,
    Task2Box,
    parent_rule,
    task2box_loss,
)
from .protocols import hierarchy_protocol, taskonomy_protocol
from .taskonomy import (
    SHIPPED_AFFINITIES,
    TASKONOMY_ATTRIBUTES,
    TaskAffinities,
    affinity_targets,
    load_taskonomy_affinities,
    task_attributes,
)

__all__ = [
    "EULER_GAMMA",
    "HIERARCHY_WEIGHTS",
    "INTERSECTION_TEMPERATURE",
    "PairIndex",
    "TASKONOMY_ATTRIBUTES",
    "TASKONOMY_WEIGHTS",
    "VOLUME_TEMPERATURE",
    "BoxNet",
    "DatasetFeatures",
    "FreeBoxes",
    "Hierarchy",
    "HierarchyFeatures",
    "HierarchyScore",
    "LossTerms",
    "LossWeights",
    "PairClassifier",
    "Relations",
    "SHIPPED_AFFINITIES",
    "TaskAffinities",
    "Task2Box",
    "affinity_targets",
    "asymmetric_distance_scores",
    "check_boxes",
    "dataset_features",
    "gaussian_kl_scores",
    "gumbel_intersection",
    "hard_intersection",
    "hard_log_volume",
    "hard_pairwise_overlap",
    "hierarchical_features",
    "hierarchy_f1",
    "hierarchy_protocol",
    "imagenet_hierarchy",
    "load_taskonomy_affinities",
    "log_volume",
    "novel_masks",
    "novel_split",
    "pair_split",
    "pair_log_intersection",
    "pairwise_log_intersection",
    "pairwise_log_overlap",
    "pairwise_overlap",
    "parent_rule",
    "random_scores",
    "spearman",
    "synthetic_hierarchy",
    "task2box_loss",
    "task_attributes",
    "taskonomy_protocol",
]
