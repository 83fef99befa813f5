"""Regression tests (issue 14): SmoothGrad noise follows the image, not its batch position;
non-finite baselines and meta-device models are refused by name; DeepLIFT warns where Captum's
rules do not keep completeness (Shrikumar et al., ICML 2017)."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers.nets import random_images, tiny_cnn
from torch import nn
from visloupe.core.attribution import (
    attribute,
    available_methods,
    deeplift_unsupported,
    explain,
    image_seed,
    method_spec,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- SmoothGrad seeds


@pytest.mark.parametrize("params", [{}, {"nt_type": "vargrad"},
                                    {"base": "integrated_gradients", "n_steps": 4}])
def test_smoothgrad_map_does_not_depend_on_the_batch(params: dict) -> None:
    model, x = tiny_cnn(8), random_images(2, 8)
    alone = explain(model, x[1:], 0, "smoothgrad", nt_samples=6, seed=3, **params)
    in_batch = explain(model, x, 0, "smoothgrad", nt_samples=6, seed=3, **params)
    torch.testing.assert_close(in_batch[1:], alone, atol=1e-6, rtol=1e-5)
    # chunking (batch_size=1) puts the image at position 0 of its chunk: same map again
    chunked = explain(model, x, 0, "smoothgrad", nt_samples=6, seed=3, batch_size=1, **params)
    torch.testing.assert_close(chunked, in_batch, atol=1e-6, rtol=1e-5)
    # the seed still matters, and two images get different noise
    other = explain(model, x[1:], 0, "smoothgrad", nt_samples=6, seed=4, **params)
    assert (other - alone).abs().max() > 1e-4
    assert image_seed(3, x[0]) != image_seed(3, x[1]) != image_seed(4, x[1])


def test_every_stochastic_method_gets_content_seeds() -> None:
    stochastic = [m for m in available_methods() if method_spec(m).stochastic]
    assert stochastic  # smoothgrad at least
    model, x = tiny_cnn(8), random_images(2, 8)
    for name in stochastic:
        spec = method_spec(name)
        seen: list[tuple[int, ...]] = []

        def spy(forward, inputs, target, *, seeds, spec=spec, seen=seen, **kw):
            seen.append(tuple(seeds))
            return spec.fn(forward, inputs, target, seeds=seeds, **kw)

        fake = type(spec)(**{**spec.__dict__, "fn": spy, "name": f"{name}_spy"})
        attribute(model, x, 0, fake, seed=5)
        attribute(model, x[1:], 0, fake, seed=5)
        assert seen[0] == (image_seed(5, x[0]), image_seed(5, x[1])) and seen[1] == seen[0][1:]


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_baseline_is_refused(bad: float) -> None:
    model, x = tiny_cnn(8), random_images(2, 8)
    for method in ("integrated_gradients", "deeplift", "occlusion"):
        with pytest.raises(ValueError, match="baseline"):
            explain(model, x, 0, method, baseline=bad)
    tensor = torch.zeros(3, 8, 8)
    tensor[1, 2, 3] = bad
    with pytest.raises(ValueError, match="baseline.*1 NaN/inf"):
        explain(model, x, 0, "integrated_gradients", baseline=tensor)


def test_meta_model_and_wrong_channels_are_named() -> None:
    x = random_images(2, 8)
    meta = tiny_cnn(8).to("meta")
    with pytest.raises(ValueError, match="model.*meta"):
        explain(meta, x, 0, "saliency")
    model = tiny_cnn(8)
    for channels, hint in ((1, "grayscale"), (4, "RGBA")):
        wrong = torch.rand(2, channels, 8, 8)
        with pytest.raises(ValueError, match=f"inputs: .*expects 3 input channel.*got "
                                             f"{channels}.*{hint}"):
            explain(model, wrong, 0, "integrated_gradients")


# ----------------------------------------------------------------------------- DeepLIFT caveat


def _gelu_mlp() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.LayerNorm(32), nn.GELU(),
                             nn.Linear(32, 3)).eval()


def _completeness_gap(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attr = attribute(model, x, 0, "deeplift")
    with torch.no_grad():
        delta = model(x)[:, 0] - model(torch.zeros_like(x))[:, 0]
    return (attr.sum(dim=(1, 2, 3)) - delta).abs() / delta.abs()


def test_deeplift_warns_on_gelu_layernorm_and_is_really_incomplete_there() -> None:
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    model = _gelu_mlp()
    with pytest.warns(UserWarning, match="deeplift.*GELU.*LayerNorm"):
        explain(model, x, 0, "deeplift")
    assert deeplift_unsupported(list(model.modules())) == ["GELU", "LayerNorm"]
    assert _completeness_gap(model, x).max() > 0.05  # the warning is justified
    spec = method_spec("deeplift")
    assert "GELU" in spec.notes and "LayerNorm" in spec.notes and "exact" in spec.description


def test_deeplift_on_a_relu_cnn_is_silent_and_complete() -> None:
    model = tiny_cnn(8)
    x = random_images(3, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explain(model, x, 0, "deeplift")
    assert deeplift_unsupported(list(model.modules())) == []
    assert _completeness_gap(model, x).max() < 1e-4
