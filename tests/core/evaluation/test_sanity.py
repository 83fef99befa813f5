"""Sanity checks for saliency (Adebayo et al. 2018; Kokhlikyan et al., arXiv:2106.07475):
similarity measures, randomisation bookkeeping, the input-multiplier effect, text inputs, the
linear-model identities of the attribution methods and metrics, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, rankdata, spearmanr
from skimage.feature import hog
from skimage.metrics import structural_similarity
from torch import nn
from visloupe.core.attribution import attribute
from visloupe.core.evaluation import infidelity, max_sensitivity
from visloupe.core.evaluation.robustness import multiplied_perturbation
from visloupe.core.evaluation.sanity import (
    input_multiplier_summary,
    randomizable_layers,
    randomization_check,
    randomized_models,
    run_randomization,
)
from visloupe.core.evaluation.similarity import (
    average_ranks,
    hog_similarity,
    spearman,
    ssim_similarity,
)
from visloupe.core.models import SmallResNet, TextCNN

pytestmark = pytest.mark.usefixtures("one_thread")

# ----------------------------------------------------------------------------- fixtures


def _cnn(seed: int = 0) -> nn.Module:
    """A small ResNet whose BatchNorm layers look trained (a fresh BatchNorm equals its own
    re-initialisation, so it could not show a change)."""
    model = SmallResNet(3, 5, (4, 8))
    g = torch.Generator().manual_seed(seed)
    model.init_weights(g)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=g)
                module.bias.normal_(0, 0.1, generator=g)
                module.running_mean.normal_(0, 0.1, generator=g)
                module.running_var.uniform_(0.5, 1.5, generator=g)
    return model.eval()


def _images(n: int = 8, size: int = 16, seed: int = 1) -> torch.Tensor:
    """High-contrast inputs: sparse bright pixels on black (the input multiplier's best case)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g) * (torch.rand(n, 1, size, size,
                                                                    generator=g) < 0.3)


def _text_model(embed_dim: int = 16, seed: int = 0) -> TextCNN:
    model = TextCNN(40, 2, embed_dim=embed_dim, kernel_sizes=(2, 3), num_filters=6)
    model.init_weights(torch.Generator().manual_seed(seed))
    return model.eval()


def _token_ids(n: int = 6, length: int = 10, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 40, (n, length), generator=g)
    ids[:, length - 3:] = 0  # right padding
    return ids


# ----------------------------------------------------------------------------- similarity


def test_average_ranks_equal_scipy_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        v = rng.integers(0, 6, size=40).astype(float)  # many ties
        np.testing.assert_array_equal(average_ranks(v), rankdata(v, method="average"))


def test_spearman_equals_scipy_including_ties_and_abs() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(-4, 5, size=(6, 5, 5)).astype(float)
    b = a + rng.integers(-3, 4, size=a.shape)
    ours, reasons = spearman(a, b)
    ours_abs, _ = spearman(a, b, absolute=True)
    for i in range(6):
        ref = spearmanr(a[i].ravel(), b[i].ravel()).statistic
        ref_abs = spearmanr(np.abs(a[i]).ravel(), np.abs(b[i]).ravel()).statistic
        assert ours[i] == pytest.approx(ref, abs=1e-12)
        assert ours_abs[i] == pytest.approx(ref_abs, abs=1e-12)
    assert reasons == [""] * 6


def test_spearman_identities() -> None:
    v = np.linspace(-2, 3, 17)
    assert spearman(v, v ** 3)[0][0] == pytest.approx(1.0)
    assert spearman(v, -v)[0][0] == pytest.approx(-1.0)
    assert spearman(v, -v, absolute=True)[0][0] == pytest.approx(1.0)
    tied = np.array([1.0, 1.0, 2.0, 2.0, 3.0])
    assert spearman(tied, tied)[0][0] == pytest.approx(1.0)


