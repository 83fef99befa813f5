"""COSE on the built-in CNN: the paper's protocol (drop wrong originals, predicted-class targets,
flat means, model pairs on the sensitivity side), calibration against reference explainers,
batching invariance and bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from visloupe.core import data, models
from visloupe.core.evaluation.cose import (
    COSEReport,
    compare_methods,
    cose,
    explain_pair,
    pixel_data,
)
from visloupe.core.evaluation.reference import (
    ConstantExplainer,
    InputIntensityExplainer,
    UniformNoiseExplainer,
    reference_explainers,
)

N = 12


@pytest.fixture(scope="module")
def cnn():
    model, pre = models.pretrained("shapes-cnn")
    return model, pre


@pytest.fixture(scope="module")
def pixels(cnn):
    _, pre = cnn
    return pixel_data(data.load_builtin("shapes", split="test"), pre, n_images=N)


@pytest.fixture(scope="module")
def alts():
    ck = models.checkpoints("shapes-cnn")
    return {"random": ck["random"], "epoch1": ck["epoch1"]}


@pytest.fixture(scope="module")
def gradcam_report(cnn, pixels, alts) -> COSEReport:
    model, _ = cnn
    return cose(model, pixels, "grad_cam", magnitudes_per_transform=2, alt_models=alts)


def test_pixel_data_splits_preprocess_into_pixels_and_normalisation(cnn, pixels) -> None:
    _, pre = cnn
    ds = data.load_builtin("shapes", split="test")
    assert pixels.pixels.shape == (N, 3, 32, 32)
    assert pixels.pixels.min() >= 0 and pixels.pixels.max() <= 1
    direct = pre.batch([ds[i]["image"] for i in range(N)])
    torch.testing.assert_close(pixels.normalize(pixels.pixels), direct, atol=1e-5, rtol=0)
    assert pixels.labels.tolist() == ds["label"][:N]


def test_table_and_aggregates_follow_the_protocol(cnn, pixels, gradcam_report, alts) -> None:
    model, _ = cnn
    r = gradcam_report
    t = r.pairs
    with torch.no_grad():
        pred = model(pixels.normalize(pixels.pixels)).argmax(1)
    correct = (pred == pixels.labels).nonzero().flatten().tolist()
    assert r.n_images == len(correct) and r.n_dropped == N - len(correct)
    assert set(t.image) == {pixels.indices[i] for i in correct}  # wrong originals dropped
    assert (t.prediction == t.label).all()
    # 7 signed ops x 2 magnitudes + 6 unsigned ops + 2 model pairs per kept image
    assert len(t) == r.n_images * (7 * 2 + 6 + len(alts))
    assert set(t[t.kind == "model"].op) == set(alts)
    image = t[t.kind != "model"]
    cons = image[image.unchanged]
    sens = t[~t.unchanged]
    assert r.n_consistency == len(cons) and r.n_sensitivity == len(sens)
    assert r.n_model_pairs == int((sens.kind == "model").sum()) > 0
    assert r.consistency == pytest.approx(cons.similarity.mean())  # flat mean over pairs
    assert r.sensitivity == pytest.approx(1 - sens.similarity.mean())
    assert r.geometric_consistency == pytest.approx(
        cons[cons.kind == "geometric"].similarity.mean())
    assert r.cose == pytest.approx(math.sqrt(r.consistency * r.sensitivity))
    assert t.unchanged.tolist() == (t.changed_prediction == t.label).tolist()
    # the random model nearly always changes the prediction; per-op summary agrees with table
    by_op = r.by_transform().set_index("op")
    assert by_op.loc["random", "pairs"] == r.n_images
    assert 0 < r.consistency <= 1 and 0 <= r.sensitivity <= 1


def test_targets_are_the_transformed_predictions(cnn, pixels) -> None:
    model, _ = cnn
    seen = []

    def spy(m, x, target):
        with torch.no_grad():
            seen.append(torch.equal(target.cpu(), m(x).argmax(1).cpu()))
        return x.mean(1)

    cose(model, pixels, spy, transforms=["Rotate", "Equalize"], magnitudes_per_transform=3)
    assert seen and all(seen)


def test_gradcam_beats_noise_by_a_wide_margin(cnn, pixels, gradcam_report, alts) -> None:
    model, _ = cnn
    noise = cose(model, pixels, UniformNoiseExplainer(0), magnitudes_per_transform=2,
                 alt_models=alts)
    assert gradcam_report.cose > noise.cose + 0.3
    assert noise.consistency < 0.1 and noise.sensitivity > 0.9


def test_reference_explainers_calibrate(cnn, pixels, alts) -> None:
    model, _ = cnn
    const = cose(model, pixels, ConstantExplainer(), magnitudes_per_transform=1,
                 alt_models=alts)
    assert const.photometric_consistency == pytest.approx(1.0)
    assert const.sensitivity < 0.05  # a constant map never changes with the prediction
    intensity = cose(model, pixels, InputIntensityExplainer(), transforms="geometric",
                     magnitudes_per_transform=1)
    # equivariant by construction: flips are matched exactly
    flips = intensity.pairs[intensity.pairs.op.isin(["FlipLR", "FlipUD"])]
    np.testing.assert_allclose(flips.similarity, 1.0, atol=1e-9)
    assert set(reference_explainers()) == {"constant", "input intensity", "uniform noise"}


def test_batching_and_seed(cnn, pixels) -> None:
    model, _ = cnn
    kwargs = dict(transforms=["Rotate", "Contrast"], magnitudes_per_transform=2)
    a = cose(model, pixels, "saliency", **kwargs)
    b = cose(model, pixels, "saliency", batch_size=9, **kwargs)
    np.testing.assert_allclose(a.pairs.similarity, b.pairs.similarity, atol=1e-6)
    assert a.pairs.magnitude.equals(b.pairs.magnitude)
    c = cose(model, pixels, InputIntensityExplainer(), seed=1, **kwargs)
    assert not a.pairs.magnitude.equals(c.pairs.magnitude)


def test_explain_pair_matches_the_batched_table(cnn, pixels) -> None:
    model, _ = cnn
    r = cose(model, pixels, "grad_cam", transforms=["Rotate"], magnitudes_per_transform=1)
    row = r.pairs.iloc[0]
    i = pixels.indices.index(int(row.image))
    view = explain_pair(model, pixels.pixels[i], "grad_cam", "Rotate", float(row.magnitude),
                        normalize=pixels.normalize)
    assert view.similarity == pytest.approx(row.similarity, abs=1e-6)
    assert view.transformed_prediction == row.changed_prediction
    assert view.valid.dtype == torch.bool and not view.valid.all()


def test_every_original_wrong_gives_nan_and_a_warning(cnn, pixels) -> None:
    model, _ = cnn
    with torch.no_grad():
        pred = model(pixels.normalize(pixels.pixels)).argmax(1)
    wrong = type(pixels)(pixels.pixels, (pred + 1) % 5, pixels.indices, pixels.normalize)
    with pytest.warns(RuntimeWarning, match="misclassifies every"):
        r = cose(model, wrong, "saliency", transforms=["Blur"])
    assert math.isnan(r.cose) and r.n_consistency == 0 and r.n_dropped == N
    # the NaN report still says which convention and quantisation applied
    assert r.postprocess == "pair_grayscale" and r.quantized is True
    assert cose(model, pixels, "saliency", transforms=["Blur"]).quantized is True


def test_labels_the_model_cannot_output_are_named(cnn, pixels) -> None:
    """Labels outside the model's outputs are not "misclassified": they are the wrong index
    space (a 10-class data set on an ImageNet model, or the reverse)."""
    model, _ = cnn
    n_out = int(model(pixels.normalize(pixels.pixels[:1])).shape[1])
    outside = type(pixels)(pixels.pixels, pixels.labels + n_out, pixels.indices,
                           pixels.normalize)
    with pytest.raises(ValueError, match=rf"data: every label is outside the model's {n_out} "
                                         r"outputs \(labels up to \d+\)"):
        cose(model, outside, "saliency", transforms=["Blur"])
    some = pixels.labels.clone()
    some[:3] += n_out
    partly = type(pixels)(pixels.pixels, some, pixels.indices, pixels.normalize)
    with pytest.warns(RuntimeWarning, match=rf"data: 3 of {N} labels are outside"):
        r = cose(model, partly, "saliency", transforms=["Blur"])
    assert r.n_dropped >= 3


def test_bad_explainers_and_arguments(cnn, pixels) -> None:
    model, _ = cnn
    with pytest.raises(ValueError, match="expected maps"):
        cose(model, pixels, lambda m, x, t: x.mean(1)[:, :8], transforms=["Blur"])
    with pytest.raises(ValueError, match="NaN"):
        cose(model, pixels, lambda m, x, t: x.mean(1) * float("nan"), transforms=["Blur"])
    with pytest.raises(ValueError, match="transform"):
        cose(model, pixels, "saliency", transforms=["Shear"])
    with pytest.raises(ValueError, match="magnitudes_per_transform"):
        cose(model, pixels, "saliency", transforms=["Rotate"], magnitudes_per_transform=0)
    with pytest.raises(TypeError, match="alt_models"):
        cose(model, pixels, "saliency", transforms=["Blur"], alt_models={"x": 3})
    with pytest.raises(ValueError, match="preprocess"):
        pixel_data(data.load_builtin("shapes", split="test"), lambda im: torch.ones(3, 4, 4) * 2,
                   n_images=2)


def test_compare_methods_has_the_table_shape(cnn, pixels) -> None:
    model, _ = cnn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = compare_methods({"cnn": model}, pixels,
                                {"saliency": "saliency", "constant": ConstantExplainer()},
                                transforms=["Rotate"], magnitudes_per_transform=1,
                                max_sensitivity_kwargs={"n_samples": 2},
                                infidelity_kwargs={"n_samples": 4})
    assert list(table.method) == ["saliency", "constant"] and set(table.model) == {"cnn"}
    for col in ("consistency", "sensitivity", "cose", "infidelity", "max_sensitivity"):
        assert col in table
    const = table.set_index("method").loc["constant"]
    assert const.max_sensitivity == pytest.approx(0.0)
