"""Task2Box's Table 2 and Table 3 protocols end to end, on planted data small enough for CI."""

from __future__ import annotations

import pytest
import torch
from visloupe.core import boxes as bx

TABLE2 = {"Task2Box 5D", "MLP", "Linear", "KL", "Asym. cosine", "Asym. Euclidean", "Random"}


@pytest.fixture(scope="module")
def tree() -> tuple[bx.Hierarchy, bx.HierarchyFeatures]:
    h = bx.synthetic_hierarchy(depth=3, branching=(2, 4), roots=3, seed=2)
    return h, bx.hierarchical_features(h, dim=16, seed=0)


def test_hierarchy_protocol_existing_pairs(tree) -> None:
    h, f = tree
    scores, models = bx.hierarchy_protocol(h, f, "existing", epochs=300, dims=(5,),
                                           clf_epochs=3)
    assert set(scores) == TABLE2 and set(models) == {5}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert scores["Random"] < 0.2
    assert scores["Task2Box 5D"] > scores["Random"] + 0.35
    assert models[5].n_items == len(h)  # existing pairs: every dataset is fitted


def test_hierarchy_protocol_novel_datasets_never_trains_on_them(tree) -> None:
    h, f = tree
    messages: list[str] = []
    scores, models = bx.hierarchy_protocol(h, f, "novel", epochs=300, dims=(5,), clf_epochs=3,
                                           n_val=3, n_test=5, progress=messages.append)
    assert models[5].n_items == len(h) - 8  # the 8 held-out datasets are not fitted
    assert scores["Task2Box 5D"] > scores["Random"] + 0.3
    assert messages == ["novel: 5-D boxes fitted"]


def planted_affinities(tasks: list[str]) -> bx.TaskAffinities:
    """Affinity i -> j = 0.04 x the share of task i's attributes that task j also has (an
    asymmetric containment the attributes determine), with one pair left unmeasured (NaN)."""
    a = bx.task_attributes(tasks)
    shared = a @ a.T
    matrix = 0.04 * shared / a.sum(dim=1, keepdim=True).clamp(min=1)
    matrix[0, 1] = float("nan")
    return bx.TaskAffinities(tuple(tasks), tuple(tasks), matrix)


def test_taskonomy_protocol_recovers_a_planted_affinity_order() -> None:
    tasks = sorted(bx.TASKONOMY_ATTRIBUTES)
    aff = planted_affinities(tasks)
    rho = bx.taskonomy_protocol(aff, "existing", epochs=400, dims=(5,), clf_epochs=20)
    assert set(rho) == {"Task2Box 5D", "MLP", "Linear", "Random"}
    assert rho["Task2Box 5D"] > 0.5
    assert rho["Task2Box 5D"] > abs(rho["Random"]) + 0.3
    novel = bx.taskonomy_protocol(aff, "novel", epochs=400, dims=(5,), clf_epochs=20,
                                  n_novel=4)
    assert novel["Task2Box 5D"] > 0.6
    assert novel["Task2Box 5D"] > abs(novel["Random"]) + 0.4


def test_protocols_reject_bad_arguments(tree) -> None:
    h, f = tree
    with pytest.raises(ValueError, match="protocol"):
        bx.hierarchy_protocol(h, f, "seen")
    with pytest.raises(ValueError, match="dims"):
        bx.hierarchy_protocol(h, f, dims=(0,))
    aff = planted_affinities(sorted(bx.TASKONOMY_ATTRIBUTES)[:6])
    with pytest.raises(ValueError, match="n_novel"):
        bx.taskonomy_protocol(aff, "novel", n_novel=5)
    assert torch.isnan(aff.matrix[0, 1])
