"""Task2Box's evaluation protocols end to end: one split, every method, one score each.

Daroya, Sun, Maji, CVPR 2024. Table 2 (hierarchies): test F1 of the "is a parent" class on held-out
ordered pairs ("existing") or on held-out datasets embedded from their features alone ("novel"),
for 2/3/5-D boxes and the baselines. Table 3 (Taskonomy): Spearman rho between predicted
``ov(i -> j)`` and the measured transfer affinities, on held-out pairs or held-out tasks. The
notebook and the benchmark call these, so their numbers come from one implementation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

from .evaluation import (
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
from .hierarchy import Hierarchy, HierarchyFeatures
from .model import Task2Box
from .taskonomy import TaskAffinities, affinity_targets, task_attributes

__all__ = ["hierarchy_protocol", "taskonomy_protocol"]

logger = logging.getLogger("visloupe.core.boxes")

Protocol = Literal["existing", "novel"]
Progress = Callable[[str], None]


def _check(protocol: str, dims: Sequence[int]) -> tuple[int, ...]:
    if protocol not in ("existing", "novel"):
        raise ValueError(f"protocol: expected 'existing' or 'novel', got {protocol!r}")
    dims = tuple(dims)
    if not dims or any(not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(f"dims: expected box dimensions >= 1, got {dims}")
    return dims


def hierarchy_protocol(hierarchy: Hierarchy, features: HierarchyFeatures,
                       protocol: Protocol = "existing", *, seed: int = 0, epochs: int = 1350,
                       dims: Sequence[int] = (2, 3, 5), clf_epochs: int = 20, n_val: int = 6,
                       n_test: int = 16, progress: Progress | None = None
                       ) -> tuple[dict[str, float], dict[int, Task2Box]]:
    """Test F1 of every Table 2 method on one split of ``hierarchy``, and the fitted box models.

    ``existing``: ordered pairs split 80/10/10 (stratified by the ancestor labels); boxes and
    classifiers see the training pairs only. ``novel``: ``n_val + n_test`` datasets with a parent
    are held out entirely, models are fitted on the others, and the held-out datasets are scored
    as children of every training dataset from their features alone. Thresholds are tuned on the
    validation pairs; boxes use the paper's parent rule. Features are ``features.mean_var``.
    """
    dims = _check(protocol, dims)
    n, ancestors, overlap = len(hierarchy), hierarchy.ancestors(), hierarchy.overlap()
    x = features.mean_var
    if protocol == "existing":
        train, val, test = pair_split(n, seed=seed, stratify=ancestors)
        fit_nodes = torch.arange(n)
    else:
        fit_nodes, novel_val, novel_test = novel_split(ancestors, n_val, n_test, seed=seed)
        val = novel_masks(n, fit_nodes, novel_val)
        test = novel_masks(n, fit_nodes, novel_test)
        train = torch.zeros(n, n, dtype=torch.bool)
        train[fit_nodes[:, None], fit_nodes[None, :]] = True
    sub = fit_nodes
    scores: dict[str, float] = {}
    models: dict[int, Task2Box] = {}
    for dim in dims:
        model = Task2Box(dim=dim).fit(x[sub], overlap[sub][:, sub], train[sub][:, sub],
                                      epochs=epochs, seed=seed)
        models[dim] = model
        scores[f"Task2Box {dim}D"] = hierarchy_f1(model.overlap(x), ancestors, val, test).f1
        if progress is not None:
            progress(f"{protocol}: {dim}-D boxes fitted")
    for kind, name in (("mlp", "MLP"), ("linear", "Linear")):
        clf = PairClassifier(kind).fit(x, ancestors.float(), train, epochs=clf_epochs, seed=seed)
        scores[name] = hierarchy_f1(clf.scores(x), ancestors, val, test, rule="threshold").f1
    scores["KL"] = hierarchy_f1(gaussian_kl_scores(features.mean, features.var), ancestors, val,
                                test, thresholds="quantile").f1
    for metric, name in (("cosine", "Asym. cosine"), ("euclidean", "Asym. Euclidean")):
        scores[name] = hierarchy_f1(asymmetric_distance_scores(features.mean, metric), ancestors,
                                    val, test, thresholds="quantile").f1
    scores["Random"] = hierarchy_f1(random_scores(n, seed=seed), ancestors, val, test,
                                    rule="threshold").f1
    return scores, models


def taskonomy_protocol(affinities: TaskAffinities, protocol: Protocol = "existing", *,
                       seed: int = 0, epochs: int = 3000, dims: Sequence[int] = (2, 3, 5),
                       clf_epochs: int = 200, n_novel: int = 4, features: Tensor | None = None,
                       progress: Progress | None = None) -> dict[str, float]:
    """Spearman rho of every Table 3 method on one split of the Taskonomy affinities.

    Targets are ``tanh(50 * affinity)``; features default to our task attributes
    (:func:`task_attributes`). ``existing``: ordered task pairs split 80/10/10, rho on the test
    pairs. ``novel``: ``n_novel`` tasks held out, models fitted on the others, rho over the pairs
    between held-out and training tasks in both directions. NaN affinities are never used.
    """
    dims = _check(protocol, dims)
    tasks, raw = affinities.square()
    n = len(tasks)
    target = affinity_targets(raw)
    x = task_attributes(tasks) if features is None else torch.as_tensor(features).float()
    if protocol == "existing":
        train, _, scored = pair_split(n, seed=seed)
        keep = torch.arange(n)
    else:
        if not 1 <= n_novel <= n - 2:
            raise ValueError(f"n_novel: expected 1..{n - 2} held-out tasks, got {n_novel}")
        held = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:n_novel]
        keep = torch.tensor([i for i in range(n) if i not in set(held.tolist())])
        train = torch.zeros(n, n, dtype=torch.bool)
        train[keep[:, None], keep[None, :]] = True
        scored = torch.zeros(n, n, dtype=torch.bool)
        scored[held[:, None], keep[None, :]] = True
        scored[keep[:, None], held[None, :]] = True
    rho: dict[str, float] = {}
    for dim in dims:
        model = Task2Box(dim=dim, weights="taskonomy").fit(
            x[keep], target[keep][:, keep], train[keep][:, keep], epochs=epochs, seed=seed)
        rho[f"Task2Box {dim}D"] = spearman(model.overlap(x), raw, scored)
        if progress is not None:
            progress(f"Taskonomy {protocol}: {dim}-D boxes fitted")
    for kind, name in (("mlp", "MLP"), ("linear", "Linear")):
        clf = PairClassifier(kind, loss="mse").fit(x, target, train, epochs=clf_epochs,
                                                   seed=seed)
        rho[name] = spearman(clf.scores(x), raw, scored)
    rho["Random"] = spearman(random_scores(n, seed=seed), raw, scored)
    return rho
