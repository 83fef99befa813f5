"""The papers' conventions, on planted cases with hand-computed values: Split IG (Miglani et al.,
ICML-WHI 2020: riemann_right steps, strict first crossing, zero baseline, no re-weighting),
Grad-CAM (ReLU at layer resolution, then bilinear upsampling) and Captum's IG defaults."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn
from visloupe.core.attribution import attribute
from visloupe.core.attribution.split_ig import split_integrated_gradients

pytestmark = pytest.mark.usefixtures("one_thread")

W = torch.tensor([1.0, 2.0, 0.5, -1.0], dtype=torch.float64)


class HalfSquare(nn.Module):
    """Logits ``[s² / 2, -s]`` with ``s = w·x``: along ``alpha x`` the gradient is ``alpha s w``.
    (A float64 parameter makes the model, and so its inputs, float64.)"""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(W.clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x.flatten(1) * self.w).sum(1)
        return torch.stack([0.5 * s ** 2, -s], dim=1)


class QuarticSum(nn.Module):
    """Logits ``[sum x⁴ / 4, 0]``: IG_i = x_i⁴ / 4 exactly (a cubic integrand in alpha)."""

    def __init__(self) -> None:
        super().__init__()
        self.one = nn.Parameter(torch.ones((), dtype=torch.float64), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = (x.flatten(1) ** 4).sum(1) / 4 * self.one
        return torch.stack([f, torch.zeros_like(f)], dim=1)


def test_split_ig_riemann_right_strict_split_and_zero_baseline() -> None:
    x = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    s = float((W * x.flatten()).sum())  # 2.5
    # n = 4: alpha_k = k/4, progress = alpha² = 1/16, 1/4, 9/16, 1. With ratio 1/4 the first
    # step *strictly* above is k = 2 (0-based; alpha = 3/4): left sums alpha = 1/4, 2/4.
    r = split_integrated_gradients(HalfSquare(), x, target=0, ratio=0.25, n_steps=4)
    assert r.split_index.tolist() == [2] and r.alpha_star.tolist() == [0.5]
    assert r.baseline_output.tolist() == [0.0]  # baseline None -> zeros
    wx = (W * x.flatten()).view(1, 1, 2, 2)
    torch.testing.assert_close(r.left, 3 / 16 * s * wx, rtol=0, atol=1e-12)   # (1 + 2) / 16
    torch.testing.assert_close(r.right, 7 / 16 * s * wx, rtol=0, atol=1e-12)  # (3 + 4) / 16
    # riemann_right IG is (n + 1) / (2n) = 5/8 of the exact value 1/2, not the exact integral
    torch.testing.assert_close(r.ig, 10 / 16 * s * wx, rtol=0, atol=1e-12)


def test_split_ig_defaults_are_the_notebook_settings() -> None:
    params = inspect.signature(split_integrated_gradients).parameters
    assert params["n_steps"].default == 200 and params["ratio"].default == 0.9
    assert params["baseline"].default is None


def test_grad_cam_relu_before_bilinear_upsampling() -> None:
    # conv 2x2 / stride 2 with channels (mean, -mean) of each 2x2 block; logit 0 =
    # mean(A0) + 2 mean(A1), so w = (1/4, 1/2) and the layer map is -P/4 for block means P.
    conv = nn.Conv2d(1, 2, 2, stride=2, bias=False)
    head = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.stack([torch.full((1, 2, 2), 0.25),
                                       torch.full((1, 2, 2), -0.25)]))
        head.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
    model = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).double().eval()
    blocks = torch.tensor([[4.0, -4.0], [0.0, 8.0]], dtype=torch.float64)
    x = blocks.repeat_interleave(2, 0).repeat_interleave(2, 1)[None, None]
    cam = attribute(model, x, 0, "grad_cam", layer="0")
    # ReLU([[-1, 1], [0, -2]]) = [[0, 1], [0, 0]], upsampled bilinearly (align_corners=False):
    # rows weights (1, .75, .25, 0) on the top cell, columns (0, .25, .75, 1) on the right cell
    rows = torch.tensor([1.0, 0.75, 0.25, 0.0], dtype=torch.float64)
    cols = torch.tensor([0.0, 0.25, 0.75, 1.0], dtype=torch.float64)
    torch.testing.assert_close(cam[0, 0], rows[:, None] * cols[None, :], rtol=0, atol=1e-12)
    # nearest upsampling, or the ReLU after upsampling, would give e.g. cam[0, 0, 0, 1] = 0
    assert float(cam[0, 0, 0, 1]) == pytest.approx(0.25)


def test_integrated_gradients_defaults_gauss_legendre_50_steps_zero_baseline() -> None:
    x = torch.tensor([[[[0.5, 1.0], [1.5, 2.0]]]], dtype=torch.float64)
    ig = attribute(QuarticSum(), x, 0)  # default method, steps, quadrature and baseline
    # Gauss-Legendre with 50 nodes integrates the cubic exactly; a 50-step trapezoid rule is
    # off by ~1e-4 relative, riemann_right by ~1e-2, a non-zero baseline by more.
    torch.testing.assert_close(ig, x ** 4 / 4, rtol=1e-7, atol=0)  # Captum: float32 nodes
