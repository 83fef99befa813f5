"""The bootstrap and verdict helpers of ``scripts/paper_claims.py`` on planted samples (numpy only:
the script imports torch and visloupe inside its functions, so loading it here is cheap)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "paper_claims.py"


@pytest.fixture(scope="module")
def pc():
    spec = importlib.util.spec_from_file_location("paper_claims", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("paper_claims", module)
    spec.loader.exec_module(module)
    return module


def test_loading_the_script_does_not_import_torch(pc):
    assert not hasattr(pc, "torch")


def test_ci_of_a_constant_sample_is_that_constant(pc):
    lo, hi = pc.bootstrap_ci(np.full(7, 0.4375), n_boot=500, seed=3)
    assert lo == pytest.approx(0.4375, abs=1e-12)
    assert hi == pytest.approx(0.4375, abs=1e-12)


def test_ci_covers_the_mean_and_narrows_with_n(pc):
    rng = np.random.default_rng(0)
    small = rng.normal(2.0, 1.0, size=10)
    large = rng.normal(2.0, 1.0, size=400)
    lo_s, hi_s = pc.bootstrap_ci(small, n_boot=1000, seed=0)
    lo_l, hi_l = pc.bootstrap_ci(large, n_boot=1000, seed=0)
    assert lo_s < small.mean() < hi_s
    assert lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s)
    # the normal-theory interval of the mean of 400 N(2, 1) draws is about ±0.098
    assert (hi_l - lo_l) == pytest.approx(2 * 1.96 / np.sqrt(400), rel=0.25)


def test_ci_is_seeded_and_ignores_nans(pc):
    v = np.array([0.1, 0.5, np.nan, 0.9, 0.3])
    assert pc.bootstrap_ci(v, seed=1) == pc.bootstrap_ci(v, seed=1)
    assert pc.bootstrap_ci(v, seed=1) == pc.bootstrap_ci(v[np.isfinite(v)], seed=1)
    assert all(np.isnan(pc.bootstrap_ci([np.nan, np.nan])))


def test_resample_counts_are_multiplicities(pc):
    w = pc.resample_counts(6, n_boot=200, seed=0)
    assert w.shape == (200, 6)
    assert np.all(w.sum(axis=1) == 6)
    assert np.all(w >= 0) and np.all(w == np.round(w))
    np.testing.assert_array_equal(w, pc.resample_counts(6, n_boot=200, seed=0))


def test_pooled_ratio_replicates(pc):
    sums, counts = np.array([3.0, 1.0, 0.0]), np.array([4.0, 2.0, 0.0])
    one = np.ones((1, 3))
    assert pc.ratio_replicates(one, sums, counts)[0] == pytest.approx(4.0 / 6.0)
    only_empty = np.array([[0.0, 0.0, 3.0]])  # a resample of the image without pairs
    assert np.isnan(pc.ratio_replicates(only_empty, sums, counts)[0])


def test_percentile_interval(pc):
    lo, hi = pc.percentile_interval(np.arange(1001, dtype=float))
    assert lo == pytest.approx(25.0) and hi == pytest.approx(975.0)


def test_verdict_needs_direction_and_a_resolved_ci(pc):
    assert pc.verdict(True, (0.1, 0.3), +1)[0] is True
    assert pc.verdict(True, (-0.1, 0.3), +1)[0] is False
    assert pc.verdict(True, (-0.3, -0.1), -1)[0] is True
    assert pc.verdict(False, (0.1, 0.3), +1) == (False, "opposite direction to the paper's")
    assert pc.verdict(True, (float("nan"), 0.1), +1)[0] is False