def test_spearman_mask_and_nan_reasons() -> None:
    a = np.array([[1.0, 2.0, 3.0, 9.0], [1.0, 1.0, 1.0, 1.0], [np.nan, 1.0, 2.0, 3.0],
                  [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    b = np.array([[1.0, 2.0, 3.0, -50.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0],
                  [4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]],
                    dtype=bool)
    values, reasons = spearman(a, b, mask=mask)
    assert values[0] == pytest.approx(1.0)  # the masked-out last position would break it
    assert np.isnan(values[1:]).all()
    assert "constant" in reasons[1]
    assert "non-finite" in reasons[2]
    assert "all padding" in reasons[3]
    assert "fewer than two" in reasons[4]


def test_ssim_similarity_matches_skimage_on_normalised_abs_maps() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(3, 12, 12)), rng.normal(size=(3, 12, 12))
    ours, _ = ssim_similarity(a, b)
    for i in range(3):
        ua, ub = np.abs(a[i]) / np.abs(a[i]).max(), np.abs(b[i]) / np.abs(b[i]).max()
        ref = structural_similarity(ua, ub, win_size=5, data_range=1.0)
        assert ours[i] == pytest.approx(ref, abs=1e-10)
    same, _ = ssim_similarity(a, -a)  # absolute values: a sign flip is the same map
    np.testing.assert_allclose(same, 1.0)


def test_hog_similarity_is_pearson_of_skimage_hog() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random((2, 16, 16)), rng.random((2, 16, 16))
    ours, reasons = hog_similarity(a, b)
    for i in range(2):
        kw = dict(orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2),
                  block_norm="L2-Hys")
        ha, hb = hog(a[i] / a[i].max(), **kw), hog(b[i] / b[i].max(), **kw)
        assert ours[i] == pytest.approx(pearsonr(ha, hb).statistic, abs=1e-10)
    assert hog_similarity(a, a)[0] == pytest.approx([1.0, 1.0])
    flat, why = hog_similarity(np.ones((1, 16, 16)), a[:1])
    assert np.isnan(flat[0]) and "flat" in why[0]


# ----------------------------------------------------------------------------- linear identities


class _Linear(nn.Module):
    def __init__(self, c: int = 1, size: int = 4, k: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(c * size * size, k)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(k, c * size * size,
                                             generator=torch.Generator().manual_seed(0)))
            self.fc.bias.fill_(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_linear_model_identities_for_ig_ixg_deeplift() -> None:
    model = _Linear(c=2).eval()
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(5))
    w = model.fc.weight[1].view(2, 4, 4)
    expected = x * w
    for method, kw in (("input_x_gradient", {}), ("deeplift", {}),
                       ("integrated_gradients", {"n_steps": 20})):
        attr = attribute(model, x, 1, method, **kw)
        torch.testing.assert_close(attr, expected, atol=1e-5, rtol=1e-5, msg=method)
    ig = attribute(model, x, 1, "integrated_gradients", n_steps=20)
    with torch.no_grad():
        gap = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(ig.sum(dim=(1, 2, 3)), gap, atol=1e-4, rtol=1e-5)


def test_linear_model_identities_for_infidelity_and_sensitivity() -> None:
    model = _Linear(c=1).eval()
    x = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(6))
    raw = infidelity(model, x, "saliency", 2, normalize=False, n_samples=8)
    torch.testing.assert_close(raw, torch.zeros(4), atol=1e-8, rtol=0)
    assert max_sensitivity(model, x, "saliency", 2, n_samples=4).abs().max() < 1e-6
    ixg = attribute(model, x, 2, "input_x_gradient")
    right = infidelity(model, x, ixg, 2, perturbation=multiplied_perturbation(0.1, seed=1),
                       normalize=False, n_samples=8)
    torch.testing.assert_close(right, torch.zeros(4), atol=1e-8, rtol=0)
    # the raw perturbation does not fit a map multiplied by the input
    wrong = infidelity(model, x, ixg, 2, normalize=False, n_samples=8)
    assert (wrong > 1e-3).all()
    # normalisation rescales by the optimal beta, so it can only lower the score
    norm = infidelity(model, x, ixg, 2, normalize=True, n_samples=8)
    assert (norm <= wrong + 1e-9).all()


