"""Cases a review with users' own models found (issue 15): an in-place ReLU after the Grad-CAM
layer, 0/1 uint8 object masks, occlusion on a float64 model."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from visloupe.core import attribution as A
from visloupe.core.evaluation.localisation import energy_in_mask, pointing_game


def _stack(inplace: bool) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=inplace),
                         nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(inplace=inplace),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3)).eval()


def test_cams_of_a_layer_followed_by_an_inplace_relu() -> None:
    """The hooked conv's own output and its gradient, not the ReLU's: the same maps as the
    model without in-place ops (Grad-CAM++'s weights see the difference)."""
    x = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(1)) - 0.5
    for method in ("grad_cam", "grad_cam_pp"):
        for layer in ("0", "2"):
            plain = A.explain(_stack(False), x, 1, method, layer=layer)
            inplace = A.explain(_stack(True), x, 1, method, layer=layer)
            torch.testing.assert_close(inplace, plain, rtol=0, atol=1e-6)


def test_uint8_label_masks_are_binary() -> None:
    maps = torch.zeros(2, 6, 6)
    maps[:, 1, 2] = 1.0
    mask = torch.zeros(2, 6, 6, dtype=torch.uint8)
    mask[:, :3, :3] = 1  # mask.astype(np.uint8): 0/1
    assert energy_in_mask(maps, mask).tolist() == [1.0, 1.0]
    assert pointing_game(maps, mask, tolerance=0).hits.tolist() == [1.0, 1.0]
    assert energy_in_mask(maps, mask * 255).tolist() == [1.0, 1.0]  # 0/255 as before
    assert energy_in_mask(maps, torch.full_like(mask, 100)).tolist() == [0.0, 0.0]  # 100 < 128


def test_occlusion_keeps_the_model_dtype() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(4, 3)).double()
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a = A.attribute(m, x, 0, "occlusion", window=4, stride=4)
    assert a.dtype == torch.float64
    with torch.no_grad():
        xo = x.clone()
        xo[..., :4, :4] = 0
        drop = m(x)[0, 0] - m(xo)[0, 0]  # the top-left window alone covers pixel (0, 0)
    assert abs(float(a[0, 0, 0, 0]) - float(drop)) < 1e-7


class _Pair(nn.Module):
    """A layer returning a named tuple ``(features, aux)``, as some backbones' blocks do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor):
        y = self.conv(x)
        return _PairOut(y, y.mean())


_PairOut = __import__("collections").namedtuple("_PairOut", "features aux")


class _PairNet(nn.Module):
    def __init__(self, inplace: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.block = _Pair()
        self.relu = nn.ReLU(inplace=inplace)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        assert isinstance(out, _PairOut)  # the hook hands back the same output type
        return self.head(self.relu(out.features))


def test_cams_of_a_named_tuple_layer_followed_by_an_inplace_relu() -> None:
    x = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(1)) - 0.5
    for method in ("grad_cam", "grad_cam_pp"):
        plain = A.explain(_PairNet(False).eval(), x, 1, method, layer="block")
        inplace = A.explain(_PairNet(True).eval(), x, 1, method, layer="block")
        torch.testing.assert_close(inplace, plain, rtol=0, atol=1e-6)


class _DictBlock(nn.Module):
    """A layer returning a dict, as HF encoders return ModelOutputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict:
        y = self.conv(x)
        return {"features": y, "aux": y.mean()}


class _DictNet(nn.Module):
    def __init__(self, no_grad: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.block = _DictBlock()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        self.no_grad = no_grad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(not self.no_grad):
            out = self.block(x)
        return self.head(torch.relu_(out["features"]))


def test_grad_cam_on_a_dict_layer_and_on_a_layer_outside_the_graph() -> None:
    """A dict output's tensor is captured (and copied, so the in-place ReLU after it does not
    change the map); a layer computed under no_grad is named, not a bare autograd error."""
    from captum.attr import LayerGradCam

    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) - 0.5
    model = _DictNet().eval()
    cam = A.explain(model, x, 1, "grad_cam", layer="block.conv")
    ref = LayerGradCam(model, model.block.conv).attribute(x, target=1, relu_attributions=True)
    torch.testing.assert_close(A.explain(model, x, 1, "grad_cam", layer="block"), cam)
    torch.testing.assert_close(cam[:, None], torch.nn.functional.interpolate(
        ref, size=(8, 8), mode="bilinear", align_corners=False), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="layer: its output is outside the autograd graph"):
        A.explain(_DictNet(no_grad=True).eval(), x, 1, "grad_cam", layer="block")
