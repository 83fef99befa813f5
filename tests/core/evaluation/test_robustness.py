"""Infidelity / max-sensitivity wrappers: planted linear models with known answers, equality with
direct ``captum.metrics`` calls, (N, H, W) maps and Grad-CAM on the built-in CNN."""

from __future__ import annotations

import pytest
import torch
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max
from torch import nn
from visloupe.core import data, models
from visloupe.core.attribution import text_explainer
from visloupe.core.evaluation.reference import ConstantExplainer, InputIntensityExplainer
from visloupe.core.evaluation.robustness import (
    infidelity,
    max_sensitivity,
    noise_perturbation,
    text_infidelity,
)


def _linear(seed: int = 0, same_channels: bool = True) -> tuple[nn.Module, torch.Tensor]:
    """A linear classifier on (3, 8, 8) inputs; with ``same_channels`` its weight is equal across
    channels, so an (H, W) map expanded over channels is its exact gradient."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(4, 1, 8, 8, generator=g)
    w = w.expand(4, 3, 8, 8) if same_channels else torch.randn(4, 3, 8, 8, generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 4))
    with torch.no_grad():
        model[1].weight.copy_(w.reshape(4, -1))
        model[1].bias.zero_()
    return model.eval(), w


def _x(n: int = 5) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def test_exact_gradient_map_has_zero_infidelity() -> None:
    model, w = _linear()
    x = _x()
    target = torch.tensor([0, 1, 2, 3, 0])
    maps = w[target, 0]  # (N, H, W), expanded over channels inside the wrapper
    for normalize in (False, True):
        inf = infidelity(model, x, maps, target, normalize=normalize, n_samples=8)
        assert inf.shape == (5,)
        torch.testing.assert_close(inf, torch.zeros(5), atol=1e-5, rtol=0)  # float32
    noisy = maps + torch.randn(maps.shape, generator=torch.Generator().manual_seed(2))
    assert (infidelity(model, x, noisy, target, normalize=False) > 1e-2).all()
    # normalize=True makes the score blind to the map's scale
    torch.testing.assert_close(infidelity(model, x, 5 * noisy, target),
                               infidelity(model, x, noisy, target))


def test_infidelity_equals_a_direct_captum_call() -> None:
    model, _ = _linear(same_channels=False)
    x = _x()
    attr = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    ours = infidelity(model, x, attr, 2, radius=0.2, n_samples=6, normalize=False, seed=4)
    ref = captum_infidelity(model, noise_perturbation("gaussian", 0.2, 4), x, attr,
                            target=torch.full((5,), 2), n_perturb_samples=6)
    torch.testing.assert_close(ours, ref)
    chunked = infidelity(model, x, attr, 2, radius=0.2, n_samples=6, normalize=False, seed=4,
                         batch_size=5)
    torch.testing.assert_close(chunked, ours)


def test_max_sensitivity_planted_values() -> None:
    model, _ = _linear()
    x = _x()
    # saliency of a linear model is its weight: perturbations change nothing
    torch.testing.assert_close(max_sensitivity(model, x, "saliency"), torch.zeros(5))
    torch.testing.assert_close(max_sensitivity(model, x, ConstantExplainer()), torch.zeros(5))
    # input intensity: equals Captum's own computation with the same perturbations
    ours = max_sensitivity(model, x, InputIntensityExplainer(), radius=0.1, n_samples=5, seed=7)
    generator = torch.Generator().manual_seed(7)

    def perturb(inp, r):
        batch = inp[0] if isinstance(inp, tuple) else inp
        return batch + (2 * torch.rand(batch.shape, generator=generator) - 1) * r

    def expl(inp, target):
        if isinstance(inp, tuple):
            return (inp[0].mean(1),)
        return inp.mean(1)

    ref = sensitivity_max(expl, x, perturb_func=perturb, perturb_radius=0.1, n_perturb_samples=5,
                          target=torch.zeros(5, dtype=torch.long))
    torch.testing.assert_close(ours, ref)
    assert (ours > 0).all()
    bound = 0.1 * 8 / x.mean(1).flatten(1).norm(dim=1)  # ||mean_c δ||_F <= r·sqrt(HW)
    assert (ours <= bound + 1e-6).all()


def test_gradcam_maps_on_the_builtin_cnn() -> None:
    model, pre = models.pretrained("shapes-cnn")
    ds = data.load_builtin("shapes", split="test")
    x = pre.batch([ds[i]["image"] for i in range(4)])
    inf = infidelity(model, x, "grad_cam", n_samples=4)
    sens = max_sensitivity(model, x, "grad_cam", n_samples=3)
    assert inf.shape == sens.shape == (4,)
    assert torch.isfinite(inf).all() and (inf >= 0).all()
    assert torch.isfinite(sens).all() and (sens >= 0).all()
    again = max_sensitivity(model, x, "grad_cam", n_samples=3)
    torch.testing.assert_close(sens, again)  # seeded
    assert not model.training


def test_bad_input() -> None:
    model, _ = _linear()
    x = _x()
    with pytest.raises(ValueError, match="attributions"):
        infidelity(model, x, torch.ones(5, 7, 7))
    with pytest.raises(ValueError, match="n_samples"):
        infidelity(model, x, "saliency", n_samples=0)
    with pytest.raises(ValueError, match="radius"):
        max_sensitivity(model, x, "saliency", radius=-1.0)
    with pytest.raises(ValueError, match="perturbation"):
        infidelity(model, x, "saliency", perturbation="salt")
    with pytest.raises(ValueError, match="NaN"):
        max_sensitivity(model, x, lambda m, i, t: i.mean(1) * float("nan"))


# ----------------------------------------------------------------------------- text


class _LinearText(nn.Module):
    """f(ids) = Σ_t w · e_t with 1-D embeddings: token scores are exact attributions."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10, 1, padding_idx=0)
        self.head = nn.Linear(1, 2)
        with torch.no_grad():  # fixed weights: no dependence on the global RNG
            self.embedding.weight.copy_(torch.linspace(-2.0, 2.5, 10)[:, None])
            self.embedding.weight[0] = 0.0
            self.head.weight.copy_(torch.tensor([[0.5], [-1.5]]))
            self.head.bias.copy_(torch.tensor([0.1, 0.2]))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(ids).sum(dim=1))


