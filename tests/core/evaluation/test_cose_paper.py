"""COSE follows the official pipeline of Daroya, Sun, Maji (ICCV-W 2023): maps scaled per map to
[0, 1] before SSIM by default (``postprocess="paper"``), raw maps with ``postprocess=None``;
8-bit transformed pixels (PIL's uint8 arithmetic) for 8-bit data; the model's dtype kept."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers.nets import tiny_cnn
from helpers.pil_ops import PIL_OPS
from PIL import Image
from torch import nn
from visloupe.core import data, models
from visloupe.core.attribution import apply_postprocess, explain, resolve_explainer
from visloupe.core.evaluation import (
    PHOTOMETRIC,
    PixelData,
    apply_transform,
    compare_methods,
    cose,
    explain_pair,
    invert_map,
    is_8bit,
    pixel_data,
    quantize_8bit,
    ssim,
    validity_mask,
)
from visloupe.core.evaluation.transforms import transform_spec


class ConstantNet(nn.Module):
    """Always predicts class 0 (zero conv weights, bias (1, 0)): every pair is a consistency
    pair."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.copy_(torch.tensor([1.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


def affine_of_a_pattern(model, inputs, target):
    """``a * pattern + b`` with ``a > 0`` and ``b`` that change with the image's brightness:
    raw maps differ under Brightness, min-max maps do not."""
    h, w = inputs.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pattern = torch.sin(yy / 2.0) + torch.cos(xx / 3.0) + (yy * xx) / (h * w)
    mean = inputs.mean(dim=(1, 2, 3)).view(-1, 1, 1)
    return (1 + 4 * mean) * pattern.to(inputs) + 3 * mean


