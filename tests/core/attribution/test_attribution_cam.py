"""Grad-CAM / Grad-CAM++: hand computations, Captum agreement, token and channels-last grids."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from helpers.nets import SwinLike, TimmViT, TorchvisionViT, hf_vit
from torch import nn
from visloupe.core.attribution import attribute, explain, upsample
from visloupe.core.attribution.cam import gradcam_pp_weights
from visloupe.core.models.introspection import propose_target_layers


class GapNet(nn.Module):
    """conv (same padding) -> ReLU ``act`` -> global average pool -> linear: the score is linear in
    the ``act`` maps, S = Σ_k v_k mean(A^k), so ∂S/∂A^k_ij = v_k / Z everywhere."""

    def __init__(self, channels: int = 4, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


class ConvTokens(nn.Module):
    """Patch conv ``proj`` -> tokens with ``n_prefix`` learned prefix tokens -> Identity ``tokens``
    (N, T, D) -> per-token tanh MLP -> mean over all tokens -> head. The patch tokens at
    ``tokens`` are exactly ``proj``'s map, so token Grad-CAM must equal Captum's conv Grad-CAM."""

    def __init__(self, n_prefix: int, dim: int = 6, patch: int = 4) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)
        self.prefix = nn.Parameter(torch.randn(1, n_prefix, dim))
        self.tokens = nn.Identity()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.proj(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.prefix.expand(t.shape[0], -1, -1), t], dim=1)
        return self.head(self.mlp(self.tokens(t)).mean(dim=1))


def images(n=2, h=16, w=16, seed=3) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def gapnet(seed=0, channels=4) -> GapNet:
    torch.manual_seed(seed)
    return GapNet(channels).eval()


def test_grad_cam_matches_hand_computation():
    model, x = gapnet(), images()
    target = torch.tensor([0, 2])
    a = model.act(model.conv(x)).detach()  # (N, K, H, W), same size as the input
    z = a.shape[2] * a.shape[3]
    g = model.fc.weight[target].detach() / z  # (N, K): constant gradient per channel
    expected = F.relu((g[:, :, None, None] * a).sum(dim=1))
    torch.testing.assert_close(explain(model, x, target, "grad_cam", layer="act"), expected)
    raw = (g[:, :, None, None] * a).sum(dim=1)
    torch.testing.assert_close(explain(model, x, target, "grad_cam", layer="act", relu=False),
                               raw)


def test_grad_cam_pp_matches_hand_computation():
    """Chattopadhyay et al. 2018 eq. 19 with a constant gradient g_k: α_k = 1 / (2 + g_k S_k),
    w_k = Z α_k ReLU(g_k) where S_k = Σ_ij A^k_ij."""
    model, x = gapnet(), images()
    target = torch.tensor([1, 1])
    a = model.act(model.conv(x)).detach()
    z = a.shape[2] * a.shape[3]
    g = model.fc.weight[target].detach() / z
    s = a.sum(dim=(2, 3))
    w = torch.where(g != 0, z * F.relu(g) / (2 + g * s), torch.zeros_like(g))
    expected = F.relu((w[:, :, None, None] * a).sum(dim=1))
    ours = explain(model, x, target, "grad_cam_pp", layer="act")
    torch.testing.assert_close(ours, expected)
    assert (model.fc.weight[1] < 0).any()  # so the ReLU(g) term matters
    grad_cam = explain(model, x, target, "grad_cam", layer="act")
    assert not torch.allclose(ours / ours.max(), grad_cam / grad_cam.max())


def test_gradcam_pp_weights_general_formula():
    torch.manual_seed(0)
    a, g = torch.rand(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    alpha = g**2 / (2 * g**2 + a.sum(dim=(2, 3), keepdim=True) * g**3)
    torch.testing.assert_close(gradcam_pp_weights(a, g), (alpha * F.relu(g)).sum(dim=(2, 3)))
    g[0, 0] = 0.0  # α = 0 where the gradient vanishes (no 0/0)
    assert torch.isfinite(gradcam_pp_weights(a, g)).all()


def test_single_channel_cams_agree_and_localise():
    """One channel with a positive weight: both maps are positive multiples of ReLU(A), so after
    normalisation Grad-CAM++ = Grad-CAM, and both peak on the planted bright square."""
    model = gapnet(channels=1)
    with torch.no_grad():
        model.conv.weight.fill_(0.1)
        model.conv.bias.fill_(-0.2)
        model.fc.weight.fill_(1.0)
    x = torch.zeros(1, 3, 16, 16)
    x[:, :, 3:7, 9:13] = 1.0
    cam = explain(model, x, 0, "grad_cam", layer="act")[0]
    pp = explain(model, x, 0, "grad_cam_pp", layer="act")[0]
    torch.testing.assert_close(pp / pp.max(), cam / cam.max())
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[2:8, 8:14] = True
    assert cam[~inside].abs().max() == 0 and cam[inside].max() > 0


def test_conv_grad_cam_is_captum_upsampled():
    model, x = gapnet(), images()
    model.conv.stride = (2, 2)  # an 8x8 layer map upsampled to 16x16
    ours = attribute(model, x, 1, "grad_cam", layer="act")
    ref = LayerGradCam(model, model.act).attribute(x, target=1, relu_attributions=True)
    assert ref.shape[-2:] == (8, 8)
    torch.testing.assert_close(ours, upsample(ref, (16, 16)))


@pytest.mark.parametrize(("n_prefix", "hw"), [(1, (16, 16)), (2, (12, 20)), (5, (20, 8))])
def test_token_grad_cam_equals_conv_grad_cam(n_prefix, hw):
    torch.manual_seed(n_prefix)
    model = ConvTokens(n_prefix).eval()
    x = images(2, *hw)
    for method in ("grad_cam", "grad_cam_pp"):
        tokens = attribute(model, x, 2, method, layer="tokens", relu=False)
        conv = attribute(model, x, 2, method, layer="proj", relu=False)
        torch.testing.assert_close(tokens, conv)
    ref = LayerGradCam(model, model.proj).attribute(x, target=2, relu_attributions=True)
    torch.testing.assert_close(attribute(model, x, 2, "grad_cam", layer="tokens"),
                               upsample(ref, hw))


def test_channels_last_grad_cam_equals_channels_first():
    torch.manual_seed(0)
    model, x = SwinLike(back=True).eval(), images(2, 16, 24)
    for method in ("grad_cam", "grad_cam_pp"):
        last = attribute(model, x, 0, method, layer="act", relu=False)
        first = attribute(model, x, 0, method, layer="to_first", relu=False)
        torch.testing.assert_close(last, first)
        assert last.abs().sum() > 0


@pytest.mark.parametrize(("n_dist", "n_reg"), [(0, 0), (1, 0), (0, 4)])
def test_vit_grad_cam_non_square_with_prefix_tokens(n_dist, n_reg):
    torch.manual_seed(0)
    model, x = TimmViT((24, 40), 4, n_dist, n_reg).eval(), images(2, 24, 40)
    best = propose_target_layers(model, x.shape[1:])[0]
    assert best.layout.grid == (6, 10) and best.layout.n_prefix == 1 + n_dist + n_reg
    assert best.layout.n_tokens != 1 + 14 * 14
    for method in ("grad_cam", "grad_cam_pp"):
        # random weights: the ReLU'd map may be empty, so look at the raw map
        maps = explain(model, x, 1, method, relu=False)  # default layer: blocks[-1].norm1
        assert maps.shape == (2, 24, 40) and torch.isfinite(maps).all()
        assert maps.abs().sum() > 0
        torch.testing.assert_close(
            maps, explain(model, x, 1, method, layer="blocks.1.norm1", relu=False))


def test_torchvision_style_vit_grad_cam():
    torch.manual_seed(0)
    model, x = TorchvisionViT().eval(), images(2, 32, 32)
    maps = explain(model, x, 0, "grad_cam", relu=False)
    assert maps.shape == (2, 32, 32) and maps.abs().sum() > 0
    # the layer map is 4x4 (patch 8): bilinear upsampling of a 4x4 map, not a 14x14 one
    lowres = F.interpolate(maps[:, None], size=(4, 4), mode="area")
    torch.testing.assert_close(upsample(lowres[:, 0], (32, 32)), maps, rtol=0.2, atol=0.2)


def test_hf_vit_from_config():
    model, x = hf_vit(), images(2, 32, 32)
    for method in ("grad_cam", "grad_cam_pp", "integrated_gradients", "saliency"):
        kwargs = {"n_steps": 8} if method.startswith("int") else {}
        if "cam" in method:
            kwargs["relu"] = False
        maps = explain(model, x, 4, method, **kwargs)
        assert maps.shape == (2, 32, 32) and torch.isfinite(maps).all(), method
        assert maps.abs().sum() > 0, method
    with torch.no_grad():
        out = model(x).logits
    ig = attribute(model, x, 4, n_steps=16)
    with torch.no_grad():
        base = model(torch.zeros_like(x)).logits
    torch.testing.assert_close(ig.sum(dim=(1, 2, 3)), out[:, 4] - base[:, 4], rtol=0.05,
                               atol=0.02)


def test_builtin_tiny_vit():
    from visloupe.core.models.architectures import TinyViT

    torch.manual_seed(0)
    model, x = TinyViT().eval(), images(2, 32, 32)
    assert propose_target_layers(model, x.shape[1:])[0].name == model.target_layer
    maps = explain(model, x, 0, "grad_cam", relu=False)
    assert maps.shape == (2, 32, 32) and maps.abs().sum() > 0


def test_grad_cam_errors():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    with pytest.raises(ValueError, match="no module producing a spatial map"):
        explain(mlp, torch.rand(1, 3, 8, 8), 0, "grad_cam")
    model = gapnet()
    with pytest.raises(ValueError, match=r"no submodule named 'actt'.*close names: \['act'\]"):
        explain(model, images(), 0, "grad_cam", layer="actt")
    with pytest.raises(ValueError, match="takes no layer"):
        explain(model, images(), 0, "saliency", layer="act")