# ----------------------------------------------------------------------------- bookkeeping


def _module_states(model: nn.Module, names: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    return {n: {k: v.clone() for k, v in model.get_submodule(n).state_dict().items()}
            for n in names}


def _differs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def test_default_layers_are_outermost_first_in_execution_order() -> None:
    model = _cnn()
    names = randomizable_layers(model, _images(1))
    assert names[0] == "head" and names[-1] == "features.0.0"
    assert "features.0.2" not in names  # ReLU: no parameters
    assert set(names) == {n for n, m in model.named_modules()
                          if n and any(True for _ in m.parameters(recurse=False))}


class _AuxHead(nn.Module):
    """A conv feeding the logits and an auxiliary head run on every forward and dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.aux = nn.Linear(4, 2)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.conv(x).mean(dim=(2, 3))
        self.aux(pooled)  # e.g. a deep-supervision head whose output is unused at test time
        return self.head(pooled)


def test_layers_that_do_not_reach_the_logits_are_left_out(caplog) -> None:
    """Randomising ``aux`` changes no logit, so its step would always read "unchanged"."""
    model = _AuxHead()
    with caplog.at_level("WARNING", logger="visloupe.core.evaluation.sanity"):
        names = randomizable_layers(model, _images(1))
    assert names == ["head", "conv"] and "['aux']" in caplog.text
    frozen = _AuxHead().requires_grad_(False)  # frozen weights: the input's graph still tells
    assert randomizable_layers(frozen, _images(1)) == ["head", "conv"]


class _DetachedProbe(nn.Module):
    """A linear probe on a detached backbone: no gradient path, yet the backbone sets the
    logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)).detach())


class _Router(nn.Module):
    """An argmax router picks one of two experts: the router has no gradient path either."""

    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(3, 2)
        self.experts = nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.mean(dim=(2, 3))
        choice = self.router(v).argmax(dim=1)
        both = torch.stack([e(v) for e in self.experts], dim=1)
        return both[torch.arange(v.shape[0]), choice]


def test_layers_without_a_gradient_path_that_set_the_logits_are_kept() -> None:
    torch.manual_seed(0)
    assert randomizable_layers(_DetachedProbe(), _images(1)) == ["head", "conv"]
    torch.manual_seed(0)
    assert "router" in randomizable_layers(_Router(), _images(1))
    assert randomizable_layers(_AuxHead().double(), _images(1)) == ["head", "conv"]  # float64


def test_cascading_changes_exactly_the_top_k_layers() -> None:
    model = _cnn()
    names = randomizable_layers(model, _images(1))
    before = _module_states(model, names)
    rng = torch.get_rng_state()
    for step, layer, copy in randomized_models(model, names, "cascading", seed=3):
        now = _module_states(copy, names)
        changed = [n for n in names if _differs(before[n], now[n])]
        assert changed == names[:step], (step, layer)
        assert layer == ("(original)" if step == 0 else names[step - 1])
    assert torch.equal(torch.get_rng_state(), rng)  # global RNG untouched
    after = _module_states(model, names)
    assert all(not _differs(before[n], after[n]) for n in names)  # caller's model unchanged


def test_independent_changes_exactly_one_layer_with_the_cascade_weights() -> None:
    model = _cnn()
    names = randomizable_layers(model, _images(1))
    before = _module_states(model, names)
    cascade = {layer: _module_states(m, names) for _, layer, m in
               randomized_models(model, names, "cascading", seed=3)}
    for step, layer, copy in randomized_models(model, names, "independent", seed=3):
        now = _module_states(copy, names)
        changed = [n for n in names if _differs(before[n], now[n])]
        assert changed == ([] if step == 0 else [layer])
        if step:  # same seed -> the same new weights as in the cascade
            assert not _differs(now[layer], cascade[layer][layer])


