"""ABPC (Split IG authors' protocol), localisation scores and the max-sensitivity wrapper."""

import numpy as np
import pytest
import torch
from captum.attr import Saliency
from captum.metrics import sensitivity_max
from PIL import Image
from scipy import ndimage
from torch import nn
from visloupe.core.attribution import attribute
from visloupe.core.evaluation.faithfulness import abpc
from visloupe.core.evaluation.localisation import as_masks, energy_in_mask, pointing_game
from visloupe.core.evaluation.robustness import linf_perturbation, max_sensitivity


def _linear(seed: int = 0, c: int = 3, h: int = 8) -> tuple[nn.Module, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(c * h * h, 2)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(2, c * h * h, generator=g, dtype=torch.float64))
        model[1].bias.copy_(torch.tensor([0.3, -0.2]))
    return model, model[1].weight.view(2, c, h, h)


def _mlp(seed: int = 0, c: int = 3, h: int = 8) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(c * h * h, 16), nn.Tanh(), nn.Linear(16, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.double()


def _images(n: int, seed: int = 1, c: int = 3, h: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, h, generator=g, dtype=torch.float64)


def _abpc_reference(model, x, attr, target):
    """The brief's pseudo-code (splitig.md §4), one image, zero baseline, literally."""
    s = attr.sum(dim=0) if attr.dim() == 3 else attr
    v = torch.sort(s.flatten()).values
    n = v.numel()
    with torch.no_grad():
        fx = model(x[None])[0, target]
        fb = model(torch.zeros_like(x)[None])[0, target]
        total = 0.0
        for t in [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]:
            keep_top = (s > v[int(n * t)]) * x
            keep_bottom = (s < v[-int(n * t)]) * x
            nb = torch.clamp((model(keep_top[None])[0, target] - fb) / (fx - fb), 0, 1)
            nt = torch.clamp((model(keep_bottom[None])[0, target] - fb) / (fx - fb), 0, 1)
            total += max(float(nb - nt), 0.0)
    return total / 10


# --------------------------------------------------------------------------- ABPC


def test_abpc_matches_the_authors_protocol():
    model, x = _mlp(seed=2), _images(4, seed=3)
    g = torch.Generator().manual_seed(4)
    maps = torch.randn(4, 8, 8, generator=g, dtype=torch.float64)
    attr = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    for given in (maps, attr):
        res = abpc(model, x, given, batch_size=7)
        target = model(x).argmax(1)
        assert torch.equal(res.target, target)
        for i in range(4):
            ref = _abpc_reference(model, x[i], given[i], int(target[i]))
            assert res.scores[i].item() == pytest.approx(ref, abs=1e-12)
        assert res.mean == pytest.approx(float(res.scores.mean()))
        assert res.lerf.shape == res.morf.shape == (4, 9)
        assert torch.all((res.lerf >= 0) & (res.lerf <= 1))


def test_abpc_orders_exact_random_and_inverted_attributions():
    model, w = _linear(seed=5)
    with torch.no_grad():
        model[1].weight += 0.5  # mostly positive evidence: f(x) - f(0) > 0, as the protocol needs
    x = _images(3, seed=6)
    exact = (w[1] * x).detach()  # exact attribution of logit 1 against the zero baseline
    assert torch.all(exact.flatten(1).sum(1) > 5)
    res = abpc(model, x, exact, target=1)
    g = torch.Generator().manual_seed(7)
    perm = torch.randperm(exact[0].numel(), generator=g)
    shuffled = exact.flatten(1)[:, perm].view_as(exact)
    assert torch.all(res.scores > abpc(model, x, shuffled, target=1).scores)
    assert torch.all(res.scores > 0.3)
    inverted = abpc(model, x, -exact, target=1)
    assert torch.count_nonzero(inverted.scores) == 0
    # the curves: deleting the least relevant keeps the output, the most relevant kills it
    assert torch.all(res.lerf[:, 0] == 1) and torch.all(res.morf[:, -1] == 0)


def test_abpc_with_an_explainer_and_a_constant_model():
    model, x = _mlp(seed=8), _images(2, seed=9)
    by_name = abpc(model, x, "input_x_gradient", target=[0, 2])
    maps = attribute(model, x, [0, 2], "input_x_gradient")
    assert torch.equal(by_name.scores, abpc(model, x, maps, target=[0, 2]).scores)
    by_callable = abpc(model, x, lambda m, inp, t: maps.sum(1), target=[0, 2])
    assert torch.equal(by_name.scores, by_callable.scores)
    flat, _ = _linear()
    with torch.no_grad():
        flat[1].weight.zero_()
    res = abpc(flat, x, maps)
    assert torch.isnan(res.scores).all() and np.isnan(res.mean)


def test_abpc_bad_input():
    model, x = _mlp(), _images(2)
    with pytest.raises(ValueError, match="maps"):
        abpc(model, x, torch.rand(2, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="steps"):
        abpc(model, x, torch.rand(2, 8, 8), steps=1)
    with pytest.raises(TypeError, match="maps"):
        abpc(model, x, 3)
    with pytest.raises(ValueError, match="target"):
        abpc(model, x, torch.rand(2, 8, 8), target=5)


# --------------------------------------------------------------------------- localisation


def test_energy_in_mask_by_hand_and_mask_formats():
    maps = torch.tensor([[[1.0, 2.0], [-3.0, 4.0]], [[-1.0, -2.0], [-3.0, -4.0]]])
    masks = torch.tensor([[[True, False], [False, True]]] * 2)
    score = energy_in_mask(maps, masks)
    assert score[0].item() == pytest.approx(5 / 7)
    assert torch.isnan(score[1])  # no positive energy at all
    as_uint8 = masks.numpy().astype(np.uint8) * 255
    pil = [Image.fromarray(m) for m in as_uint8]
    for other in (as_uint8, pil, torch.from_numpy(as_uint8).float() / 255):
        torch.testing.assert_close(energy_in_mask(maps, other), score, equal_nan=True)
    assert torch.equal(as_masks(pil), masks)
    with pytest.raises(ValueError, match="masks"):
        energy_in_mask(maps, masks[:, :1])


def test_pointing_game_tolerance_and_scipy_reference():
    maps = torch.zeros(1, 20, 20)
    maps[0, 5, 5] = 1.0
    mask = torch.zeros(1, 20, 20, dtype=torch.bool)
    mask[0, 10:13, 2:9] = True  # nearest object pixel (10, 5): distance 5
    assert pointing_game(maps, mask, tolerance=4.9).hits.tolist() == [0.0]
    res = pointing_game(maps, mask, tolerance=5)
    assert res.hits.tolist() == [1.0] and res.points.tolist() == [[5, 5]]
    # random maps and blobs against scipy's Euclidean distance transform
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(30, 24, 24, generator=g)
    masks = torch.zeros(30, 24, 24, dtype=torch.bool)
    for i in range(30):
        r, c = torch.randint(0, 20, (2,), generator=g).tolist()
        masks[i, r:r + 4, c:c + 5] = True
    for tol in (0, 3, 7.5):
        res = pointing_game(maps, masks, tolerance=tol)
        expected = []
        for i in range(30):
            dist = ndimage.distance_transform_edt(~masks[i].numpy())
            r, c = np.unravel_index(int(maps[i].argmax()), (24, 24))
            expected.append(float(dist[r, c] <= tol))
        assert res.hits.tolist() == expected
        assert res.accuracy == pytest.approx(np.mean(expected))
    empty = pointing_game(maps[:2], torch.zeros(2, 24, 24, dtype=torch.bool))
    assert torch.isnan(empty.hits).all()
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(maps, masks, tolerance=-1)


# --------------------------------------------------------------------------- max-sensitivity


def test_max_sensitivity_agrees_with_captum_on_a_map_explainer():
    model, x = _mlp(seed=10), _images(3, seed=11)
    target = model(x).argmax(1)

    def full(m, inp, t):  # an (N, H, W) explainer, the contract every metric takes
        return Saliency(m).attribute(inp, target=t, abs=False).sum(1)

    ours = max_sensitivity(model, x, full, radius=0.1, n_samples=6, seed=3)
    def direct_fn(inp, target):  # Captum hands the clean input over as a 1-tuple
        attr = Saliency(model).attribute(inp, target=target, abs=False)
        return tuple(a.sum(1) for a in attr) if isinstance(attr, tuple) else attr.sum(1)

    direct = sensitivity_max(
        direct_fn, x,
        perturb_func=linf_perturbation(3), perturb_radius=0.1, n_perturb_samples=6,
        target=target,
    )
    torch.testing.assert_close(ours, direct.reshape(-1))
    assert torch.all(ours > 0)
    other_seed = max_sensitivity(model, x, full, radius=0.1, n_samples=6, seed=4)
    assert not torch.equal(ours, other_seed)
    assert torch.equal(ours, max_sensitivity(model, x, full, radius=0.1, n_samples=6, seed=3))


def test_max_sensitivity_of_map_explainers_by_hand():
    model, w = _linear(seed=12)
    w = w.detach()
    x = _images(2, seed=13)
    # saliency of a linear model never changes; input x gradient changes by w * delta
    assert torch.count_nonzero(max_sensitivity(model, x, "saliency", target=0)) == 0
    ours = max_sensitivity(model, x, "input_x_gradient", target=0, radius=0.05, n_samples=4,
                           seed=1)
    g = torch.Generator().manual_seed(1)
    noise = (2 * torch.rand((8, *x.shape[1:]), generator=g, dtype=x.dtype) - 1) * 0.05
    for i in range(2):
        base = (w[0] * x[i]).sum(0)
        worst = max(float((w[0] * noise[4 * i + k]).sum(0).norm() / base.norm())
                    for k in range(4))
        assert ours[i].item() == pytest.approx(worst, rel=1e-9)