def grid_images(n: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(30, 200, (n, 3, size, size), generator=gen).float() / 255


def test_ssim_of_scaled_and_shifted_maps_is_one_under_minmax() -> None:
    m = torch.rand(2, 12, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    other = 2.5 * m + 0.7
    assert (ssim(m, other) < 0.99).all()  # raw: the luminance and contrast terms differ
    scaled = ssim(apply_postprocess(m, "minmax"), apply_postprocess(other, "minmax"))
    torch.testing.assert_close(scaled, torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.filterwarnings("ignore:COSE of .*no pairs for sensitivity")
def test_cose_applies_the_paper_convention_by_default() -> None:
    x = grid_images()
    pdata = PixelData(x, torch.zeros(3, dtype=torch.long), (0, 1, 2), lambda t: t)
    r = cose(ConstantNet(), pdata, affine_of_a_pattern, transforms=["Brightness"],
             magnitudes_per_transform=4)
    assert r.postprocess == "minmax"  # a callable without map_kind: min-max
    assert r.pairs.unchanged.all() and len(r.pairs) == 12
    np.testing.assert_allclose(r.pairs.similarity, 1.0, atol=1e-9)
    raw = cose(ConstantNet(), pdata, affine_of_a_pattern, transforms=["Brightness"],
               magnitudes_per_transform=4, postprocess=None)
    assert raw.postprocess == "none"
    assert raw.pairs.magnitude.equals(r.pairs.magnitude)  # same draws, only the scaling differs
    assert (raw.pairs.similarity < 0.999).all()


def _raw_pipeline(model, pdata, table, method):
    """Today's raw behaviour, pair by pair: raw explain maps, float transforms, SSIM."""
    sims = []
    norm = pdata.normalize
    for row in table.itertuples(index=False):
        i = pdata.indices.index(int(row.image))
        x = pdata.pixels[i:i + 1]
        s0 = explain(model, norm(x), int(row.label), method).double()
        spec = transform_spec(row.op)
        mag = float(row.magnitude) if spec.signed else None
        xt = apply_transform(row.op, x, mag)
        st = explain(model, norm(xt), int(row.changed_prediction), method).double()
        back = invert_map(row.op, st, mag)
        valid = validity_mask(row.op, back.shape, mag) if spec.masked else None
        sims.append(float(ssim(s0, back, 5, valid)[0]))
    return np.asarray(sims)


@pytest.fixture(scope="module")
def shapes():
    model, pre = models.pretrained("shapes-cnn")
    return model, pixel_data(data.load_builtin("shapes", split="test"), pre, n_images=4)


@pytest.mark.parametrize("method", ["grad_cam", "saliency"])
def test_postprocess_none_reproduces_the_raw_behaviour(shapes, method) -> None:
    model, pdata = shapes
    assert pdata.eight_bit  # PIL-read shapes, resized in PIL: 8-bit
    kwargs = dict(transforms=["Rotate", "Contrast", "FlipLR"], magnitudes_per_transform=1)
    raw = cose(model, pdata, method, postprocess=None, quantize=False, **kwargs)
    assert raw.postprocess == "none" and not raw.quantized
    np.testing.assert_allclose(raw.pairs.similarity, _raw_pipeline(model, pdata, raw.pairs,
                                                                    method), atol=1e-6)
    paper = cose(model, pdata, method, **kwargs)
    assert paper.quantized
    assert paper.postprocess == ("minmax" if method == "grad_cam" else "pair_grayscale")
    # the explainer's own setting wins over cose's default
    own = cose(model, pdata, resolve_explainer(method, postprocess="none"), quantize=False,
               **kwargs)
    np.testing.assert_allclose(own.pairs.similarity, raw.pairs.similarity, atol=1e-12)
    view = explain_pair(model, pdata.pixels[0], method, "FlipLR", normalize=pdata.normalize)
    row = paper.pairs[(paper.pairs.op == "FlipLR") & (paper.pairs.image == pdata.indices[0])]
    if len(row):
        assert view.similarity == pytest.approx(float(row.similarity.iloc[0]), abs=1e-6)


def test_compare_methods_passes_postprocess_and_quantize(shapes) -> None:
    model, pdata = shapes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kwargs = dict(metrics=("cose",), transforms=["Blur"], magnitudes_per_transform=1)
        paper = compare_methods({"cnn": model}, pdata, {"gc": "grad_cam", "sal": "saliency"},
                                **kwargs)
        raw = compare_methods({"cnn": model}, pdata, {"gc": "grad_cam"}, postprocess=None,
                              quantize=False, **kwargs)
    assert list(paper.postprocess) == ["minmax", "pair_grayscale"]
    assert paper.quantized.all() and list(raw.postprocess) == ["none"]
    assert not raw.quantized.any()


# --------------------------------------------------------------------------- 8-bit pixels




def test_quantize_rounds_as_pil_does_on_a_planted_pixel() -> None:
    x = torch.full((1, 3, 6, 6), 100 / 255)
    x[0, :, 0, 0] = 1 / 255
    out = apply_transform("Brightness", x, 0.5, quantize=True)
    assert out[0, 0, 0, 0] * 255 == pytest.approx(1.0)  # PIL: uint8(1 * 1.5) = 1
    assert out[0, 0, 3, 3] * 255 == pytest.approx(150.0)
    float_out = apply_transform("Brightness", x, 0.5)
    assert float_out[0, 0, 0, 0] * 255 == pytest.approx(1.5)  # not 8-bit
    assert is_8bit(out) and not is_8bit(float_out) and out.dtype == x.dtype
    ref = np.asarray(PIL_OPS["Brightness"](Image.fromarray(
        (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)), 1.5))
    np.testing.assert_array_equal((out[0].permute(1, 2, 0).numpy() * 255).round(), ref)
    torch.testing.assert_close(quantize_8bit(torch.tensor([0.3 / 255, 200.6 / 255])) * 255,
                               torch.tensor([0.0, 201.0]))


@pytest.mark.parametrize("op", PHOTOMETRIC)
def test_quantized_photometric_ops_are_pixel_exact_against_pil(op: str) -> None:
    rng = np.random.default_rng(7)
    arr = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    x = torch.from_numpy(arr).permute(2, 0, 1)[None].double() / 255
    signed = transform_spec(op).signed
    for m in ([-0.99, -0.495, 0.033, 0.66, 0.99] if signed else [None]):
        ref = np.asarray(PIL_OPS[op](img, None if m is None else 1 + m)).astype(int)
        out = apply_transform(op, x, m, quantize=True)[0].permute(1, 2, 0).numpy() * 255
        np.testing.assert_array_equal(np.round(out).astype(int), ref, err_msg=f"{op} {m}")


class ThresholdNet(nn.Module):
    """Class 1 iff the top-left red pixel is above level 1.2 (of 255), else class 0."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, 0, 0, 0] * 255 - 1.2
        return torch.stack([-v, v], dim=1) * self.scale


@pytest.mark.filterwarnings("ignore:COSE of .*no pairs for sensitivity")
def test_cose_quantizes_transformed_pixels_of_8bit_data() -> None:
    x = torch.full((2, 3, 8, 8), 100 / 255)
    x[:, :, 0, 0] = 1 / 255  # level 1: class 0; Brightness x1.5 gives 1.5 (float) or 1 (uint8)
    pdata = PixelData(x, torch.zeros(2, dtype=torch.long), (0, 1), lambda t: t)
    assert is_8bit(x) and pdata.eight_bit is None
    kwargs = dict(transforms=["Brightness"], magnitudes_per_transform=20, seed=0)
    auto = cose(ThresholdNet(), pdata, lambda m, i, t: i.mean(1), **kwargs)
    assert auto.quantized and auto.pairs.unchanged.all()  # like PIL: never above level 1
    off = cose(ThresholdNet(), pdata, lambda m, i, t: i.mean(1), quantize=False, **kwargs)
    assert not off.quantized
    flipped = off.pairs[~off.pairs.unchanged]
    assert len(flipped) and (flipped.magnitude > 0.2).all()  # 1 + m > 1.2 in float pixels
    # data that is not 8-bit is left as it is
    soft = PixelData(x + 0.1 / 255, pdata.labels, (0, 1), lambda t: t)
    assert not cose(ThresholdNet(), soft, lambda m, i, t: i.mean(1), **kwargs).quantized
    with pytest.raises(TypeError, match="quantize"):
        cose(ThresholdNet(), pdata, lambda m, i, t: i.mean(1), quantize="yes", **kwargs)


def test_pixel_data_records_8bit_and_keeps_float64() -> None:
    ds = data.load_builtin("shapes", split="test")
    assert pixel_data(ds, n_images=2).eight_bit
    soft = pixel_data(ds, lambda im: torch.from_numpy(
        np.asarray(im, dtype=np.float64) / 255).permute(2, 0, 1) * 0.999, n_images=2)
    assert soft.pixels.dtype == torch.float64 and soft.eight_bit is False


# --------------------------------------------------------------------------- dtype


def test_float64_model_runs_through_cose_in_float64() -> None:
    model = tiny_cnn(size=16).double()
    x = grid_images(4, 16, seed=2)  # float32 8-bit pixels
    with torch.no_grad():
        labels = model(x.double()).argmax(1)
    pdata = PixelData(x, labels, (0, 1, 2, 3), lambda t: (t - 0.5) / 0.25)
    seen: list[torch.dtype] = []
    handle = model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].dtype))
    maps: list[torch.dtype] = []

    def spy(m, inputs, target):
        maps.append(inputs.dtype)
        return explain(m, inputs, target, "saliency")

    try:
        for explainer in ("grad_cam", "integrated_gradients", spy):
            r = cose(model, pdata, explainer, transforms=["Rotate", "Brightness"],
                     magnitudes_per_transform=1, alt_models={"copy": tiny_cnn(16, 1).double()})
            assert r.n_images == 4 and np.isfinite(r.pairs.similarity).all()
    finally:
        handle.remove()
    assert seen and set(seen) == {torch.float64}
    assert maps and set(maps) == {torch.float64}
    view = explain_pair(model, x[0], "grad_cam", "Rotate", 9.0, normalize=pdata.normalize)
    assert view.transformed.dtype == torch.float64


def test_compare_methods_alt_models_keyed_by_a_non_model_is_an_error() -> None:
    """{"random": m} instead of {model_name: {"random": m}} used to drop every model pair."""
    from torch import nn
    from visloupe.core.evaluation import compare_methods

    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match=r"alt_models: expected keys among the model names"):
        compare_methods({"m": model}, torch.rand(2, 3, 8, 8), ["saliency"], metrics=("cose",),
                        alt_models={"random": model})


def test_preprocess_keyed_by_a_non_model_is_an_error() -> None:
    """A preprocess dict whose key names no model would silently fall back to None (the
    images read as they are); compare_methods and COSEExplorer both refuse it."""
    from torch import nn
    from visloupe.core.evaluation import compare_methods
    from visloupe.widgets import COSEExplorer

    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    photos = data.load_builtin("photos", "test", max_size=32)
    pre = {"resnet": models.ImagePreprocess(16, "RGB", 0.0, 1.0)}
    message = r"preprocess: expected keys among the model names \['m'\], got \['resnet'\]"
    with pytest.raises(ValueError, match=message):
        compare_methods({"m": model}, photos, ["saliency"], metrics=("cose",), preprocess=pre)
    with pytest.raises(ValueError, match=message):
        COSEExplorer({"m": model}, photos, ["saliency"], preprocess=pre)


def test_unlabelled_items_are_dropped_not_fatal() -> None:
    """Photos without an ImageNet class (label -1) count as not correctly classified; the
    labelled ones keep their labels (one missing label used to discard them all)."""
    from visloupe.core.evaluation import pixel_data

    photos = data.load_builtin("photos", "test", max_size=64)
    pdata = pixel_data(photos, models.ImagePreprocess(32, "RGB", 0.0, 1.0), indices=[0, 1, 10])
    assert pdata.labels.tolist() == [281, 967, -1]
