"""explain()/attribute(): method identities, agreement with Captum, batching, model state."""

from __future__ import annotations

import pytest
import torch
from captum.attr import (
    DeepLift,
    FeatureAblation,
    GuidedBackprop,
    IntegratedGradients,
    Occlusion,
)
from torch import nn
from visloupe.core.attribution import (
    METHODS,
    attribute,
    available_methods,
    explain,
    method_spec,
)
from visloupe.core.attribution.methods import patch_segments, slic_segments


class SmoothNet(nn.Module):
    """Conv -> Softplus -> conv -> Tanh -> GAP -> linear: smooth, so IG quadrature converges."""

    def __init__(self, in_channels: int = 3, num_classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 3, padding=1)
        self.act1 = nn.Softplus()
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.act2 = nn.Tanh()
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act2(self.conv2(self.act1(self.conv1(x)))).mean(dim=(2, 3)))


class ReluNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.relu2(self.conv2(self.relu1(self.conv1(x)))).mean(dim=(2, 3))
        return self.fc(self.drop(z))


class Linear(nn.Module):
    def __init__(self, shape=(3, 16, 16), num_classes: int = 2) -> None:
        super().__init__()
        self.fc = nn.Linear(int(torch.tensor(shape).prod()), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class PatchOnly(nn.Module):
    """Looks only at rows 4..8, cols 8..12: logits (s, -s) with s = Σ w·x over that patch."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(0.5, 1.5, 3 * 4 * 4).view(3, 4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x[:, :, 4:8, 8:12] * self.w).sum(dim=(1, 2, 3))
        return torch.stack([s, -s], dim=1)


def seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for p in model.parameters():
        nn.init.normal_(p, std=0.3)
    return model.eval()


def images(n=3, c=3, h=16, w=16, seed=1) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_registry_lists_the_issue_methods():
    names = set(available_methods())
    assert {"saliency", "saliency_abs", "input_x_gradient", "integrated_gradients",
            "smoothgrad", "deeplift", "guided_backprop", "occlusion", "feature_ablation",
            "grad_cam", "grad_cam_pp"} <= names
    assert method_spec("integrated_gradients").multiplies_by_input
    assert not method_spec("saliency").multiplies_by_input
    assert method_spec("grad_cam").needs_layer and not method_spec("saliency").needs_layer
    assert not method_spec("saliency_abs").signed
    n_steps = method_spec("integrated_gradients").param("n_steps")
    assert (n_steps.kind, n_steps.default, n_steps.min) == ("int", 50, 1)
    for spec in METHODS.values():  # every default passes its own validation
        assert spec.resolve_params({}) == spec.defaults


def test_ig_completeness():
    model, x = seeded(SmoothNet()), images()
    base = torch.full_like(x, 0.25)
    attr = attribute(model, x, target=[0, 1, 2], baseline=base, n_steps=32)
    with torch.no_grad():
        out, out_b = model(x), model(base)
    idx = torch.arange(3)
    delta = out[idx, [0, 1, 2]] - out_b[idx, [0, 1, 2]]
    torch.testing.assert_close(attr.sum(dim=(1, 2, 3)), delta, rtol=1e-3, atol=1e-5)
    maps = explain(model, x, target=[0, 1, 2], baseline=base, n_steps=32)
    assert maps.shape == (3, 16, 16)
    torch.testing.assert_close(maps.sum(dim=(1, 2)), delta, rtol=1e-3, atol=1e-5)


def test_ig_equals_captum_exactly():
    model, x = seeded(SmoothNet()), images()
    ours = attribute(model, x, target=2, method="integrated_gradients", n_steps=20)
    ref = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=2,
                                               n_steps=20)
    assert torch.equal(ours, ref)


def test_input_x_gradient_equals_autograd():
    model, x = seeded(SmoothNet()), images()
    target = torch.tensor([3, 0, 1])
    xg = x.clone().requires_grad_(True)
    model(xg).gather(1, target.view(-1, 1)).sum().backward()
    expected = x * xg.grad
    torch.testing.assert_close(attribute(model, x, target, "input_x_gradient"), expected)
    torch.testing.assert_close(attribute(model, x, target, "saliency"), xg.grad)


def test_saliency_abs_is_abs_of_saliency():
    model, x = seeded(SmoothNet()), images()
    signed = attribute(model, x, 1, "saliency")
    assert (signed < 0).any()
    torch.testing.assert_close(attribute(model, x, 1, "saliency_abs"), signed.abs())


@pytest.mark.filterwarnings("ignore:Setting forward, backward hooks")
def test_deeplift_sums_to_delta_and_matches_captum():
    model, x = seeded(ReluNet()), images()
    attr = attribute(model, x, 0, "deeplift")
    with torch.no_grad():
        delta = model(x)[:, 0] - model(torch.zeros_like(x))[:, 0]
    torch.testing.assert_close(attr.sum(dim=(1, 2, 3)), delta, rtol=1e-4, atol=1e-5)
    ref = DeepLift(model).attribute(x.clone().requires_grad_(), torch.zeros_like(x), target=0)
    torch.testing.assert_close(attr, ref)


@pytest.mark.filterwarnings("ignore:Setting backward hooks")
def test_guided_backprop_matches_captum():
    model, x = seeded(ReluNet()), images()
    ref = GuidedBackprop(model).attribute(x.clone().requires_grad_(), target=1)
    torch.testing.assert_close(attribute(model, x, 1, "guided_backprop"), ref)


def test_occlusion_on_planted_patch_model():
    model, x = PatchOnly(), images(2) + 0.1
    maps = explain(model, x, 0, "occlusion", window=4, stride=4)
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[4:8, 8:12] = True
    assert (maps[:, inside] > 0).all() and (maps[:, ~inside] == 0).all()
    with torch.no_grad():  # one window covers the whole patch: the drop is the full score
        score = model(x)[:, 0]
    torch.testing.assert_close(maps[:, 5, 9], score)
    ref = Occlusion(model).attribute(x, sliding_window_shapes=(3, 4, 4), strides=(3, 4, 4),
                                     target=0)
    torch.testing.assert_close(attribute(model, x, 0, "occlusion", window=4, stride=4)[:, 0],
                               ref[:, 0])


def test_feature_ablation_patches_on_linear_model():
    model, x = seeded(Linear()), images(2)
    attr = attribute(model, x, 1, "feature_ablation", patch_size=4)
    assert attr.shape == (2, 1, 16, 16)
    contrib = (model.fc.weight[1].view(3, 16, 16) * x).sum(dim=1)  # (N, H, W)
    expected = contrib.view(2, 4, 4, 4, 4).sum(dim=(2, 4))  # per 4x4 patch
    torch.testing.assert_close(attr[:, 0, ::4, ::4], expected.detach(), rtol=1e-4, atol=1e-5)
    ref = FeatureAblation(model).attribute(x, target=1, feature_mask=patch_segments(x, 4))
    torch.testing.assert_close(attr[:, 0], ref[:, 0])


def test_feature_ablation_slic_segments():
    model = seeded(Linear())
    x = 0.05 * images(2)  # four flat-coloured quadrants plus a little noise
    x[:, 0, :8, :8] += 0.9
    x[:, 1, :8, 8:] += 0.9
    x[:, 2, 8:, :8] += 0.9
    attr = attribute(model, x, 0, "feature_ablation", segmentation="slic", n_segments=4)
    segments = slic_segments(x, 4)
    assert segments.shape == (2, 1, 16, 16)
    for i in range(2):  # superpixels follow the colour edges: no segment spans two quadrants
        for label in segments[i, 0].unique():
            quadrants = {(r // 8, c // 8) for r, c in (segments[i, 0] == label).nonzero().tolist()}
            assert len(quadrants) == 1
    contrib = (model.fc.weight[0].view(3, 16, 16) * x).sum(dim=1).detach()
    for i in range(2):
        for label in segments[i, 0].unique():
            region = segments[i, 0] == label
            values = attr[i, 0][region]
            torch.testing.assert_close(values, values[0].expand_as(values))
            torch.testing.assert_close(values[0], contrib[i][region].sum(), rtol=1e-4,
                                       atol=1e-5)


def test_slic_on_grayscale():
    x = images(1, c=1)
    assert slic_segments(x, 4).shape == (1, 1, 16, 16)


def test_smoothgrad_properties():
    lin, x = seeded(Linear()), images(2)
    sal = attribute(lin, x, 1, "saliency")
    torch.testing.assert_close(attribute(lin, x, 1, "smoothgrad", nt_samples=4), sal)
    var = attribute(lin, x, 1, "smoothgrad", nt_samples=4, nt_type="vargrad")
    assert var.abs().max() < 1e-10
    net = seeded(SmoothNet())
    torch.testing.assert_close(attribute(net, x, 1, "smoothgrad", stdevs=0.0, nt_samples=3),
                               attribute(net, x, 1, "saliency"))
    a = attribute(net, x, 1, "smoothgrad", nt_samples=5, stdevs=0.3, seed=7)
    b = attribute(net, x, 1, "smoothgrad", nt_samples=5, stdevs=0.3, seed=7, batch_size=1)
    c = attribute(net, x, 1, "smoothgrad", nt_samples=5, stdevs=0.3, seed=8)
    torch.testing.assert_close(a, b)  # per-image seeds: independent of batching
    assert not torch.allclose(a, c)
    ig = attribute(net, x, 1, "smoothgrad", base="integrated_gradients", stdevs=0.0,
                   nt_samples=2, n_steps=8)
    torch.testing.assert_close(ig, attribute(net, x, 1, n_steps=8), rtol=1e-4, atol=1e-6)


def test_target_none_is_predicted_class_and_batching_is_invisible():
    model, x = seeded(SmoothNet()), images(5)
    with torch.no_grad():
        pred = model(x).argmax(1)
    torch.testing.assert_close(explain(model, x, None, "saliency"),
                               explain(model, x, pred, "saliency"))
    torch.testing.assert_close(explain(model, x, pred, n_steps=10, batch_size=2),
                               explain(model, x, pred, n_steps=10))
    assert torch.equal(explain(model, x, 2, "saliency"),
                       explain(model, x, torch.tensor(2), "saliency"))


def test_model_state_restored_hooks_removed_and_eval_used():
    model, x = seeded(ReluNet()), images(2)
    model.train()
    flags = [m.training for m in model.modules()]
    maps = [explain(model, x, 0, "saliency") for _ in range(2)]
    torch.testing.assert_close(maps[0], maps[1])  # dropout off: deterministic
    for method in ("deeplift", "guided_backprop", "grad_cam", "grad_cam_pp"):
        explain(model, x, 0, method)
    assert [m.training for m in model.modules()] == flags
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    model.eval()
    torch.testing.assert_close(explain(model, x, 0, "saliency"), maps[0])


def test_frozen_model_under_no_grad_context():
    model, x = seeded(ReluNet()), images(2)
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        for method in ("saliency", "grad_cam", "grad_cam_pp", "integrated_gradients"):
            assert explain(model, x, 0, method).abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("reduce", ["sum", "abs_sum", "max_abs", "l2"])
def test_explain_reduces_attribute(reduce):
    from visloupe.core.attribution import reduce_channels

    model, x = seeded(SmoothNet()), images(2)
    torch.testing.assert_close(explain(model, x, 0, "saliency", reduce=reduce),
                               reduce_channels(attribute(model, x, 0, "saliency"), reduce))


def test_grayscale_and_float64_inputs():
    model = seeded(SmoothNet(in_channels=1))
    x = images(2, c=1).double()
    maps = explain(model, x, 0, "saliency")
    assert maps.shape == (2, 16, 16) and maps.dtype == torch.float32


def test_every_method_runs_on_a_cnn():
    model, x = seeded(ReluNet()), images(2)
    for name in ("saliency", "saliency_abs", "input_x_gradient", "integrated_gradients",
                 "smoothgrad", "deeplift", "guided_backprop", "occlusion", "feature_ablation",
                 "grad_cam", "grad_cam_pp"):
        maps = explain(model, x, 1, name)
        assert maps.shape == (2, 16, 16) and torch.isfinite(maps).all(), name