def test_container_layers_and_bad_layers() -> None:
    model = _cnn()
    x = _images(2)
    steps = list(randomized_models(model, ["head", "features.1"], "cascading"))
    block = [n for n, _ in model.get_submodule("features.1").named_modules()
             if any(True for _ in _.parameters(recurse=False))]
    last = _module_states(steps[-1][2], [f"features.1.{b}" for b in block])
    orig = _module_states(model, [f"features.1.{b}" for b in block])
    assert all(_differs(orig[k], last[k]) for k in orig)
    with pytest.raises(ValueError, match="no module named 'haed'.*did you mean"):
        run_randomization(model, x, "saliency", layers=["haed"])
    with pytest.raises(ValueError, match="no parameters"):
        run_randomization(model, x, "saliency", layers=["features.0.2"])
    with pytest.raises(ValueError, match="overlap"):
        run_randomization(model, x, "saliency", layers=["features.1", "features.1.conv1"])
    with pytest.raises(ValueError, match="mode"):
        run_randomization(model, x, "saliency", mode="cascade")
    with pytest.raises(ValueError, match="measures"):
        run_randomization(model, x, "saliency", measures=["pearson"])


# ----------------------------------------------------------------------------- the check


def test_randomization_check_table_and_input_multiplier_effect() -> None:
    model = _cnn()
    x = _images(10)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    layers = ["head", "features.1", "features.0"]  # every parameter, in three steps
    result = run_randomization(model, x, ["saliency", "input_x_gradient"], layers=layers,
                               measures=["spearman_abs", "spearman", "ssim"], seed=0)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    table = result.to_dataframe()
    assert {"step", "layer", "explainer", "measure", "similarity", "std", "count", "n_nan",
            "reason"} <= set(table.columns)
    first = table[table.step == 0]
    np.testing.assert_allclose(first.similarity, 1.0)
    assert (first["count"] == 10).all()
    last = table[table.step == len(result.layers)].set_index(["explainer", "measure"])
    ixg = last.loc[("input_x_gradient", "spearman_abs"), "similarity"]
    grad = last.loc[("saliency", "spearman_abs"), "similarity"]
    assert ixg - grad > 0.2  # brief §7.5: the input multiplier keeps the input's structure
    # signed: ~0 where the input is non-zero (zero pixels tie at 0 in both maps)
    maps = result.maps["input_x_gradient"]
    signed, _ = spearman(maps[0], maps[-1], mask=x.abs().sum(dim=1) > 0)
    assert abs(signed.mean()) < 0.1
    per_input = result.to_dataframe(aggregate=False)
    assert len(per_input) == 10 * 2 * 3 * 4
    grouped = per_input.groupby(["step", "explainer", "measure"]).similarity.mean()
    assert grouped[(1, "saliency", "ssim")] == pytest.approx(
        table.set_index(["step", "explainer", "measure"]).similarity[(1, "saliency", "ssim")])
    summary = input_multiplier_summary(result).set_index("explainer")
    assert summary.loc["input_x_gradient", "multiplies_by_input"]
    assert not summary.loc["saliency", "multiplies_by_input"]
    assert summary.loc["input_x_gradient", "similarity"] == pytest.approx(ixg)
    assert summary.loc["input_x_gradient", "input_structure"] > 0.8
    assert abs(summary.loc["saliency", "input_structure"]) < 0.3
    df = randomization_check(model, x[:3], "saliency", mode="independent",
                             layers=["head", "features.0.0"], measures=["hog"])
    assert list(df.step) == [0, 1, 2] and list(df.layer) == ["(original)", "head",
                                                             "features.0.0"]


