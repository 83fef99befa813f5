"""SanityCheckExplorer driven through its controls (testing layer 2): the layer slider walks the
cascade and changes the maps, step 0 shows the trained model's maps, the smoothed toggle and
the independent mode recompute, text shows token highlights, errors appear in the widget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.captions import bar_values, caption_columns
from PIL import Image
from torch import nn
from visloupe.core.attribution import explain
from visloupe.core.models import SmallResNet, TextCNN
from visloupe.widgets.render import from_png
from visloupe.widgets.sanity import SanityCheckExplorer

pytestmark = pytest.mark.usefixtures("one_thread")


def _cnn() -> nn.Module:
    model = SmallResNet(3, 5, (4, 8), norm="none")
    model.init_weights(torch.Generator().manual_seed(0))
    return model.eval()


def _images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _tile(png: bytes, k: int, cell: int = 32, pad: int = 4) -> np.ndarray:
    """The k-th tile of the maps grid (input first, then one per explainer)."""
    arr = np.asarray(from_png(png))
    x0 = pad + k * (cell + pad)
    return arr[pad:pad + cell, x0:x0 + cell]


def test_layer_slider_walks_the_cascade() -> None:
    model = _cnn()
    x = _images()
    layers = ["head", "features.1", "features.0"]
    ex = SanityCheckExplorer(model, x, ["saliency"], layers=layers, cell=32)
    try:
        assert ex.error_area.value == ""
        assert ex.layer_slider.max == 3
        png0, curves0 = ex.maps.value, ex.curves.value
        # step 0 shows the trained model's own |map|
        ref = explain(model, x[:1], None, "saliency")[0].abs().numpy()
        shown = ex.result().maps["saliency"][0, 0].numpy()
        np.testing.assert_allclose(np.abs(shown), ref, rtol=1e-5, atol=1e-7)
        ex.layer_slider.value = 3
        assert ex.maps.value != png0 and ex.curves.value == curves0  # curves: drawn once
        assert not np.array_equal(_tile(ex.maps.value, 1), _tile(png0, 1))
        np.testing.assert_array_equal(_tile(ex.maps.value, 0), _tile(png0, 0))  # same input
        assert "features.0" in ex.layer_label.value
        # captions as HTML under the tiles; a colour bar per map, from 0 to the map's maximum
        assert "<b>input</b>" in ex.maps_captions.value
        vmax = float(ex.result().maps["saliency"][3, 0].abs().max())
        inputs, saliency = caption_columns(ex.maps_captions.value)
        assert "<b>saliency</b>" in saliency and "|map|" in saliency
        assert bar_values(inputs) is None  # the input is not a map
        assert bar_values(saliency) == ["0", f"{vmax:.3g}"]
        ex.layer_slider.value = 0
        assert ex.maps.value == png0  # re-rendered from the cache, identical
        ex.input_slider.value = 2
        assert ex.maps.value != png0
        ex.mode.value = "independent"
        assert ex.result().mode == "independent" and ex.error_area.value == ""
        assert ex.curves.value != curves0
        ex.variant.value = "smoothed"
        smoothed = ex.result()
        assert ex.error_area.value == ""
        assert any(isinstance(m, nn.Softplus) for m in ex._smoothed_model.modules())
        assert not any(isinstance(m, nn.Softplus) for m in model.modules())  # caller untouched
        assert smoothed is not ex.result("original", "independent")
        table = ex.compute_metrics(n_samples=2)
        assert set(table.model) == {"original", "smoothed"}
        assert "infidelity" in ex.metrics_table.value
        assert "<img" in ex.to_html()
        assert Image.open(__import__("io").BytesIO(ex.to_png())).size[0] > 0
    finally:
        ex.close()
    assert ex._results == {}


def test_text_mode_shows_tokens_and_errors_are_shown() -> None:
    model = TextCNN(20, 2, embed_dim=8, kernel_sizes=(2, 3), num_filters=4)
    model.init_weights(torch.Generator().manual_seed(0))
    ids = torch.tensor([[3, 4, 5, 6, 0, 0], [7, 8, 9, 0, 0, 0]])
    vocab = [f"w{i}" for i in range(20)]
    ex = SanityCheckExplorer(model.eval(), ids, ["saliency", "input_x_gradient"], vocab=vocab)
    try:
        html0 = ex.tokens.value
        assert "visloupe-token" in html0 and "w3" in html0 and "w0" not in html0  # no padding
        ex.layer_slider.value = ex.layer_slider.max
        assert ex.tokens.value != html0
        ex.mode.value = "cascading"
        assert ex.error_area.value == ""
    finally:
        ex.close()

    def broken(m, inputs, target):
        raise RuntimeError("explainer broke")

    bad = SanityCheckExplorer(_cnn(), _images(2), {"broken": broken}, layers=["head"])
    try:
        assert "explainer broke" in bad.error_area.value
    finally:
        bad.close()


def test_one_layer_name_and_bad_options() -> None:
    """``layers="head"`` is one layer (not the layers 'h', 'e', 'a', 'd'); bad options are
    refused at construction, naming the argument."""
    ex = SanityCheckExplorer(_cnn(), _images(1), ["saliency"], layers="head", cell=32)
    try:
        assert ex.error_area.value == "" and ex.layer_slider.max == 1
        assert list(ex.result().layers) == ["head"]
    finally:
        ex.close()
    for kwargs, match in (({"batch_size": 0}, "batch_size"), ({"seed": "0"}, "seed"),
                          ({"softplus_beta": -1}, "softplus_beta"),
                          ({"lse_temperature": 0}, "lse_temperature"), ({"pad_id": -1}, "pad_id")):
        with pytest.raises((TypeError, ValueError), match=match):
            SanityCheckExplorer(_cnn(), _images(1), ["saliency"], **kwargs)
