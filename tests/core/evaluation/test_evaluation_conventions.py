"""The papers' conventions, on planted cases with hand-computed values: Adebayo et al.'s cascade
(logits first, layers' own initialisers) and similarity measures, Yeh et al.'s infidelity with
its β rescaling, Captum's max-sensitivity (uniform L-inf ball, divided by ||Φ(x)||), the Split
IG authors' ABPC, and COSE's correctness filter with accept sets."""

from __future__ import annotations

import inspect
import math
import warnings

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from visloupe.core.evaluation import abpc
from visloupe.core.evaluation.cose import PixelData, compare_methods, cose, pixel_data
from visloupe.core.evaluation.reference import InputIntensityExplainer
from visloupe.core.evaluation.robustness import (
    infidelity,
    linf_perturbation,
    max_sensitivity,
)
from visloupe.core.evaluation.sanity import randomizable_layers, randomized_models
from visloupe.core.evaluation.similarity import spearman, ssim_similarity
from visloupe.core.models import reinitialize_layers

pytestmark = pytest.mark.usefixtures("one_thread")


class Fixed(nn.Module):
    """A float64 model with the given forward (a frozen parameter sets the dtype)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        self.dtype_anchor = nn.Parameter(torch.zeros((), dtype=torch.float64),
                                         requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + self.dtype_anchor


# --------------------------------------------------------------------------- sanity checks


def test_cascade_starts_at_the_logits_and_uses_each_layers_own_init() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(5.0)  # far outside torch's default init bounds 1/sqrt(fan_in)
    assert randomizable_layers(model) == ["2", "0"]

    def fresh(m: nn.Module, name: str) -> bool:  # reset by nn.Linear.reset_parameters()
        layer = m.get_submodule(name)
        bound = 1 / math.sqrt(layer.in_features)
        return all(bool((p.abs() <= bound).all()) for p in layer.parameters())

    cascade = {step: m for step, _, m in randomized_models(model, mode="cascading")}
    assert not fresh(cascade[0], "2") and not fresh(cascade[0], "0")
    assert fresh(cascade[1], "2") and not fresh(cascade[1], "0")  # logits first
    assert fresh(cascade[2], "2") and fresh(cascade[2], "0")      # cumulative
    independent = {step: m for step, _, m in randomized_models(model, mode="independent")}
    assert fresh(independent[2], "0") and not fresh(independent[2], "2")
    # a layer gets the same new weights in both modes and from reinitialize_layers
    torch.testing.assert_close(independent[1][2].weight, cascade[1][2].weight)
    torch.testing.assert_close(reinitialize_layers(model, ["2"])[2].weight, cascade[1][2].weight)


def test_rank_correlations_with_and_without_absolute_values() -> None:
    a, b = np.array([1.0, -2.0, 3.0]), np.array([-1.0, 2.0, 3.0])
    # signed ranks (2, 1, 3) vs (1, 2, 3): 1 - 6 * 2 / (3 * 8) = 0.5; |a| and |b| rank alike
    assert spearman(a, b)[0][0] == pytest.approx(0.5)
    assert spearman(a, b, absolute=True)[0][0] == pytest.approx(1.0)


def test_ssim_compares_max_scaled_absolute_maps() -> None:
    g = np.random.default_rng(0)
    a = g.normal(size=(1, 8, 8))
    # |map| / max|map|: a sign flip and a positive scale are the same map
    assert ssim_similarity(a, -3.0 * a)[0][0] == pytest.approx(1.0)
    # ... but an offset is not (min-max scaling, the notebooks' SSIM input, would give 1)
    pos = np.abs(a)
    assert ssim_similarity(pos, pos + 1.0)[0][0] < 0.9


# --------------------------------------------------------------------------- infidelity


def _two_pixel_model() -> nn.Module:
    def f(x: torch.Tensor) -> torch.Tensor:  # f = x1² + 2 x2
        v = x.flatten(1)
        return (v[:, 0] ** 2 + 2 * v[:, 1])[:, None]
    return Fixed(f)


def _fixed_perturbations(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Perturbations I1 = (0.5, 0), I2 = (0, 0.5), one per expanded row; returns (I, x - I)."""
    x = inputs[0] if isinstance(inputs, tuple) else inputs
    table = torch.tensor([[0.5, 0.0], [0.0, 0.5]], dtype=x.dtype)
    i = table[torch.arange(x.shape[0]) % 2].view_as(x)
    return i, x - i


def test_infidelity_by_hand_and_yeh_beta_rescaling() -> None:
    model, x = _two_pixel_model(), torch.ones(1, 1, 1, 2, dtype=torch.float64)
    phi = torch.ones(1, 1, 2, dtype=torch.float64)
    # f(x) = 3; f(x - I1) = 2.25, f(x - I2) = 2: Δf = (0.75, 1); I^T Φ = (0.5, 0.5)
    raw = infidelity(model, x, phi, 0, perturbation=_fixed_perturbations, n_samples=2,
                     normalize=False)
    assert float(raw[0]) == pytest.approx(((0.5 - 0.75) ** 2 + (0.5 - 1.0) ** 2) / 2)
    # β = mean(IΦ Δf) / mean((IΦ)²) = 0.4375 / 0.25 = 1.75, so β IΦ = 0.875 (the default)
    scaled = infidelity(model, x, phi, 0, perturbation=_fixed_perturbations, n_samples=2)
    assert float(scaled[0]) == pytest.approx(((0.875 - 0.75) ** 2 + (0.875 - 1.0) ** 2) / 2)
    assert inspect.signature(infidelity).parameters["normalize"].default is True


