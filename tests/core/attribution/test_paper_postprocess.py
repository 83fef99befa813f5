"""The COSE paper's map convention (Daroya, Sun, Maji, ICCV-W 2023): min-max for CAMs, PAIR
saliency's ``VisualizeImageGrayscale`` for gradient maps, checked against hand-computed values;
``postprocess=`` through explain / explain_predicted / the explainer contract; float64 models
stay float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.nets import random_images, tiny_cnn
from torch import nn
from visloupe.core.attribution import (
    MAP_KINDS,
    POSTPROCESSES,
    apply_postprocess,
    attribute,
    available_methods,
    explain,
    explain_predicted,
    method_spec,
    normalize,
    pair_grayscale,
    resolve_explainer,
    resolve_postprocess,
)


def planted_attributions() -> torch.Tensor:
    """(1, 2, 4, 4) float64 attributions whose sum of |.| over channels is 2, 3, ..., 16 and
    one outlier 100 (row-major), with mixed signs split over the two channels."""
    s = torch.cat([torch.arange(2.0, 17.0, dtype=torch.float64),
                   torch.tensor([100.0], dtype=torch.float64)]).view(4, 4)
    sign = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(8).view(4, 4)
    a = torch.stack([0.25 * s * sign, -0.75 * s * sign])  # |a0| + |a1| = s
    return a[None]


def test_pair_grayscale_against_hand_computed_values() -> None:
    attr = planted_attributions()
    # 16 values sorted: 2..16, 100; linear percentile at 0.99 * 15 = 14.85: 16 + 0.85 * 84
    p99 = 16 + 0.85 * (100 - 16)
    assert p99 == pytest.approx(87.4)
    assert float(np.percentile(attr.abs().sum(1).numpy(), 99)) == pytest.approx(p99)
    expected = ((attr.abs().sum(1) - 2.0) / (p99 - 2.0)).clamp(0, 1)
    out = pair_grayscale(attr)
    assert out.shape == (1, 4, 4) and out.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)
    assert out[0, 0, 0] == 0 and out[0, 3, 3] == 1  # the minimum -> 0, the outlier clipped to 1
    assert float(out[0, 3, 2]) == pytest.approx((16 - 2) / 85.4, abs=1e-15)
    # a map (N, H, W) is one channel: the same recipe on |map|
    torch.testing.assert_close(pair_grayscale(attr.abs().sum(1)), expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(pair_grayscale(-attr.abs().sum(1)[0]), expected[0], rtol=0,
                               atol=1e-15)


def test_pair_grayscale_equals_the_recipe_in_numpy() -> None:
    """PAIR's recipe written out: sum |.| over channels, vmax = 99th percentile, vmin = min,
    clip((s - vmin) / (vmax - vmin), 0, 1)."""
    attr = torch.randn(3, 3, 9, 7, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64)
    out = pair_grayscale(attr).numpy()
    for i in range(3):
        s = np.abs(attr[i].numpy()).sum(axis=0)
        vmax, vmin = np.percentile(s, 99), s.min()
        np.testing.assert_allclose(out[i], np.clip((s - vmin) / (vmax - vmin), 0, 1),
                                   rtol=0, atol=1e-14)


def test_minmax_against_hand_computed_values() -> None:
    cam = torch.tensor([[[0.0, 1.0], [3.0, 5.0]]], dtype=torch.float64) * 2 + 1  # 1, 3, 7, 11
    out = apply_postprocess(cam, "minmax")
    torch.testing.assert_close(out, torch.tensor([[[0.0, 0.2], [0.6, 1.0]]],
                                                 dtype=torch.float64), rtol=0, atol=1e-15)
    # a positive scale and an offset do not change the min-max map
    torch.testing.assert_close(apply_postprocess(4 * cam + 9, "minmax"), out, rtol=0,
                               atol=1e-15)


def test_paper_picks_by_the_registry_kind() -> None:
    assert POSTPROCESSES == ("paper", "minmax", "pair_grayscale", "none")
    kinds = {name: method_spec(name).map_kind for name in available_methods()}
    assert set(kinds.values()) <= set(MAP_KINDS)
    assert kinds["grad_cam"] == kinds["grad_cam_pp"] == "cam"
    for name in ("saliency", "saliency_abs", "input_x_gradient", "integrated_gradients",
                 "smoothgrad", "deeplift", "guided_backprop", "split_ig"):
        assert kinds[name] == "gradient", name
    assert kinds["occlusion"] == kinds["feature_ablation"] == "perturbation"
    assert resolve_postprocess("paper", "cam") == "minmax"
    assert resolve_postprocess("paper", "gradient") == "pair_grayscale"
    assert resolve_postprocess("paper", "perturbation") == "minmax"
    assert resolve_postprocess("paper", None) == "minmax"
    assert resolve_postprocess("none", "cam") is None and resolve_postprocess(None) is None
    with pytest.raises(ValueError, match="postprocess: expected one of"):
        resolve_postprocess("zscore", "cam")
    with pytest.raises(ValueError, match="kind: expected one of"):
        resolve_postprocess("paper", "lime")


def test_explain_applies_the_paper_convention_and_defaults_to_raw() -> None:
    net = tiny_cnn()
    x = random_images(3, 8)
    raw = explain(net, x, 1, "saliency")
    torch.testing.assert_close(raw, attribute(net, x, 1, "saliency").sum(1))  # default: raw
    paper = explain(net, x, 1, "saliency", postprocess="paper")
    torch.testing.assert_close(paper, pair_grayscale(attribute(net, x, 1, "saliency")))
    # an explicit reduce= is honoured before the recipe
    torch.testing.assert_close(explain(net, x, 1, "saliency", reduce="max_abs",
                                       postprocess="pair_grayscale"),
                               pair_grayscale(attribute(net, x, 1, "saliency").abs().amax(1)))
    cam = explain(net, x, 1, "grad_cam", postprocess="paper")
    torch.testing.assert_close(cam, normalize(explain(net, x, 1, "grad_cam"), "unit"))
    assert cam.amin() >= 0 and cam.amax() <= 1
    maps, pred = explain_predicted(net, x, "grad_cam", postprocess="paper")
    torch.testing.assert_close(maps, explain(net, x, pred, "grad_cam", postprocess="paper"))
    torch.testing.assert_close(explain(net, x, 1, "saliency", postprocess=lambda m: m * 2),
                               raw * 2)
    with pytest.raises(ValueError, match="postprocess: expected one of"):
        explain(net, x, 1, "saliency", postprocess="paper-ish")
    with pytest.raises(ValueError, match="postprocess: the callable must return"):
        explain(net, x, 1, "saliency", postprocess=lambda m: m[:, :2])


def test_the_explainer_contract_carries_postprocess() -> None:
    net = tiny_cnn()
    x = random_images(2, 8)
    e = resolve_explainer("integrated_gradients", n_steps=4, postprocess="paper")
    assert e.postprocess == "paper" and e.kind == "gradient"
    torch.testing.assert_close(e(net, x, 0), pair_grayscale(
        attribute(net, x, 0, "integrated_gradients", n_steps=4)))
    assert e.key != resolve_explainer("integrated_gradients", n_steps=4).key
    pair = resolve_explainer(("grad_cam", {"postprocess": "minmax"}))
    assert pair.postprocess == "minmax" and pair.kind == "cam"

    def signed_map(model, inputs, target):
        return inputs.sum(1) - 1.5

    signed_map.map_kind = "gradient"
    g = resolve_explainer(signed_map, postprocess="paper")
    torch.testing.assert_close(g(net, x, 0), pair_grayscale(x.sum(1) - 1.5))
    plain = resolve_explainer(lambda m, i, t: i.sum(1) * 3 + 2, postprocess="paper")
    assert plain.kind is None  # no map_kind: min-max
    torch.testing.assert_close(plain(net, x, 0), normalize(x.sum(1), "unit"))
    nan = resolve_explainer(lambda m, i, t: i.sum(1) * float("nan"), postprocess="minmax")
    assert torch.isnan(nan(net, x, 0)).all()  # scaling never hides NaN maps
    with pytest.raises(ValueError, match="postprocess"):
        resolve_explainer("saliency", postprocess="unit")


def test_float64_model_runs_through_explain_in_float64() -> None:
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3)).double().eval()
    with torch.no_grad():
        linear[1].weight.copy_(1 / torch.arange(1, 145, dtype=torch.float64).view(3, 48))
    x = random_images(2, 4)  # float32 inputs: the model's dtype wins
    grad = explain(linear, x, 2, "saliency", reduce=None)
    assert grad.dtype == torch.float64
    w = linear[1].weight[2].view(3, 4, 4).sum(0)  # d logit_2 / dx, summed over channels
    torch.testing.assert_close(grad, w.expand(2, 4, 4), rtol=0, atol=0)
    assert (w.float().double() != w).any()  # a float32 round trip would have shown
    cnn = tiny_cnn().double()
    seen = []
    cnn.register_forward_pre_hook(lambda _m, args: seen.append(args[0].dtype))
    for method in ("grad_cam", "integrated_gradients", "smoothgrad"):
        out = explain(cnn, random_images(2, 8), None, method, postprocess="paper")
        assert out.dtype == torch.float64, method
    assert seen and set(seen) == {torch.float64}