def test_text_identities_on_a_linear_token_model() -> None:
    model = _LinearText().eval()
    ids = torch.tensor([[3, 4, 5, 0], [7, 2, 0, 0]])
    w = model.head.weight[1, 0]
    emb = model.embedding(ids)[..., 0].detach()
    grad = text_explainer("saliency")(model, ids, 1)
    ixg = text_explainer("input_x_gradient")(model, ids, 1)
    ig = text_explainer("integrated_gradients", n_steps=8)(model, ids, 1)
    mask = ids != 0
    torch.testing.assert_close(grad, torch.where(mask, w, 0.0).expand_as(grad).detach())
    torch.testing.assert_close(ixg, (emb * w).detach())
    torch.testing.assert_close(ig, (emb * w).detach(), atol=1e-5, rtol=1e-5)
    # token-level infidelity: exact first-order attributions relative to the padding baseline
    zero = text_infidelity(model, ids, ixg, 1, normalize=False, n_samples=6)
    torch.testing.assert_close(zero, torch.zeros(2), atol=1e-10, rtol=0)
    assert (text_infidelity(model, ids, grad, 1, normalize=False, n_samples=6) > 1e-4).all()
    off = text_infidelity(model, ids, 2 * ixg, 1, normalize=False, n_samples=6)
    assert (off > 0).all()
    fixed = text_infidelity(model, ids, 2 * ixg, 1, normalize=True, n_samples=6)
    torch.testing.assert_close(fixed, torch.zeros(2), atol=1e-10, rtol=0)
    # hand value: one token, one perturbation, f(e) - f(e - eps e) = w eps e
    one = torch.tensor([[5]])
    s = torch.tensor([[0.25]])
    eps = torch.randn(1, 1, generator=torch.Generator().manual_seed(3)) * 0.1
    e5 = model.embedding.weight[5, 0].item()
    hand = (0.25 * eps - w.item() * eps * e5) ** 2
    got = text_infidelity(model, one, s, 1, normalize=False, n_samples=1, seed=3, radius=0.1)
    torch.testing.assert_close(got, hand.reshape(1).float(), rtol=1e-5, atol=1e-9)