# --------------------------------------------------------------------------- max-sensitivity


def test_max_sensitivity_uniform_linf_ball_relative_to_the_map() -> None:
    r = 0.1
    draws = linf_perturbation(seed=3)(torch.zeros(20000), r)
    assert float(draws.abs().max()) <= r and float(draws.min()) < -0.99 * r
    assert float(draws.max()) > 0.99 * r
    assert float(draws.std()) == pytest.approx(r / math.sqrt(3), rel=0.02)  # uniform, not normal
    model, x = _two_pixel_model(), torch.full((1, 1, 1, 1), 2.0, dtype=torch.float64)
    model.fn = lambda v: v.flatten(1)  # one pixel, one class

    def identity_map(m, inputs, target):
        return inputs[:, 0]

    s = float(max_sensitivity(model, x, identity_map, 0, radius=r, n_samples=200)[0])
    # max over draws of |δ| / |Φ(x)| = max |δ| / 2 <= r / 2; the mean would be ~r / 4, an
    # undivided norm ~r, a Gaussian of std r would exceed r / 2
    assert 0.97 * r / 2 < s <= r / 2
    assert inspect.signature(max_sensitivity).parameters["radius"].default == 0.02


# --------------------------------------------------------------------------- ABPC


def test_abpc_closed_form_on_a_linear_model() -> None:
    w = torch.arange(1.0, 11.0, dtype=torch.float64)
    model = Fixed(lambda x: (x.flatten(1) * w).sum(1, keepdim=True))
    x = torch.ones(1, 1, 2, 5, dtype=torch.float64)
    res = abpc(model, x, w.view(1, 2, 5), 0)
    # t = i/10: LeRF keeps s > v[i] (deletes the i + 1 lowest, the authors' indexing), MoRF keeps
    # s < v[10 - i] (deletes the i highest); f(x) = 55, f(0) = 0
    lerf = [(55 - (i + 1) * (i + 2) / 2) / 55 for i in range(1, 10)]
    morf = [((10 - i) * (11 - i) / 2) / 55 for i in range(1, 10)]
    torch.testing.assert_close(res.lerf[0], torch.tensor(lerf, dtype=torch.float64))
    torch.testing.assert_close(res.morf[0], torch.tensor(morf, dtype=torch.float64))
    assert float(res.scores[0]) == pytest.approx(112 / 550)  # sum of max(., 0) / 10


# --------------------------------------------------------------------------- COSE correctness


def _photos() -> datasets.Dataset:
    g = np.random.default_rng(1)
    images = [Image.fromarray(g.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(3)]
    features = datasets.Features({
        "image": datasets.Image(), "label": datasets.Value("int64"),
        "imagenet_accept": datasets.Sequence(datasets.Value("int64"))})
    # image 0: label 0, also correct as 1 (tabby / Egyptian cat); image 1: only 0; image 2: none
    return datasets.Dataset.from_dict({"image": images, "label": [0, 0, -1],
                                       "imagenet_accept": [[0, 1], [0], []]}, features=features)


def _always_class_one() -> nn.Module:
    return Fixed(lambda x: torch.tensor([0.0, 1.0, 0.0], dtype=x.dtype).expand(x.shape[0], 3)
                 + 0 * x.flatten(1).sum(1, keepdim=True))


def test_accept_sets_are_read_and_any_class_in_the_set_is_correct() -> None:
    ds = _photos()
    px = pixel_data(ds)
    assert px.accept == ((0, 1), (0,), ())
    pred = torch.tensor([1, 1, 1])
    assert px.accepted(pred).tolist() == [True, False, False]
    assert pixel_data(ds, accept=False).accept is None
    plain = PixelData(px.pixels, px.labels, px.indices, px.normalize)
    assert plain.accepted(torch.tensor([0, 1, 0])).tolist() == [True, False, False]
    given = pixel_data(ds, accept=[[2], [1], [1]])  # explicit sets, the label still counts
    assert given.accepted(torch.tensor([2, 0, 1])).tolist() == [True, True, True]


def test_cose_keeps_images_predicted_as_any_accepted_class() -> None:
    model, ds = _always_class_one(), _photos()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no sensitivity pairs: NaN side
        r = cose(model, ds, InputIntensityExplainer(), transforms=["Rotate", "Equalize"],
                 magnitudes_per_transform=1)
    assert (r.n_images, r.n_dropped) == (1, 2)
    t = r.pairs
    assert set(t.image) == {0} and (t.label == 0).all() and (t.prediction == 1).all()
    assert t.unchanged.all() and r.n_consistency == len(t)  # class 1 is still a correct class
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        labels_only = cose(model, pixel_data(ds, accept=False), InputIntensityExplainer(),
                           transforms=["Rotate"], magnitudes_per_transform=1)
    assert (labels_only.n_images, labels_only.n_dropped) == (0, 3)
    table = compare_methods(model, ds, {"intensity": InputIntensityExplainer()},
                            metrics=("max_sensitivity",))
    assert math.isfinite(float(table.max_sensitivity[0]))  # image 0 counts as correct
