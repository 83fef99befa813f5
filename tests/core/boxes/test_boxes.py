"""Task2Box core: box geometry identities, loss, fit, evaluation and persistence."""

from __future__ import annotations

import math

import pytest
import torch
from visloupe.core import boxes as bx


def _box(*corners: float) -> tuple[torch.Tensor, torch.Tensor]:
    d = len(corners) // 2
    return torch.tensor([corners[:d]]), torch.tensor([corners[d:]])


def _stack(*boxes: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([b[0] for b in boxes]), torch.cat([b[1] for b in boxes])


# ---------------------------------------------------------------------------------------------
# Geometry


def test_contained_box_overlap_is_one_and_reverse_is_area_ratio() -> None:
    lo, hi = _stack(_box(0.0, 0.0, 4.0, 2.0), _box(1.0, 0.5, 2.0, 1.5))  # child area 1, parent 8
    hard = bx.hard_pairwise_overlap(lo, hi)
    assert hard[1, 0] == pytest.approx(1.0)
    assert hard[0, 1] == pytest.approx(1 / 8)
    soft = bx.pairwise_overlap(lo, hi)
    assert soft[1, 0] == pytest.approx(1.0, abs=1e-3)
    # softplus volume with tau_v = 0.1 on sides >= 1 is within 0.1 % of the hard volume
    assert soft[0, 1] == pytest.approx(1 / 8, rel=1e-2)
    assert soft[0, 1] < soft[1, 0]  # asymmetric


def test_disjoint_boxes_overlap_near_zero_and_diagonal_is_one() -> None:
    lo, hi = _stack(_box(0.0, 0.0, 1.0, 1.0), _box(3.0, 3.0, 4.0, 5.0))
    soft = bx.pairwise_overlap(lo, hi)
    assert soft[0, 1] < 1e-6 and soft[1, 0] < 1e-6
    # self-intersection shrinks each side by 2 tau_i log 2 (Gumbel boxes): ~1e-4 relative
    assert torch.allclose(soft.diagonal(), torch.ones(2), atol=1e-3)
    assert torch.equal(bx.hard_pairwise_overlap(lo, hi), torch.eye(2))


def test_soft_ops_match_hard_ops_at_low_temperature_on_random_boxes() -> None:
    g = torch.Generator().manual_seed(3)
    lo = torch.rand(30, 3, generator=g) * 4
    hi = lo + 0.5 + torch.rand(30, 3, generator=g) * 2
    soft = bx.pairwise_overlap(lo, hi, volume_temperature=1e-3, intersection_temperature=1e-6)
    hard = bx.hard_pairwise_overlap(lo, hi)
    assert torch.allclose(soft, hard, atol=5e-3)
    ilo, ihi = bx.gumbel_intersection(lo[:5], hi[:5], lo[5:10], hi[5:10], 1e-4)
    hlo, hhi = bx.hard_intersection(lo[:5], hi[:5], lo[5:10], hi[5:10])
    assert torch.allclose(ilo, hlo, atol=1e-3) and torch.allclose(ihi, hhi, atol=1e-3)
    # the soft volume is the softplus of the (gamma-shifted) side, per Dasgupta et al. 2020
    side = hi[0] - lo[0] - 2 * bx.EULER_GAMMA * 1e-4
    expected = torch.log(torch.nn.functional.softplus(side, beta=10.0)).sum()
    assert bx.log_volume(lo[0], hi[0]) == pytest.approx(float(expected), rel=1e-5)


def test_overlap_gradients_flow_for_disjoint_soft_boxes() -> None:
    lo = torch.tensor([[0.0, 0.0], [1.2, 0.0]], requires_grad=True)
    hi = lo.detach() + 1.0
    ov = bx.pairwise_log_overlap(lo, hi)
    ov[0, 1].backward()
    assert torch.isfinite(lo.grad).all() and lo.grad.abs().sum() > 0


def test_fused_pairwise_op_matches_composed_ops_and_its_gradient_checks() -> None:
    g = torch.Generator().manual_seed(1)
    lo = (torch.rand(6, 3, generator=g, dtype=torch.float64) * 2).requires_grad_()
    hi = (lo.detach() + 0.05 + torch.rand(6, 3, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: bx.pairwise_log_overlap(a, b, 0.1, 1e-2),
                                    (lo, hi))
    w = torch.rand(6, 6, generator=g, dtype=torch.float64)
    grads = []
    for fused in (True, False):
        lo.grad = hi.grad = None
        out = bx.pairwise_log_overlap(lo, hi, fused=fused)
        (out.exp() * w).sum().backward()
        grads.append((out.detach(), lo.grad.clone(), hi.grad.clone()))
    for x, y in zip(*grads, strict=True):
        assert torch.allclose(x, y, rtol=1e-9, atol=1e-12)


def test_pair_op_matches_composed_ops_on_touching_and_large_boxes() -> None:
    # equal and nearly equal corners (the smooth max's refined branch), and sides up to 4
    # (softplus' linear branch at tau_v = 0.1): values and gradients of the fused pair op equal
    # gumbel_intersection + log_volume composed by autograd
    g = torch.Generator().manual_seed(7)
    lo = torch.rand(12, 3, generator=g, dtype=torch.float64) * 2
    hi = lo + 0.02 + torch.rand(12, 3, generator=g, dtype=torch.float64) * 4
    lo[1], hi[2, 0], lo[3, 1] = lo[0], hi[0, 0], lo[0, 1] + 3e-5
    rows, cols = torch.tensor([0, 0, 0, 1, 4, 5, 2, 11]), torch.tensor([1, 2, 3, 3, 9, 5, 7, 0])
    w = torch.rand(len(rows), generator=g, dtype=torch.float64)
    results = []
    for fused in (True, False):
        a, b = lo.clone().requires_grad_(), hi.clone().requires_grad_()
        if fused:
            out = bx.pair_log_intersection(a, b, rows, cols)
        else:
            ilo, ihi = bx.gumbel_intersection(a[rows], b[rows], a[cols], b[cols])
            out = bx.log_volume(ilo, ihi)
        (out * w).sum().backward()
        results.append((out.detach(), a.grad, b.grad))
    for x, y in zip(*results, strict=True):
        assert torch.allclose(x, y, rtol=1e-9, atol=1e-12)
    assert results[0][0][5] == pytest.approx(float(bx.log_volume(lo[5], hi[5]))
                                             + 3 * math.log1p(-2 * math.log(2) * 1e-4
                                                              / float((hi[5] - lo[5]).min())),
                                             abs=1e-3)  # self-intersection shrinks each side
    pairs = bx.PairIndex(rows, cols, 12)  # reusable index: same numbers
    assert torch.equal(bx.pair_log_intersection(lo, hi, pairs), results[0][0])
    with pytest.raises(ValueError, match="indices"):
        bx.pair_log_intersection(lo, hi, rows, cols + 12)


def test_bad_boxes_raise() -> None:
    with pytest.raises(ValueError, match="hi >= lo"):
        bx.hard_pairwise_overlap(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, -1.0]]))
    with pytest.raises(ValueError, match="one shape"):
        bx.pairwise_overlap(torch.zeros(2, 2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        bx.pairwise_overlap(torch.tensor([[math.nan, 0.0]]), torch.ones(1, 2))


# ---------------------------------------------------------------------------------------------
# Hierarchies


def test_hierarchy_overlap_and_ancestors_agree_with_leaf_sets() -> None:
    h = bx.synthetic_hierarchy(depth=3, branching=(2, 3), roots=2, seed=0)
    o, a = h.overlap(), h.ancestors()
    for c in range(len(h)):
        for p in range(len(h)):
            lc, lp = set(h.leaves[c]), set(h.leaves[p])
            assert o[c, p] == pytest.approx(len(lc & lp) / len(lc))
            assert bool(a[c, p]) == (lc < lp)
    assert torch.all(o[a] == 1.0)  # child -> ancestor overlap is 1


def test_imagenet_instrumentality_hierarchy_matches_the_paper_setting() -> None:
    h = bx.imagenet_hierarchy("instrumentality.n.03")
    assert len(h.leaf_names) == 358  # ImageNet-1k classes under instrumentality
    groups = set(h.groups)
    assert groups == {"device.n.01", "container.n.01", "conveyance.n.03", "equipment.n.01",
                      "implement.n.01", "furnishing.n.02", "toiletry.n.01", "system.n.01"}
    i = h.names.index("device.n.01")
    assert len(h.leaves[i]) == 130
    assert len(set(h.leaves)) == len(h)  # identical leaf sets merged
    with pytest.raises(ValueError, match="root"):
        bx.imagenet_hierarchy("no_such_thing.n.01")


# ---------------------------------------------------------------------------------------------
# Model


@pytest.fixture(scope="module")
def tree() -> dict:
    h = bx.synthetic_hierarchy(depth=3, branching=(2, 4), roots=3, seed=2)
    f = bx.hierarchical_features(h, dim=16, seed=0)
    a = h.ancestors()
    train, val, test = bx.pair_split(len(h), seed=0, stratify=a)
    return {"h": h, "x": f.mean_var, "o": h.overlap(), "a": a, "train": train, "val": val,
            "test": test, "f": f}


def test_loss_terms_match_their_definitions() -> None:
    lo = torch.tensor([[0.0, 0.0], [0.5, 0.5], [3.0, 3.0]])
    hi = lo + torch.tensor([[2.0, 1.0], [0.5, 0.5], [1.0, 1.0]])
    target = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    mask = ~torch.eye(3, dtype=torch.bool)
    w = bx.LossWeights(overlap=1.0, volume=0.0, distance=0.0, square=0.0)
    terms = bx.task2box_loss(lo, hi, target, mask, w)
    ov = bx.pairwise_overlap(lo, hi)
    assert float(terms.overlap) == pytest.approx(float(((ov - target.clamp(min=1e-12))[mask]
                                                        ** 2).sum()), rel=1e-5)
    assert float(terms.total) == pytest.approx(float(terms.overlap), rel=1e-6)
    # square regulariser: only box 0 is not square, |2 - 1| / d^2
    assert float(terms.square) == pytest.approx(0.25, rel=1e-5)
    # distance: only pair (1 -> 0) has a positive target; centres (1, .5) and (.75, .75)
    assert float(terms.distance) == pytest.approx(0.25**2 + 0.25**2, rel=1e-5)


def test_fit_decreases_loss_and_beats_random_by_a_wide_margin(tree: dict) -> None:
    model = bx.Task2Box(dim=5, hidden=(128, 64)).fit(tree["x"], tree["o"], tree["train"],
                                                      epochs=250, seed=0)
    assert model.history[-1] < 0.5 * model.history[0]
    assert all(b <= a * 1.05 for a, b in zip(model.history[::25], model.history[25::25],
                                             strict=False))
    score = bx.hierarchy_f1(model.overlap(tree["x"]), tree["a"], tree["val"], tree["test"])
    rand = bx.hierarchy_f1(bx.random_scores(len(tree["h"]), seed=0), tree["a"], tree["val"],
                           tree["test"], rule="threshold")
    assert rand.f1 < 0.2
    assert score.f1 > rand.f1 + 0.35
    lo, hi = model.boxes(tree["x"])
    side = hi - lo
    assert torch.all(side > 0) and torch.all(side < 1)  # sigmoid sides
    rel = model.predict_relations(tree["x"], threshold=score.threshold, names=tree["h"].names)
    assert rel.parent.shape == tree["a"].shape and not rel.parent.diagonal().any()
    assert set(rel.to_dataframe().columns) >= {"child", "parent"}


def test_fit_is_reproducible_and_leaves_the_global_rng_alone(tree: dict) -> None:
    state = torch.get_rng_state()
    a = bx.Task2Box(dim=2, hidden=(32,)).fit(tree["x"], tree["o"], epochs=5, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    b = bx.Task2Box(dim=2, hidden=(32,)).fit(tree["x"], tree["o"], epochs=5, seed=4)
    assert torch.equal(a.boxes(tree["x"])[0], b.boxes(tree["x"])[0])


def test_free_boxes_draw_a_given_hierarchy() -> None:
    h = bx.synthetic_hierarchy(depth=2, branching=(2, 3), roots=2, seed=1)
    model = bx.Task2Box(dim=2, free=True).fit(None, h.overlap(), epochs=300)
    pred = model.predict_relations(threshold=0.5).parent
    a = h.ancestors()
    tp = int((pred & a).sum())
    assert tp / int(a.sum()) > 0.7 and tp / max(int(pred.sum()), 1) > 0.7


def test_save_load_round_trip_is_exact(tree: dict, tmp_path) -> None:
    model = bx.Task2Box(dim=3, hidden=(32, 16)).fit(tree["x"], tree["o"], epochs=10)
    path = model.save(tmp_path / "t2b")
    assert path.suffix == ".safetensors" and (tmp_path / "t2b.json").exists()
    again = bx.Task2Box.load(tmp_path / "t2b.safetensors")
    for x, y in zip(model.boxes(tree["x"]), again.boxes(tree["x"]), strict=True):
        assert torch.equal(x, y)
    assert again.config()["dim"] == 3 and again.hidden == (32, 16)
    free = bx.Task2Box(dim=2, free=True).fit(None, tree["o"], epochs=3)
    free.save(tmp_path / "free.json")
    assert torch.equal(bx.Task2Box.load(tmp_path / "free").boxes()[1], free.boxes()[1])


def test_bad_inputs_raise_clear_errors(tree: dict) -> None:
    x, o = tree["x"], tree["o"]
    bad = x.clone()
    bad[3, 1] = math.nan
    with pytest.raises(ValueError, match="features.*NaN"):
        bx.Task2Box(hidden=(8,)).fit(bad, o, epochs=1)
    with pytest.raises(ValueError, match="overlap.*shape"):
        bx.Task2Box(hidden=(8,)).fit(x, o[:-1, :-1], epochs=1)
    with pytest.raises(ValueError, match=r"overlap.*\[0, 1\]"):
        bx.Task2Box(hidden=(8,)).fit(x, o * 2, epochs=1)
    with pytest.raises(ValueError, match="train_mask: no training pair"):
        bx.Task2Box(hidden=(8,)).fit(x, o, torch.eye(len(o), dtype=torch.bool), epochs=1)
    with pytest.raises(RuntimeError, match="fit"):
        bx.Task2Box().boxes(x)
    with pytest.raises(ValueError, match="dim"):
        bx.Task2Box(dim=0)


# ---------------------------------------------------------------------------------------------
# Evaluation and baselines


def test_hierarchy_f1_tunes_on_val_and_scores_perfect_and_reversed_predictions(tree: dict) -> None:
    a, val, test = tree["a"], tree["val"], tree["test"]
    perfect = bx.hierarchy_f1(tree["o"], a, val, test)  # true overlap: the rule recovers parents
    assert perfect.f1 == pytest.approx(1.0)
    reversed_ = bx.hierarchy_f1(tree["o"].T, a, val, test)  # wrong direction: nothing right
    assert reversed_.f1 == 0.0


def test_pair_split_partitions_off_diagonal_pairs_and_stratifies(tree: dict) -> None:
    n = len(tree["h"])
    tr, va, te = tree["train"], tree["val"], tree["test"]
    total = tr.int() + va.int() + te.int()
    assert torch.equal(total, (~torch.eye(n, dtype=torch.bool)).int())
    pos = int(tree["a"].sum())
    assert abs(int((tr & tree["a"]).sum()) - 0.8 * pos) <= 1


def test_novel_split_and_baselines_run_on_the_protocol(tree: dict) -> None:
    a = tree["a"]
    train, val, test = bx.novel_split(a, n_val=4, n_test=8, seed=0)
    assert len(set(train.tolist()) & set(test.tolist())) == 0
    assert all(bool(a[i].any()) for i in test.tolist())
    n = len(a)
    val_mask, test_mask = bx.novel_masks(n, train, val), bx.novel_masks(n, train, test)
    f = tree["f"]
    kl = bx.gaussian_kl_scores(f.mean, f.var)
    assert kl.diagonal().abs().max() < 1e-3  # KL(p||p) = 0
    assert bx.hierarchy_f1(kl, a, val_mask, test_mask, thresholds="quantile").f1 >= 0.0
    cos = bx.asymmetric_distance_scores(f.mean, "cosine")
    assert cos.shape == (n, n)
    clf = bx.PairClassifier("linear").fit(tree["x"], a.float(), tree["train"], epochs=3)
    probs = clf.scores(tree["x"])
    assert probs.shape == (n, n) and float(probs.min()) >= 0 and float(probs.max()) <= 1


def test_kl_matches_closed_form_for_one_pair() -> None:
    mean = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    var = torch.tensor([[1.0, 2.0], [4.0, 2.0]])
    kl01 = 0.5 * ((1 / 4 + 1 / 4 - 1 + math.log(4)) + (1 + 0 - 1 + 0))
    assert float(-bx.gaussian_kl_scores(mean, var)[0, 1]) == pytest.approx(kl01, rel=1e-5)


def test_spearman_agrees_with_scipy_and_skips_nan() -> None:
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(0)
    p, t = torch.rand(6, 6, generator=g), torch.rand(6, 6, generator=g)
    t[0, 3] = math.nan
    mask = ~torch.eye(6, dtype=torch.bool) & ~torch.isnan(t)
    ref = spearmanr(p[mask].numpy(), t[mask].numpy()).statistic
    assert bx.spearman(p, t) == pytest.approx(ref)


def test_taskonomy_csv_loads(repo_root, tmp_path) -> None:
    small = tmp_path / "aff.csv"
    small.write_text("source,target,affinity\nself,b,0.8\na,b,0.02\nb,a,0.1\na,a,0.5\n"
                     "b,b,0.6\n")
    aff = bx.load_taskonomy_affinities(small)
    assert aff.sources == ("a", "b", "self") and aff.targets == ("a", "b")
    assert math.isnan(float(aff.matrix[2, 0]))  # never measured
    tasks, mat = aff.square()
    assert tasks == ("a", "b") and torch.allclose(mat, torch.tensor([[0.5, 0.02], [0.1, 0.6]]))
    assert float(bx.affinity_targets(torch.tensor(0.02))) == pytest.approx(math.tanh(1.0))
    # the real table, shipped with the package (with its licence)
    aff = bx.load_taskonomy_affinities()
    assert len(aff.sources) == 27 and len(aff.targets) == 22
    tasks, mat = aff.square()
    assert len(tasks) == 22 and mat.shape == (22, 22)
    i, j = aff.sources.index("denoise"), aff.targets.index("autoencoder")
    assert float(aff.matrix[i, j]) == pytest.approx(0.226, abs=1e-3)
    assert bx.task_attributes(tasks).shape[0] == 22
    assert (bx.SHIPPED_AFFINITIES.parent / "LICENSE-taskonomy-code-MIT.txt").is_file()
    # byte-identical to the project's shared copy where that sits beside the repository
    shared = repo_root.parent / "shared" / "data" / "taskonomy" / "affinities_first_order.csv"
    if shared.exists():
        assert shared.read_bytes() == bx.SHIPPED_AFFINITIES.read_bytes()


def test_dataset_features_pool_embeddings_per_group() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(10, 3, 8, 8, generator=g)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 5))
    model.train()
    groups = [[0, 1, 2], [3, 4, 5, 6, 7, 8, 9]]
    feats = bx.dataset_features(model, images, groups=groups, batch_size=4)
    from visloupe.core.data import as_image_source

    inputs = as_image_source(images).tensors(range(10))  # the images as the model sees them
    with torch.no_grad():
        emb = model.eval()(inputs)
    model.train()
    assert torch.allclose(feats.mean[1], emb[3:].mean(0), atol=1e-5)
    assert torch.allclose(feats.var[0], emb[:3].var(0, unbiased=False), atol=1e-5)
    assert feats.mean_var.shape == (2, 10) and feats.counts.tolist() == [3, 7]
    mid = bx.dataset_features(model, images, layer="0", batch_size=3)
    with torch.no_grad():
        ref = model[0](inputs).mean(dim=(2, 3))
    assert torch.allclose(mid.mean[0], ref.mean(0), atol=1e-5)
    assert model.training and not model[0]._forward_hooks  # mode restored, hook removed
    with pytest.raises(ValueError, match="layer"):
        bx.dataset_features(model, images, layer="nope")


def test_taskonomy_loader_rejects_bad_csv(tmp_path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("a,b,c\n")
    with pytest.raises(ValueError, match="header"):
        bx.load_taskonomy_affinities(p)
    p.write_text("source,target,affinity\nx,y,zz\n")
    with pytest.raises(ValueError, match="not a number"):
        bx.load_taskonomy_affinities(p)


def test_dataset_features_pool_a_channels_last_layer_over_space() -> None:
    """A Swin/ConvNeXt-style ``(N, h, w, C)`` layer pools to ``(N, C)`` (mean over h, w), not
    to ``(N, h)`` as a channels-first mean would."""
    from helpers.nets import SwinLike

    model = SwinLike(dim=12, patch=4).eval()
    pixels = torch.randint(0, 256, (5, 16, 16, 3), dtype=torch.uint8)
    images = pixels.permute(0, 3, 1, 2).float() / 255  # what the default preprocess gives
    feats = bx.dataset_features(model, pixels.numpy(), layer="act", batch_size=2)
    with torch.no_grad():
        grid = model.act(model.mix(model.norm(model.to_last(model.patch(images)))))
    assert grid.shape == (5, 4, 4, 12) and feats.mean.shape == (1, 12)
    assert torch.allclose(feats.mean[0], grid.mean(dim=(1, 2)).mean(0), atol=1e-5)