def test_failing_and_nan_explainers_give_nan_with_reason() -> None:
    model = _cnn()
    x = _images(3)
    original_head = model.head.weight.detach().clone()

    def fragile(m: nn.Module, inputs: torch.Tensor, target) -> torch.Tensor:
        if not torch.equal(m.head.weight, original_head):
            raise RuntimeError("weights changed")
        return inputs.sum(dim=1)

    def nan_maps(m: nn.Module, inputs: torch.Tensor, target) -> torch.Tensor:
        out = inputs.sum(dim=1)
        return out if torch.equal(m.head.weight, original_head) else out * float("nan")

    df = randomization_check(model, x, {"fragile": fragile, "nan": nan_maps},
                             layers=["head"], measures=["spearman"])
    row = df[(df.step == 1)].set_index("explainer")
    assert np.isnan(row.loc["fragile", "similarity"]) and row.loc["fragile", "n_nan"] == 3
    assert "explainer failed: RuntimeError: weights changed" in row.loc["fragile", "reason"]
    assert "non-finite" in row.loc["nan", "reason"]

    def broken(m, inputs, target):
        raise RuntimeError("always")

    with pytest.raises(RuntimeError, match="always"):  # fails on the trained model: an error
        randomization_check(model, x, broken, layers=["head"])


def test_text_randomization_excludes_padding_and_handles_all_padding() -> None:
    model = _text_model()
    ids = _token_ids()
    ids[2] = 0  # an all-padding input
    result = run_randomization(model, ids, ["saliency", "input_x_gradient",
                                            "integrated_gradients"],
                               layers=["head", "convs.1", "convs.0", "embedding"])
    assert result.modality == "text" and result.measures == ("spearman_abs", "spearman")
    per = result.to_dataframe(aggregate=False)
    bad = per[per.input == 2]
    assert bad.similarity.isna().all() and bad.reason.str.contains("all padding").all()
    # the similarity is Spearman over the non-padding tokens only
    maps = result.maps["input_x_gradient"]
    keep = ids[0] != 0
    ref = spearmanr(maps[0, 0][keep].abs(), maps[2, 0][keep].abs()).statistic
    got = per[(per.input == 0) & (per.step == 2) & (per.explainer == "input_x_gradient")
              & (per.measure == "spearman_abs")].similarity.item()
    assert got == pytest.approx(ref, abs=1e-10)
    assert (maps[:, :, ~keep] == 0).all()  # padding scores are exactly 0
    assert result.multiplies_by_input == {"saliency": False, "input_x_gradient": True,
                                          "integrated_gradients": True}
    with pytest.raises(ValueError, match="SSIM and HOG"):
        run_randomization(model, ids, "saliency", measures=["ssim"])
    with pytest.raises(ValueError, match="text methods"):
        run_randomization(model, ids, "deeplift")


def test_text_input_multiplier_follows_embedding_norms() -> None:
    """Brief §7.5: under a random model, |e_t · g_t| tracks ‖e_t‖ for input x gradient."""
    model = _text_model(embed_dim=64)
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(1, 40, (12, 16), generator=g)
    with torch.no_grad():  # spread the embedding norms so the effect is visible
        scale = torch.linspace(0.2, 3.0, 40)[torch.randperm(40, generator=g)]
        model.embedding.weight.mul_(scale[:, None])
    result = run_randomization(model, ids, ["saliency", "input_x_gradient"],
                               layers=["head", "convs.1", "convs.0"])
    summary = input_multiplier_summary(result).set_index("explainer")
    assert summary.loc["input_x_gradient", "input_structure"] > 0.5
    assert summary.loc["input_x_gradient", "input_structure"] > \
        summary.loc["saliency", "input_structure"] + 0.3


def test_bad_inputs_to_the_layer_search_are_named() -> None:
    """Ids past the vocabulary and integer images: clear errors naming the inputs, not an
    IndexError from the embedding or a dtype mismatch from the first conv."""
    text = TextCNN(vocab_size=20, num_classes=2)
    with pytest.raises(ValueError, match=r"inputs: token ids must lie in the model's "
                                         r"vocabulary \(20 rows in the embedding\)"):
        randomizable_layers(text, torch.tensor([[1, 2, 25, 3, 4]]))
    with pytest.raises(TypeError, match="integer images must be preprocessed"):
        randomizable_layers(_cnn(), torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
