"""Smoothing a network (Kokhlikyan et al., arXiv:2106.07475; Dombrowski et al. 2019): LogSumExp
pooling tends to max / mean pooling at the temperature limits, Softplus tends to ReLU, the
smoothed copy keeps the weights and leaves the caller's model alone, and smoothing_check puts
the metrics side by side."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from visloupe.core.evaluation.smoothing import smoothing_check
from visloupe.core.models import (
    AdaptiveLSEPool1d,
    AdaptiveLSEPool2d,
    GlobalLSEPool,
    LSEPool1d,
    LSEPool2d,
    SmallResNet,
    TextCNN,
    build_model,
    smooth_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 1, 1), (3, 2, 1)])
def test_lse_pool_tends_to_max_and_mean(kernel: int, stride: int, padding: int) -> None:
    x = _x(2, 3, 9, 8)
    hot = LSEPool2d(kernel, stride, padding, temperature=1e4)(x)
    top = nn.MaxPool2d(kernel, stride, padding)(x)
    # LSE_r lies in [max - log|W|/r, max]
    assert (hot <= top + 1e-12).all()
    assert (top - hot).max() <= math.log(kernel * kernel) / 1e4 + 1e-12
    cold = LSEPool2d(kernel, stride, padding, temperature=1e-5)(x)
    mean = nn.AvgPool2d(kernel, stride, padding, count_include_pad=False)(x)
    torch.testing.assert_close(cold, mean, atol=1e-4, rtol=0)
    mid = LSEPool2d(kernel, stride, padding, temperature=1.0)(x)
    assert (mid > mean + 1e-6).any() and (mid < top - 1e-6).any()  # strictly in between


def test_lse_pool_1d_and_adaptive_limits() -> None:
    x = _x(2, 3, 11)
    torch.testing.assert_close(LSEPool1d(3, 2, temperature=1e5)(x), nn.MaxPool1d(3, 2)(x),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(LSEPool1d(3, 2, temperature=1e-6)(x), nn.AvgPool1d(3, 2)(x),
                               atol=1e-4, rtol=0)
    y = _x(2, 3, 7, 5)
    for size in (1, (3, 2), (7, 5)):
        torch.testing.assert_close(AdaptiveLSEPool2d(size, 1e5)(y), nn.AdaptiveMaxPool2d(size)(y),
                                   atol=1e-4, rtol=0)
        torch.testing.assert_close(AdaptiveLSEPool2d(size, 1e-6)(y),
                                   nn.AdaptiveAvgPool2d(size)(y), atol=1e-4, rtol=0)
    torch.testing.assert_close(AdaptiveLSEPool1d(4, 1e-6)(x), nn.AdaptiveAvgPool1d(4)(x),
                               atol=1e-4, rtol=0)


def test_softplus_tends_to_relu() -> None:
    z = torch.linspace(-3, 3, 601, dtype=torch.float64)
    for beta in (10.0, 100.0, 1000.0):
        gap = (nn.Softplus(beta)(z) - torch.relu(z)).abs().max()
        assert gap <= math.log(2) / beta + 1e-12  # the largest gap is at 0: log(2)/β


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(4, 4, 3), nn.ReLU(), nn.AdaptiveMaxPool2d(1),
                                  nn.Flatten())
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _net() -> _Net:
    with torch.random.fork_rng(devices=[]):  # default init, without touching the global RNG
        torch.manual_seed(0)
        return _Net().eval()


def test_smooth_model_swaps_modules_keeps_weights_and_the_caller_model() -> None:
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    smooth, report = smooth_model(net, softplus_beta=1e4, lse_temperature=1e4,
                                  return_report=True)
    kinds = sorted(old for _, old, _ in report.replaced)
    assert kinds == ["AdaptiveMaxPool2d", "MaxPool2d", "ReLU", "ReLU"]
    assert isinstance(smooth.body[1], nn.Softplus) and isinstance(smooth.body[2], LSEPool2d)
    assert isinstance(net.body[1], nn.ReLU) and isinstance(net.body[2], nn.MaxPool2d)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, smooth.state_dict()[k]) for k, v in before.items())
    x = torch.randn(4, 3, 10, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(smooth(x), net(x), atol=5e-3, rtol=0)  # large β, r: same
        soft = smooth_model(net, softplus_beta=1.0, lse_temperature=1.0)(x)
    assert (soft - net(x)).abs().max() > 1e-2  # small β, r: a different function


def test_smooth_model_on_the_builtins_and_bad_input() -> None:
    text = TextCNN(30, 2, embed_dim=8, kernel_sizes=(2, 3), num_filters=4)
    text.init_weights(torch.Generator().manual_seed(0))
    smooth = smooth_model(text.eval(), softplus_beta=1e4, lse_temperature=1e4)
    assert isinstance(smooth.pool, GlobalLSEPool) and text.pool is None
    assert smooth.config["pooling"] == "lse" and smooth.config["activation"] == "softplus"
    rebuilt = build_model("TextCNN", smooth.config)
    rebuilt.load_state_dict(smooth.state_dict())
    ids = torch.randint(1, 30, (5, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(ids), smooth(ids))
        # LSE over time with r = 1e4 is max over time up to log(T)/r
        torch.testing.assert_close(smooth(ids), text(ids), atol=5e-3, rtol=0)
    cnn = SmallResNet(3, 5, (4, 8), pooling="max")
    smooth_cnn = smooth_model(cnn, softplus_beta=3.0)
    assert smooth_cnn.config["activation"] == "softplus" and smooth_cnn.config["pooling"] == "lse"
    assert not any(isinstance(m, nn.ReLU) for m in smooth_cnn.modules())
    with pytest.raises(ValueError, match="no nn.ReLU"):
        smooth_model(nn.Linear(3, 2))
    assert isinstance(smooth_model(nn.Linear(3, 2), strict=False), nn.Linear)
    with pytest.raises(ValueError, match="softplus_beta"):
        smooth_model(cnn, softplus_beta=0)
    with pytest.raises(ValueError, match="lse_temperature"):
        smooth_model(cnn, lse_temperature=float("inf"))
    with pytest.raises(ValueError, match="ceil_mode"):
        smooth_model(nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)))


def test_smoothing_check_table() -> None:
    net = _net()
    x = torch.randn(4, 3, 10, 10, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([0, 1, 2, 0])
    table = smoothing_check({"original": net, "smoothed": smooth_model(net, 3.0, 3.0)}, x,
                            ["saliency", "input_x_gradient"], labels=labels, n_samples=3)
    assert set(table.model) == {"original", "smoothed"}
    assert set(table.metric) == {"accuracy", "infidelity", "max_sensitivity"}
    assert (table[table.metric != "accuracy"]["count"] == 4).all()
    with torch.no_grad():
        acc = (net(x).argmax(1) == labels).float().mean().item()
    got = table[(table.model == "original") & (table.metric == "accuracy")]["mean"].item()
    assert got == pytest.approx(acc)
