"""The smoothing conventions (Kokhlikyan et al., arXiv:2106.07475; Dombrowski et al., NeurIPS
2019) on hand-computed values: Softplus_β(z) = log(1 + e^{βz}) / β and LogSumExp pooling
normalised by the window size, (1/r) log(mean_W e^{r x})."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from visloupe.core.models import LSEPool2d, smooth_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_smooth_model_swaps_relu_for_softplus_beta_and_maxpool_for_lse() -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU(), nn.MaxPool2d(2))
    smooth = smooth_model(model, softplus_beta=10.0, lse_temperature=10.0)
    assert isinstance(smooth[1], nn.Softplus) and smooth[1].beta == 10.0
    assert isinstance(smooth[2], LSEPool2d) and smooth[2].temperature == 10.0
    z = torch.tensor([0.0, 1.0], dtype=torch.float64)
    expected = [math.log(2) / 10, math.log1p(math.exp(10)) / 10]
    assert smooth[1](z).tolist() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("r", [1.0, 10.0])
def test_lse_pool_is_the_window_mean_inside_the_log(r: float) -> None:
    window = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]], dtype=torch.float64)
    out = LSEPool2d(2, temperature=r)(window)
    expected = math.log(sum(math.exp(r * v) for v in (0, 1, 2, 3)) / 4) / r
    # without the 1/|W| the value would be log(4) / r higher
    assert float(out) == pytest.approx(expected, rel=1e-12)
    assert float(out) < 3.0  # below the max (LSE_r -> max as r -> inf)
