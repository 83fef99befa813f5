"""Task2Box conventions (Daroya, Sun, Maji, CVPR 2024; official code cvl-umass/task2box) on
hand-computed values: ov(i->j) = Vol(B_i ∩ B_j) / Vol(B_i) with softplus Gumbel volumes
(τ_v = 0.1, τ_i = 1e-4), the four loss terms, and the strict parent rule with the paper's
threshold grid."""

from __future__ import annotations

import math

import pytest
import torch
from visloupe.core.boxes import (
    HIERARCHY_WEIGHTS,
    INTERSECTION_TEMPERATURE,
    VOLUME_TEMPERATURE,
    pairwise_overlap,
    task2box_loss,
)
from visloupe.core.boxes.evaluation import PAPER_THRESHOLDS
from visloupe.core.boxes.model import parent_rule

pytestmark = pytest.mark.usefixtures("one_thread")

GAMMA = 0.5772156649015329


def side(s: float) -> float:
    """Expected Gumbel side length: softplus_{1/τ_v}(s - 2 γ τ_i), as box-embeddings 0.1.0."""
    beta = 1 / VOLUME_TEMPERATURE
    return math.log1p(math.exp(beta * (s - 2 * GAMMA * INTERSECTION_TEMPERATURE))) / beta


def smooth_max(a: float, b: float) -> float:
    t = INTERSECTION_TEMPERATURE
    return max(a, b) + t * math.log1p(math.exp(-abs(a - b) / t))


def test_temperatures_are_the_official_ones() -> None:
    assert (VOLUME_TEMPERATURE, INTERSECTION_TEMPERATURE) == (0.1, 1e-4)


def test_one_dimensional_gumbel_overlap_by_hand() -> None:
    lo = torch.tensor([[0.0], [0.5]], dtype=torch.float64)
    hi = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    ov = pairwise_overlap(lo, hi)
    inter = side(0.5)  # corners 0.5 and 1 (the smooth max/min are exact this far apart)
    assert float(ov[0, 1]) == pytest.approx(inter / side(1.0), rel=1e-9)  # ~0.5006, hard 0.5
    assert float(ov[1, 0]) == pytest.approx(inter / side(1.5), rel=1e-9)  # ~0.3337, hard 1/3
    assert float(ov[0, 1]) != pytest.approx(0.5, abs=3e-4)  # soft, not hard, volumes


def test_loss_terms_by_hand() -> None:
    lo = torch.tensor([[0.0, 0.0], [0.5, 0.0]], dtype=torch.float64)
    hi = torch.tensor([[1.0, 1.0], [1.5, 0.5]], dtype=torch.float64)
    target = torch.tensor([[1.0, 0.3], [0.8, 1.0]], dtype=torch.float64)
    mask = torch.ones(2, 2, dtype=torch.bool)
    terms = task2box_loss(lo, hi, target, mask)
    vol = [side(1.0) * side(1.0), side(1.0) * side(0.5)]
    # equal lower corners in dim 1: the Gumbel max adds τ_i log 2
    inter = side(1.0 - 0.5) * side(0.5 - smooth_max(0.0, 0.0))
    ov01, ov10 = inter / vol[0], inter / vol[1]
    overlap = (ov01 - 0.3) ** 2 + (ov10 - 0.8) ** 2           # a sum, not a mean
    volume = sum((1 / (v + 1e-12)) ** 0.5 for v in vol)       # (1 / Vol)^(1/d)
    distance = 2 * ((0.5 - 1.0) ** 2 + (0.5 - 0.25) ** 2)     # both directions, centres
    square = (abs(1.0 - 1.0) + abs(1.0 - 0.5)) / 4            # (1/d²) sum |s_k - s_l|
    assert float(terms.overlap) == pytest.approx(overlap, rel=1e-9)
    assert float(terms.volume) == pytest.approx(volume, rel=1e-9)
    assert float(terms.distance) == pytest.approx(distance, rel=1e-12)
    assert float(terms.square) == pytest.approx(square, rel=1e-12)
    w = HIERARCHY_WEIGHTS
    assert (w.overlap, w.volume, w.distance, w.square) == (100.0, 0.7, 0.01, 1.0)
    total = 100 * overlap + 0.7 * volume + 0.01 * distance + square
    assert float(terms.total) == pytest.approx(total, rel=1e-9)


def test_parent_rule_is_strict_and_asymmetric() -> None:
    ov = torch.tensor([[1.0, 0.9, 0.2], [0.3, 1.0, 0.1], [0.6, 0.6, 1.0]])
    # j parent of i iff ov(i->j) > ov(j->i) and ov(i->j) > t
    assert parent_rule(ov, 0.6).nonzero().tolist() == [[0, 1]]          # 0.6 is not > 0.6
    assert parent_rule(ov, 0.5).nonzero().tolist() == [[0, 1], [2, 0], [2, 1]]
    assert PAPER_THRESHOLDS == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
