"""Widget-state tests of SplitIGExplorer: the ratio slider moves the split without calling the
model (and agrees with a fresh computation), the sums shown match the result, and close() cleans
up."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from helpers.captions import bar_values, caption_columns
from torch import nn
from visloupe.core.attribution.split_ig import split_integrated_gradients
from visloupe.widgets import render
from visloupe.widgets.splitig import SplitIGExplorer, path_plot


class Saturating(nn.Module):
    """``logit_k = c_k * tanh(a * w_k . x)``: the target output saturates along the path, so the
    split sits well inside (0, 1). Counts forward calls."""

    def __init__(self, channels: int = 3, size: int = 8, n_classes: int = 3) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.rand(n_classes, channels * size * size, generator=gen))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return 3.0 * torch.tanh(0.02 * x.flatten(1) @ self.w.T)


def _images(n: int = 4, size: int = 8) -> np.ndarray:
    return np.random.default_rng(0).integers(100, 256, (n, size, size, 3), dtype=np.uint8)


def _x(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32) / 255)[None]


def _summary(ex: SplitIGExplorer) -> dict[str, float]:
    out = {}
    row = r"<td[^>]*>([^<]+)</td><td[^>]*><code>([-+0-9.e]+)"
    for key, value in re.findall(row, ex.summary.value):
        out[key] = float(value)
    return out


def test_ratio_moves_the_split_without_calling_the_model() -> None:
    model, imgs = Saturating(), _images()
    ex = SplitIGExplorer(model, imgs, n_steps=40, ratio=0.9, cell=48)
    assert ex.errors.value == ""
    first_split = int(ex.result.split_index[0])
    calls, plot, view = model.calls, ex.plot.value, ex.view.value
    ex.ratio.value = 0.5
    assert model.calls == calls
    assert ex.plot.value != plot and ex.view.value != view
    fresh = split_integrated_gradients(model, _x(imgs[0]), ratio=0.5, n_steps=40)
    assert int(ex.result.split_index[0]) == int(fresh.split_index[0]) < first_split
    assert torch.allclose(ex.result.left, fresh.left, atol=1e-6)
    assert ex.result.ratio == 0.5


def test_summary_shows_sums_against_the_output_change() -> None:
    model, imgs = Saturating(), _images()
    ex = SplitIGExplorer(model, imgs, n_steps=64, ratio=0.8, cell=48)
    s = _summary(ex)
    r = ex.result
    change = float(r.input_output[0] - r.baseline_output[0])
    assert s["f(x) − f(baseline)"] == pytest.approx(change, rel=1e-4)
    assert s["left sum"] == pytest.approx(float(r.left.sum()), rel=1e-4, abs=1e-6)
    assert s["right sum"] == pytest.approx(float(r.right.sum()), rel=1e-4, abs=1e-6)
    assert s["left sum"] + s["right sum"] == pytest.approx(s["IG sum"], rel=1e-3, abs=1e-5)
    assert s["IG sum"] == pytest.approx(change, rel=0.05)  # completeness, up to the Riemann sum
    assert f"step {int(r.split_index[0])} of 64" in ex.summary.value


def test_maps_grid_shows_input_left_right_and_full() -> None:
    ex = SplitIGExplorer(Saturating(), _images(), n_steps=32, cell=48)
    grid = render.from_png(ex.view.value)
    assert grid.size == render.image_grid([None] * 4, None, ncols=4, cell=48).size
    # the captions are HTML text under the tiles, escaped, one per tile; the export has them
    captions = ex.captions.value
    assert len(caption_columns(captions)) == 4 and captions.count("<div style='width:48px") == 4
    for part in ("<b>input #0</b>", "<b>left (unsaturated)</b>", "<b>right (saturated)</b>",
                 "<b>full IG</b>"):
        assert part in captions
    assert render.from_png(ex.to_png()).size == render.image_grid(
        [None] * 4, ["a\nb"] * 4, ncols=4, cell=48).size
    calls = ex._models["model"].calls
    before = ex.view.value
    ex.alpha.value = 0.1
    ex.sign.value = "absolute"
    assert ex.view.value != before and ex._models["model"].calls == calls
    assert render.from_png(ex.view.value).size == grid.size


def test_expensive_controls_recompute_and_are_cached() -> None:
    model = Saturating()
    ex = SplitIGExplorer(model, (_images(), [0, 1, 2, 0]), n_steps=16, cell=48,
                         class_names=["a", "b", "c"])
    calls = model.calls
    ex.n_steps.value = 24
    assert model.calls > calls and ex.result.n_steps == 24
    ex.target.value = 2
    assert int(ex.result.target[0]) == 2
    ex.target.value = "label"
    assert int(ex.result.target[0]) == 0
    ex.position.value = 1
    assert int(ex.result.target[0]) == 1
    calls = model.calls
    ex.position.value = 0  # (0, label 0, 24 steps) was computed before
    assert model.calls == calls


def test_errors_are_shown_and_close_cleans_up() -> None:
    model = Saturating()
    ex = SplitIGExplorer(model, _images(), n_steps=16, cell=48)
    ex.target.value = "label"  # the arrays carry no labels
    assert "label" in ex.errors.value and "ValueError" in ex.errors.value
    view = ex.view
    ex.close()
    assert view.comm is None and ex.comm is None
    assert all(not (m._forward_hooks or m._backward_hooks or m._forward_pre_hooks)
               for m in model.modules())
    assert len(ex._results) == 0


def test_an_integer_preprocess_output_is_refused_not_cast() -> None:
    """A preprocess returning uint8 0..255 would reach the model 255x too bright if cast to
    float: the error names preprocess and the dtype, in the widget and in SaliencyExplorer."""
    from visloupe.widgets import SaliencyExplorer

    def u8(img):
        return torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()

    ex = SplitIGExplorer(Saturating(), _images(), n_steps=16, cell=48, preprocess=u8)
    assert "preprocess" in ex.errors.value and "torch.uint8" in ex.errors.value
    with pytest.raises(TypeError, match=r"preprocess for 'model'.*float tensor.*torch\.uint8"):
        SaliencyExplorer(Saturating(), _images(), preprocess=u8)


def test_path_plot_is_a_png_and_marks_the_split() -> None:
    model, imgs = Saturating(), _images()
    result = split_integrated_gradients(model, _x(imgs[0]), ratio=0.9, n_steps=32)
    a = np.asarray(render.from_png(path_plot(result, width=300, height=160)))
    assert a.shape == (160, 300, 3)
    b = np.asarray(render.from_png(path_plot(result.resplit(0.3), width=300, height=160)))
    assert np.abs(a.astype(int) - b).sum() > 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_steps"):
        SplitIGExplorer(Saturating(), _images(), n_steps=1)
    with pytest.raises(ValueError, match="ratio"):
        SplitIGExplorer(Saturating(), _images(), ratio=1.5)
    with pytest.raises(TypeError, match="ids: expected a sequence of ints, got an item 'a'"):
        SplitIGExplorer(Saturating(), _images(), ids=["a", "b", "c", "d"])


def test_the_three_maps_share_one_colour_bar_with_its_values() -> None:
    from visloupe.widgets._common import display_map

    model = Saturating()
    ex = SplitIGExplorer(model, _images(), n_steps=16, cell=48)
    res = ex.result
    vmax = max(display_map(res.maps(p)[0].detach().float().numpy(), 99.5, True)[1] or 0.0
               for p in ("left", "right", "ig"))
    columns = caption_columns(ex.captions.value)
    assert [bar_values(c) for c in columns] == [None] + [[f"{-vmax:.3g}", "0", f"{vmax:.3g}"]] * 3
