"""Model surgery (core/models/surgery.py) returns copies and never mutates the caller's model:
padding swap (Alsallakh et al., ICLR 2021), Softplus/LogSumExp smoothing (Kokhlikyan et al.,
arXiv:2106.07475) and re-initialisation for randomisation checks (Adebayo et al., 2018). The old
homes re-export the same objects (one copy)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from visloupe.core import evaluation, models, padding
from visloupe.core.evaluation import sanity, smoothing
from visloupe.core.models import (
    RANDOMIZATION_MODES,
    LSEPool2d,
    randomized_copies,
    reinitialize_layers,
    smooth_model,
    swap_padding,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                                  nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _net() -> _Net:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = _Net()
    net.train()  # a training-mode model: surgery must not switch the caller's flag either
    return net


def _snapshot(model: nn.Module) -> tuple:
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [(n, type(m), id(m), m.training) for n, m in model.named_modules()])


def _unchanged(model: nn.Module, snap: tuple) -> bool:
    state, modules = snap
    now = [(n, type(m), id(m), m.training) for n, m in model.named_modules()]
    return now == modules and all(torch.equal(v, model.state_dict()[k])
                                  for k, v in state.items())


def test_every_surgery_returns_a_copy_and_leaves_the_model_alone() -> None:
    net = _net()
    snap = _snapshot(net)
    swapped = swap_padding(net, "symmetric")
    smoothed = smooth_model(net, 5.0, 5.0)
    reinit = reinitialize_layers(net, ["head", "body.0"], seed=1)
    steps = {mode: list(randomized_copies(net, ["head", "body.4"], mode, seed=1))
             for mode in RANDOMIZATION_MODES}
    assert _unchanged(net, snap)
    outs = [swapped, smoothed, reinit] + [m for s in steps.values() for _, _, m in s]
    for out in outs:
        assert out is not net
        assert not any(a is b for a in out.modules() for b in net.modules())
        assert not any(p.data_ptr() == q.data_ptr() for p in out.parameters()
                       for q in net.parameters())
    assert type(swapped.body[0]).__name__ == "PadConv2d"
    assert isinstance(smoothed.body[2], nn.Softplus) and isinstance(smoothed.body[3], LSEPool2d)
    # reinitialize_layers changes exactly the named layers, reproducibly
    assert not torch.equal(reinit.head.weight, net.head.weight)
    assert not torch.equal(reinit.body[0].weight, net.body[0].weight)
    assert torch.equal(reinit.body[4].weight, net.body[4].weight)
    again = reinitialize_layers(net, ["head", "body.0"], seed=1)
    assert torch.equal(again.head.weight, reinit.head.weight)
    # the cascade's step k and the independent step k re-initialise a layer the same way
    cascade, independent = steps["cascading"], steps["independent"]
    assert [name for _, name, _ in cascade] == ["(original)", "head", "body.4"]
    assert torch.equal(cascade[1][2].head.weight, independent[1][2].head.weight)
    assert torch.equal(independent[2][2].head.weight, net.head.weight)
    assert not torch.equal(cascade[2][2].head.weight, net.head.weight)


def test_old_homes_re_export_the_surgery_objects() -> None:
    assert padding.swap_padding is models.swap_padding is swap_padding
    assert evaluation.smooth_model is smoothing.smooth_model is smooth_model
    assert evaluation.LSEPool2d is LSEPool2d
    assert sanity.MODES == RANDOMIZATION_MODES
    net = _net()
    # randomized_models (checks + default layers) yields what randomized_copies yields
    a = [(k, n, m.state_dict()) for k, n, m in sanity.randomized_models(net, ["head"], seed=2)]
    b = [(k, n, m.state_dict()) for k, n, m in randomized_copies(net, ["head"], seed=2)]
    assert [x[:2] for x in a] == [x[:2] for x in b]
    assert all(torch.equal(sa[k], sb[k]) for (_, _, sa), (_, _, sb) in zip(a, b, strict=True)
               for k in sa)


def test_surgery_rejects_bad_arguments() -> None:
    net = _net()
    with pytest.raises(TypeError, match="model"):
        swap_padding("net", "zeros")
    with pytest.raises(ValueError, match="nn.Conv2d"):
        swap_padding(nn.Linear(2, 2), "zeros")
    with pytest.raises(ValueError, match="mode"):
        swap_padding(net, "mirror")
    with pytest.raises(ValueError, match="layers"):
        reinitialize_layers(net, ["nope"])
    with pytest.raises(ValueError, match="mode"):
        next(randomized_copies(net, ["head"], "sideways"))


def test_smooth_model_smooths_relu6_as_efficientnet_lite_uses() -> None:
    """ReLU6 -> softplus_b(z) - softplus_b(z - 6), which tends to ReLU6 as b grows."""
    from visloupe.core.models import SoftplusReLU6, smooth_model

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU6())
    smooth, report = smooth_model(net, 10.0, return_report=True)
    assert isinstance(smooth[1], SoftplusReLU6) and isinstance(net[1], torch.nn.ReLU6)
    assert [old for _, old, _ in report.replaced] == ["ReLU6"]
    z = torch.linspace(-4, 10, 57)
    sharp = SoftplusReLU6(200.0)(z)
    torch.testing.assert_close(sharp, torch.nn.functional.relu6(z), atol=5e-3, rtol=0)
    zg = torch.linspace(-1, 7, 33, dtype=torch.float64).requires_grad_()
    grad = torch.autograd.grad(SoftplusReLU6(10.0)(zg).sum(), zg)[0]
    assert (grad > 0).all() and (grad <= 1).all()  # no dead zone below 0 or above 6
