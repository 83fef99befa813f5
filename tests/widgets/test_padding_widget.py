"""PaddingInspector widget state: driving the controls as a browser would changes what it shows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from visloupe.core.models import SmallResNet
from visloupe.widgets import render
from visloupe.widgets.padding import PaddingInspector


def small_model() -> nn.Module:
    net = SmallResNet(3, 5, (4, 8, 8))
    net.init_weights(torch.Generator().manual_seed(0))
    return net.eval()


def decode(png: bytes) -> np.ndarray:
    return np.asarray(render.from_png(png)).astype(int)


def test_size_slider_changes_table_and_maps() -> None:
    data = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    insp = PaddingInspector(small_model(), data, sizes=(12, 20))
    try:
        assert "visloupe-padding-inspector" in insp._dom_classes
        assert insp.size.value == 16 and insp.errors.value == ""
        assert [13, 17] == insp._even
        table16, fov16, rec16 = insp.table.value, insp.foveation.value, insp.recommendation.value
        assert table16.count("visloupe-uneven") == 4  # two stride-2 convs + two shortcuts
        assert "17 instead of 16 removes uneven padding at 4 layers" in rec16
        insp.size.value = 17  # what a browser's slider message does
        assert insp.table.value != table16 and "visloupe-uneven" not in insp.table.value
        assert insp.foveation.value != fov16
        img16, img17 = decode(fov16), decode(insp.foveation.value)
        assert not np.array_equal(img16, img16[::-1, ::-1])  # uneven: asymmetric map
        assert np.array_equal(img17, img17[::-1, ::-1])  # even: symmetric map
        assert "no layer leaves padded rows" in insp.recommendation.value
        assert "<b>17</b>" in insp.even_marks.value
        # each map has a colour bar labelled with its own range (the foveation map's min, max)
        fov = insp._result["foveation"]
        assert f"<span>{fov.min():.3g}</span>" in insp.bars[0].value
        assert f"<span>{fov.max():.3g}</span>" in insp.bars[0].value
        # layer selector: re-renders the mean map from the cache
        layers = list(insp.layer.options)
        assert len(layers) >= 3
        before = insp.mean_map.value
        insp.layer.value = layers[0]
        assert insp.mean_map.value != before and layers[0] in insp.captions[1].value
        # padding mode: circular makes the single-size foveation map different again
        insp.mode.value = "circular"
        assert insp.foveation.value != decode(fov16).tobytes()
        assert len(insp._results) == 3
        assert insp.blind_spots.value[:4] == b"\x89PNG"
        assert "visloupe-padding-inspector" in insp.to_html()
        assert insp.to_png()[:4] == b"\x89PNG"
    finally:
        insp.close()
    assert len(insp._results) == 0 and list(insp.children) == []


def test_errors_are_shown_in_the_widget_and_model_untouched() -> None:
    model = small_model().train()  # even a model left in training mode is not changed
    state = {k: v.clone() for k, v in model.state_dict().items()}
    insp = PaddingInspector(model, input_size=8, sizes=(2, 10))
    try:
        insp.mode.value = "reflect"
        insp.size.value = 2  # reflect padding 1 on a 1x1 map deeper in the network
        assert "visloupe-error" in insp.errors.value and "reflect" in insp.errors.value
        insp.size.value = 9
        assert insp.errors.value == ""
        assert "mean feature map" in insp.captions[1].value  # no data: a hint, no crash
    finally:
        insp.close()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks for m in model.modules()) and model.training


def test_tf_same_port_shows_its_explicit_pads() -> None:
    """EfficientNet-Lite0 (static TF-SAME pads, built here for 64 to stay fast): the table shows
    the (0, 1) / (1, 2) pads of its stride-2 convolutions and where they come from, and the
    recommendation says to rebuild it for 65 (core ``input_size_advice``)."""
    enet = pytest.importorskip("efficientnet_lite_pytorch")
    model = enet.EfficientNet.from_name("efficientnet-lite0", image_size=64).eval()
    insp = PaddingInspector(model, input_size=64, sizes=(60, 68))
    try:
        assert insp.errors.value == ""
        table = insp.table.value
        assert table.count("visloupe-uneven") == 5 and "pad from" in table
        assert "0,1 | 0,1" in table and "1,2 | 1,2" in table and "static SAME" in table
        assert insp._even == [63]
        assert "rebuild the model for input size 65" in insp.recommendation.value
        assert insp.advice.static == 5 and insp.advice.rebuild_size == 65
        insp.mode.value = "symmetric"  # swap_padding keeps the static amounts
        assert insp.errors.value == "" and insp.table.value.count("visloupe-uneven") == 5
        assert "PadConv2d (explicit (0, 1, 0, 1))" in insp.table.value
    finally:
        insp.close()
