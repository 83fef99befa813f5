"""explain_predicted(): maps of the predicted classes, and the predictions, from one forward pass
for single-pass methods; the same numbers as predicting first and explaining those targets."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from visloupe.core.attribution import (
    METHODS,
    explain,
    explain_predicted,
    method_spec,
    resolve_explainer,
)

SINGLE_PASS = ["saliency", "saliency_abs", "input_x_gradient", "guided_backprop", "grad_cam",
               "grad_cam_pp"]


class CountingNet(nn.Module):
    """A small ReLU CNN that counts its forward calls; class scores are well separated."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(8, num_classes)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.fc(self.relu2(self.conv2(self.relu1(self.conv1(x)))).mean(dim=(2, 3)))


def counting_net() -> CountingNet:
    torch.manual_seed(0)
    net = CountingNet()
    for p in net.parameters():
        nn.init.normal_(p, std=0.5)
    return net.eval()


def images(n: int = 6, size: int = 16) -> torch.Tensor:
    """Images with their own per-channel offsets, so the model predicts several classes."""
    g = torch.Generator().manual_seed(4)
    return torch.randn(n, 3, size, size, generator=g) + 2 * torch.randn(n, 3, 1, 1, generator=g)


def test_the_single_pass_flags() -> None:
    flagged = {name for name, spec in METHODS.items() if spec.single_pass}
    assert flagged == set(SINGLE_PASS)


@pytest.mark.parametrize("method", SINGLE_PASS)
def test_one_forward_pass_and_same_maps_as_predict_then_explain(method: str) -> None:
    net, x = counting_net(), images()
    with torch.no_grad():
        predicted = net(x).argmax(dim=1)
    assert predicted.unique().numel() > 1  # several classes, so a wrong target would show
    expected = explain(net, x, predicted, method)  # also caches the Grad-CAM layer's dry run
    net.calls = 0
    maps, got = explain_predicted(net, x, method)
    assert net.calls == 1
    assert torch.equal(got, predicted)
    torch.testing.assert_close(maps, expected)
    # and explaining another class gives other maps (the test can see a wrong target)
    other = (predicted + 1) % 5
    assert not torch.allclose(maps, explain(net, x, other, method))


def test_batches_and_multi_pass_methods_agree() -> None:
    net, x = counting_net(), images(5)
    with torch.no_grad():
        predicted = net(x).argmax(dim=1)
    maps, got = explain_predicted(net, x, "grad_cam", batch_size=2)
    assert torch.equal(got, predicted)
    torch.testing.assert_close(maps, explain(net, x, predicted, "grad_cam"))
    assert not method_spec("integrated_gradients").single_pass
    maps, got = explain_predicted(net, x, "integrated_gradients", n_steps=8)
    assert torch.equal(got, predicted)
    torch.testing.assert_close(maps, explain(net, x, predicted, n_steps=8))


def test_token_model_grad_cam() -> None:
    from visloupe.core.models.architectures import TinyViT

    torch.manual_seed(0)
    model, x = TinyViT().eval(), images(3, 32)
    with torch.no_grad():
        predicted = model(x).argmax(dim=1)
    maps, got = explain_predicted(model, x, "grad_cam", relu=False)
    assert torch.equal(got, predicted)
    torch.testing.assert_close(maps, explain(model, x, predicted, "grad_cam", relu=False))


def test_explainer_contract_for_registry_and_user_callables() -> None:
    net, x = counting_net(), images(4)
    with torch.no_grad():
        predicted = net(x).argmax(dim=1)
    seen = []

    def mine(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seen.append(target.clone())
        return inputs.mean(dim=1) * (target[:, None, None] + 1)

    maps, got = resolve_explainer(mine).explain_predicted(net, x)
    assert torch.equal(got, predicted) and torch.equal(seen[0], predicted)
    torch.testing.assert_close(maps, x.mean(dim=1) * (predicted[:, None, None] + 1))
    maps, got = resolve_explainer(("grad_cam", {"relu": False})).explain_predicted(net, x)
    torch.testing.assert_close(maps, explain(net, x, predicted, "grad_cam", relu=False))


def test_frozen_model_and_errors() -> None:
    net, x = counting_net(), images(2)
    for p in net.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        maps, _ = explain_predicted(net, x, "saliency")
    assert maps.abs().sum() > 0 and all(p.grad is None for p in net.parameters())
    with pytest.raises(ValueError, match="reduce"):
        explain_predicted(net, x, "saliency", reduce="mean")
    with pytest.raises(ValueError, match=r"\(N, num_classes\)"):
        explain_predicted(nn.Conv2d(3, 2, 1), x, "saliency")
