"""COSEExplorer driven through its traitlets (what browser messages do): tiles, SSIM line,
summary table and charts, errors shown in the widget, close()."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.captions import bar_values, caption_columns
from visloupe.core import data, models
from visloupe.core.evaluation.reference import UniformNoiseExplainer
from visloupe.widgets.cose import COSEExplorer
from visloupe.widgets.render import from_png


@pytest.fixture(scope="module")
def explorer():
    model, pre = models.pretrained("shapes-cnn")
    ds = data.load_builtin("shapes", split="test")
    widget = COSEExplorer({"cnn": model}, ds, {"grad_cam": "grad_cam",
                                               "noise": UniformNoiseExplainer(0)},
                          preprocess=pre, n_images=6, magnitudes_per_transform=1, cell=64)
    yield widget
    widget.close()


def _pixels(tile) -> np.ndarray:
    return np.asarray(from_png(tile.value), dtype=int)


def test_renders_and_tracks_the_magnitude_slider(explorer) -> None:
    assert "visloupe-cose-explorer" in explorer._dom_classes
    explorer.transform_select.value = "Rotate"
    explorer.magnitude_slider.value = 0
    before = _pixels(explorer.tiles[1])
    # magnitude 0: the transformed image is the original, SSIM 1, nothing masked
    assert explorer.last_view.similarity == pytest.approx(1.0)
    assert explorer.last_view.valid.all()
    explorer.magnitude_slider.value = 20  # 90°
    after = _pixels(explorer.tiles[1])
    assert before.shape == after.shape == (64, 64, 3)
    assert np.abs(before - after).sum() > 0
    assert "SSIM" in explorer.status.value
    assert f"{explorer.last_view.similarity:.3f}" in explorer.status.value
    mask = _pixels(explorer.tiles[3])
    assert mask.max() == 255  # 90° on a square image keeps everything visible
    explorer.magnitude_slider.value = 10  # 45°: corners leave the frame
    assert _pixels(explorer.tiles[3]).min() == 0


def test_unsigned_ops_disable_the_slider(explorer) -> None:
    explorer.transform_select.value = "FlipLR"
    assert explorer.magnitude_slider.disabled
    view = explorer.last_view
    np.testing.assert_allclose(view.transformed.flip(-1).numpy(), view.image.numpy())
    explorer.transform_select.value = "TranslateX"
    assert not explorer.magnitude_slider.disabled
    assert "px" in explorer.magnitude_label.value


def test_summary_table_and_charts(explorer) -> None:
    explorer.inf_samples.value = 2
    explorer.sens_samples.value = 2
    explorer.summary_button.click()
    assert explorer.error_area.value == ""
    table = explorer.summary.set_index("method")
    assert set(table.index) == {"grad_cam", "noise"}
    assert table.loc["grad_cam", "cose"] > table.loc["noise", "cose"]
    for col in ("infidelity", "max_sensitivity"):
        assert math.isfinite(table.loc["grad_cam", col])
    assert explorer.progress.value == explorer.progress.max == 2
    assert explorer.scatter.value.count("<title>") == 2
    assert "grad_cam / cnn" in explorer.scatter.value
    assert "<table" in explorer.table.value and "<svg" in explorer.bars.value
    assert "visloupe-cose-explorer" in explorer.to_html()


def test_errors_are_shown_inside_the_widget() -> None:
    model, pre = models.pretrained("shapes-cnn")
    ds = data.load_builtin("shapes", split="test")
    calls = {"n": 0}

    def flaky(m, x, t):
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("explainer exploded")
        return x.mean(1)

    widget = COSEExplorer(model, ds, {"flaky": flaky}, preprocess=pre, n_images=2, cell=32)
    widget.magnitude_slider.value = 3
    assert "explainer exploded" in widget.error_area.value
    widget.close()
    assert widget._views == {} and widget.tiles[0].comm is None


def test_each_map_of_the_pair_has_a_colour_bar_with_its_values(explorer) -> None:
    from visloupe.widgets._common import display_map

    explorer.transform_select.value = "Rotate"
    explorer.magnitude_slider.value = 10
    view = explorer.last_view
    columns = [caption_columns(c.value)[0] for c in explorer.tile_captions]
    assert bar_values(columns[3]) is None and "validity mask" in columns[3]  # not a map
    for m, column in zip((view.map, view.transformed_map, view.map_back), columns, strict=False):
        vmax = display_map(m.numpy(), 100.0, signed=False)[1] or 0.0
        assert bar_values(column) == ["0", f"{vmax:.3g}"]


def test_alt_models_in_the_wrong_form_are_named() -> None:
    """``alt_models`` is ``{model name: {pair name: module}}``: a flat ``{name: module}`` or an
    unknown model name is refused at construction, with the form it needs."""
    model, pre = models.pretrained("shapes-cnn")
    ds = data.load_builtin("shapes", split="test")
    with pytest.raises(TypeError, match=r"alt_models\['model'\]: expected \{pair name"):
        COSEExplorer(model, ds, preprocess=pre, n_images=2, alt_models={"model": model})
    with pytest.raises(ValueError, match=r"alt_models: expected keys among the model names "
                                         r"\['model'\].*got 'cnn'"):
        COSEExplorer(model, ds, preprocess=pre, n_images=2, alt_models={"cnn": {"a": model}})
