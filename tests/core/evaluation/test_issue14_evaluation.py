"""Regression tests (issue 14) for the evaluation functions: one image through max-sensitivity,
compare_methods and smoothing_check (Captum does not expand a 1-element target over the
perturbed copies), and clear errors for meta-device models and wrong channel counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.nets import random_images, tiny_cnn
from visloupe.core.evaluation import (
    PixelData,
    abpc,
    compare_methods,
    cose,
    infidelity,
    max_sensitivity,
    run_randomization,
    smoothing_check,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_max_sensitivity_of_one_image_equals_its_row_in_a_batch() -> None:
    model, x = tiny_cnn(16), random_images(2, 16)
    batch = max_sensitivity(model, x, "saliency", target=0, n_samples=4, seed=2)
    one = max_sensitivity(model, x[:1], "saliency", target=0, n_samples=4, seed=2)
    assert one.shape == (1,) and torch.isfinite(one).all() and (one > 0).all()
    # image 0's perturbations are the generator's first draws either way
    torch.testing.assert_close(one, batch[:1])
    chunked = max_sensitivity(model, x, "saliency", target=0, n_samples=4, seed=2, batch_size=1)
    assert chunked.shape == (2,) and torch.isfinite(chunked).all()
    torch.testing.assert_close(chunked[:1], one)
    tensor_target = max_sensitivity(model, x[:1], "saliency", target=torch.tensor([0]),
                                    n_samples=4, seed=2)
    torch.testing.assert_close(tensor_target, one)


def test_compare_methods_and_smoothing_check_with_one_image() -> None:
    model, x = tiny_cnn(16), random_images(3, 16)
    with torch.no_grad():
        pred = model(x).argmax(1)
    labels = (pred + 1) % 3
    labels[1] = pred[1]  # exactly one image is classified correctly
    data = PixelData(x, labels, (0, 1, 2), lambda t: t)
    table = compare_methods(model, data, ["saliency", "input_x_gradient"],
                            metrics=("infidelity", "max_sensitivity"))
    assert np.isfinite(table[["infidelity", "max_sensitivity"]].to_numpy(float)).all()
    expected = max_sensitivity(model, x[1:2], "saliency", pred[1:2])
    got = table.set_index("method").loc["saliency", "max_sensitivity"]
    assert got == pytest.approx(float(expected[0]), rel=1e-6)
    check = smoothing_check({"original": model}, x[1:2], ["saliency"], n_samples=3)
    assert set(check.metric) == {"infidelity", "max_sensitivity"}
    assert (check["count"] == 1).all() and np.isfinite(check["mean"].to_numpy(float)).all()


def _labelled(channels: int) -> PixelData:
    x = torch.rand(2, channels, 16, 16, generator=torch.Generator().manual_seed(3))
    return PixelData(x, torch.tensor([0, 1]), (0, 1), lambda t: t)


@pytest.mark.parametrize("channels", [1, 4])
def test_wrong_channel_count_is_named_by_every_entry_point(channels: int) -> None:
    model = tiny_cnn(16)
    x = _labelled(channels).pixels
    calls = {
        "max_sensitivity": lambda: max_sensitivity(model, x, "saliency"),
        "infidelity": lambda: infidelity(model, x, "saliency"),
        "abpc": lambda: abpc(model, x, "saliency"),
        "run_randomization": lambda: run_randomization(model, x, "saliency"),
        "cose": lambda: cose(model, _labelled(channels), "saliency", transforms="photometric",
                             magnitudes_per_transform=1),
        "smoothing_check": lambda: smoothing_check({"m": model}, x, "saliency"),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=f"expects 3 input channel.*got {channels}"):
            call()
        assert name  # (the failing entry point shows in the traceback)


def test_meta_device_model_is_named_by_every_entry_point() -> None:
    meta = tiny_cnn(16).to("meta")
    x = random_images(2, 16)
    calls = [
        lambda: max_sensitivity(meta, x, "saliency"),
        lambda: infidelity(meta, x, "saliency"),
        lambda: abpc(meta, x, "saliency"),
        lambda: run_randomization(meta, x, "saliency"),
        lambda: cose(meta, PixelData(x, torch.tensor([0, 1]), (0, 1), lambda t: t), "saliency"),
        lambda: smoothing_check({"m": meta}, x, "saliency"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="model.*'meta' device"):
            call()
