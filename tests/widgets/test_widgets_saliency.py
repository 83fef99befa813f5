"""Widget-state tests of SaliencyExplorer: drive it through its traitlets (what a browser message
does) and assert on the PNG bytes it publishes, its caches, the model calls and the hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.captions import bar_values, caption_columns
from PIL import Image
from torch import nn
from visloupe.core.attribution import explain
from visloupe.widgets import render
from visloupe.widgets.base import escape
from visloupe.widgets.saliency import SaliencyExplorer

CELL = 48
PAD = 4


class CountingCNN(nn.Module):
    """A small CNN that counts its forward calls. Class logits depend on the mean of each input
    channel (so predictions can be planted) and on a conv feature map (so Grad-CAM has a layer)."""

    def __init__(self, in_channels: int = 3, n_classes: int = 4, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(in_channels, 6, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(6, n_classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


class BrightnessModel(nn.Module):
    """No spatial layer (so Grad-CAM cannot serve it); predicts class 1 for bright images and
    class 0 for dark ones, which plants the correct/incorrect split."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([(0.5 - m) * self.scale, (m - 0.5) * self.scale], dim=1)


def _images(n: int = 8, size: tuple[int, int] = (20, 24), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *size, 3), dtype=np.uint8)


def _cells(png: bytes, rows: int, cols: int, cell: int = CELL) -> list[list[np.ndarray]]:
    """Cut the decoded grid into its cells (layout of ``render.image_grid``)."""
    arr = np.asarray(render.from_png(png)).astype(int)
    cap_h = (arr.shape[0] - PAD) // rows - cell - PAD
    out = []
    for r in range(rows):
        y0 = PAD + r * (cell + cap_h + PAD)
        out.append([arr[y0:y0 + cell, PAD + c * (cell + PAD): PAD + c * (cell + PAD) + cell]
                    for c in range(cols)])
    return out


def _all_hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )


@pytest.fixture
def toy() -> CountingCNN:
    return CountingCNN()


def test_cheap_controls_rerender_without_calling_the_model(toy: CountingCNN) -> None:
    ex = SaliencyExplorer(toy, _images(), methods=["saliency"], cell=CELL)
    assert ex.errors.value == ""
    calls = toy.calls
    before = ex.view.value
    ex.alpha.value = 0.9
    after = ex.view.value
    assert after != before and toy.calls == calls
    old, new = _cells(before, 1, 2), _cells(after, 1, 2)
    assert np.array_equal(old[0][0], new[0][0])          # the input cell is unchanged
    assert np.abs(old[0][1] - new[0][1]).max() > 10      # the overlay cell changed
    seen = {after}
    for control, value in [(ex.cmap, "viridis"), (ex.clip, 95.0), (ex.sign, "signed"),
                           (ex.mode, "heatmap"), (ex.mode, "masked")]:
        control.value = value
        assert ex.view.value not in seen, control.description
        seen.add(ex.view.value)
    assert toy.calls == calls
    assert ex.cache_info()["maps"] == 1


def test_alpha_zero_shows_the_image_and_heatmap_shows_the_map(toy: CountingCNN) -> None:
    ex = SaliencyExplorer(toy, _images(), methods=["saliency"], cell=CELL)
    ex.alpha.value = 0.0
    cells = _cells(ex.view.value, 1, 2)
    assert np.array_equal(cells[0][0], cells[0][1])  # blend with alpha 0 = the input
    ex.mode.value = "heatmap"
    ex.cmap.value = "gray"
    ex.clip.value = 100.0
    heat = _cells(ex.view.value, 1, 2)[0][1][..., 0]
    (raw,) = ex.maps().values()
    expected = render.resize_map(np.abs(raw), (40, 48))
    expected = expected / expected.max() * 255
    # the 20x24 image is fitted into the 48x48 cell as 40x48, centred vertically
    assert np.abs(heat[4:44] - expected).mean() < 3.0


def test_map_agrees_with_core_explain(toy: CountingCNN) -> None:
    imgs = _images()
    ex = SaliencyExplorer(toy, imgs, methods=["integrated_gradients"], cell=CELL)
    (raw,) = ex.maps().values()
    x = torch.from_numpy(imgs[0].transpose(2, 0, 1).astype(np.float32) / 255)[None]
    target = int(toy(x).argmax())
    ref = explain(toy, x, target, "integrated_gradients")[0].numpy()
    assert np.allclose(raw, ref, atol=1e-6)


def test_retarget_by_clicking_a_prediction_bar_recomputes(toy: CountingCNN) -> None:
    ex = SaliencyExplorer(toy, _images(), methods=["saliency"], cell=CELL, top_k=3)
    probs = ex._probs[(0, "model")]
    order = np.argsort(-probs)
    button, bar = ex._topk_buttons["model"][1]
    assert bar.value == pytest.approx(probs[order[1]])
    before, calls = ex.view.value, toy.calls
    button.click()
    assert ex.target.value == int(order[1])
    assert toy.calls > calls and ex.view.value != before
    assert ex.cache_info()["maps"] == 2
    assert button.button_style == "info"
    (raw,) = ex.maps().values()
    x = torch.from_numpy(_images()[0].transpose(2, 0, 1).astype(np.float32) / 255)[None]
    assert np.allclose(raw, explain(toy, x, int(order[1]), "saliency")[0].numpy(), atol=1e-6)
    # back to the predicted class: served from the cache
    calls = toy.calls
    ex.target.value = "predicted"
    assert toy.calls == calls


def test_a_bar_retarget_applies_to_its_sample_only(toy: CountingCNN) -> None:
    """Clicking a top-k bar explains that image's runner-up; the next image goes back to the
    target chosen before (here: the predicted class), not to the same class index."""
    ex = SaliencyExplorer(toy, _images(), methods=["saliency"], cell=CELL, top_k=3)
    ex._topk_buttons["model"][1][0].click()
    assert ex.target.value != "predicted"
    ex.next_button.click()
    assert ex.index == 1 and ex.target.value == "predicted"
    (key,) = [k for k in ex._fresh if k[0] == 1]
    assert key[4] == int(np.argmax(ex._probs[(1, "model")]))
    ex.target.value = 2  # a class chosen in the dropdown stays for every sample
    ex.next_button.click()
    assert ex.target.value == 2


def test_target_label_and_any_class(toy: CountingCNN) -> None:
    labels = [3, 2, 1, 0, 3, 2, 1, 0]
    ex = SaliencyExplorer(toy, (_images(), labels), methods=["saliency"], cell=CELL)
    ex.target.value = "label"
    assert [k[4] for k in ex._maps] [-1] == 3
    ex.target.value = 1
    assert [k[4] for k in ex._maps][-1] == 1
    assert ex.errors.value == ""


def test_method_parameter_controls_come_from_the_registry(toy: CountingCNN) -> None:
    ex = SaliencyExplorer(toy, _images(), methods=["integrated_gradients", "occlusion"],
                          cell=CELL)
    steps = ex.param_widgets["Integrated Gradients"]["n_steps"]
    assert steps.value == 50 and steps.continuous_update is False
    assert ex.param_widgets["Occlusion"]["window"].max == 256
    calls = toy.calls
    steps.value = 7
    assert toy.calls > calls
    raw = ex.maps()[("model", "Integrated Gradients")]
    x = torch.from_numpy(_images()[0].transpose(2, 0, 1).astype(np.float32) / 255)[None]
    target = int(np.argmax(ex._probs[(0, "model")]))
    ref = explain(toy, x, target, "integrated_gradients", n_steps=7)[0].numpy()
    assert np.allclose(raw, ref, atol=1e-6)
    ex.param_widgets["Integrated Gradients"]["quadrature"].value = "riemann_left"
    raw_left = ex.maps()[("model", "Integrated Gradients")]
    ref_left = explain(toy, x, target, "integrated_gradients", n_steps=7,
                       quadrature="riemann_left")[0].numpy()
    assert np.allclose(raw_left, ref_left, atol=1e-6) and not np.allclose(raw_left, raw)
    assert ex.errors.value == ""


def test_models_and_methods_side_by_side() -> None:
    a, b = CountingCNN(seed=1), CountingCNN(seed=2)
    ex = SaliencyExplorer({"a": a, "b": b}, _images(), methods=["saliency", "input_x_gradient"],
                          cell=CELL)
    row = render.image_grid([None] * 3, None, ncols=3, cell=CELL).size
    # one row of tiles per model, each with its captions as HTML text under it
    assert render.from_png(ex.view.value).size == row
    (second,) = ex.more_rows.children
    assert second.layout.display is None and render.from_png(second.children[0].value).size == row
    assert "<b>a</b>" in ex.captions.value and "<b>b</b>" in second.children[1].value
    assert ex.captions.value.count("<b>") == 3 and "target" in ex.captions.value
    # the PNG export is the whole grid with its captions drawn
    expected = render.image_grid([None] * 6, ["x\ny"] * 6, ncols=3, cell=CELL)
    assert render.from_png(ex.to_png()).size == expected.size
    assert set(ex.maps()) == {(m, t) for m in "ab" for t in ("Saliency (signed gradient)",
                                                               "Input × Gradient")}
    ex.model_select.value = ("b",)
    assert render.from_png(ex.view.value).size == row
    assert second.layout.display == "none" and "<b>b</b>" in ex.captions.value


def test_explicit_explain_when_auto_is_off(toy: CountingCNN) -> None:
    ex = SaliencyExplorer(toy, _images(), methods=["saliency"], cell=CELL, auto_explain=False)
    assert ex.cache_info()["maps"] == 0
    cells = _cells(ex.view.value, 1, 2)
    assert (cells[0][1] == 230).all()  # placeholder until Explain
    ex.next_button.click()
    assert ex.cache_info()["maps"] == 0 and ex.index == 1
    ex.explain_button.click()
    assert ex.cache_info()["maps"] == 1
    assert ex.progress.value == ex.progress.max and ex.progress.bar_style == "success"


def test_paging_and_seeking(toy: CountingCNN) -> None:
    ex = SaliencyExplorer(toy, _images(6), methods=["saliency"], cell=CELL)
    assert ex.position.max == 5 and ex.index == 0
    ex.next_button.click()
    ex.next_button.click()
    assert ex.index == 2
    ex.prev_button.click()
    assert ex.index == 1
    ex.seek.value = 4
    assert ex.index == 4 and ex.position.value == 4
    ex.position.value = 5
    assert ex.index == 5
    ex.next_button.click()
    assert ex.index == 5  # stays at the end
    assert {k[0] for k in ex._maps} == {0, 1, 2, 4, 5}  # one map per visited sample


def test_filters_by_class_and_by_correctness() -> None:
    model = BrightnessModel()
    rng = np.random.default_rng(0)
    bright = [rng.integers(200, 256, (10, 10, 3), dtype=np.uint8) for _ in range(5)]
    dark = [rng.integers(0, 50, (10, 10, 3), dtype=np.uint8) for _ in range(5)]
    images = [bright[0], dark[0], bright[1], dark[1], bright[2], dark[2], bright[3], dark[3]]
    labels = [1, 1, 0, 0, 1, 0, 0, 1]  # correct when bright<->1, dark<->0
    ex = SaliencyExplorer(model, (np.stack(images), labels), methods=["saliency"], cell=CELL,
                          class_names=["dark", "bright"])
    ex.class_filter.value = 1
    assert ex.visible_indices == [0, 1, 4, 7]
    ex.class_filter.value = "all"
    ex.prediction_filter.value = ("model", True)
    assert ex.visible_indices == [0, 3, 4, 5]
    ex.prediction_filter.value = ("model", False)
    assert ex.visible_indices == [1, 2, 6, 7]
    ex.class_filter.value = 0
    assert ex.visible_indices == [2, 6] and ex.index == 2
    with pytest.raises(ValueError, match="index"):
        ex.show(0)
    ex.seek.value = 0  # from the UI: shown in the error area instead
    assert "index" in ex.errors.value
    ex.class_filter.value = 1
    ex.prediction_filter.value = ("model", True)
    ex.class_filter.value = 0
    assert ex.visible_indices == [3, 5]
    assert "no sample" not in ex.status.value


def test_errors_appear_in_the_widget() -> None:
    model = BrightnessModel()

    def broken(model, inputs, target):
        raise RuntimeError("planted failure")

    ex = SaliencyExplorer(model, _images(), cell=CELL,
                          methods={"cam": "grad_cam", "grad": "saliency", "mine": broken})
    text = ex.errors.value
    assert "cam" in text and "layer" in text          # Grad-CAM cannot serve this model
    assert "planted failure" in text and "RuntimeError" in text
    cells = _cells(ex.view.value, 1, 4)
    assert (cells[0][1] == 230).all() and (cells[0][3] == 230).all()  # failed cells: placeholder
    assert not (cells[0][2] == 230).all()                              # saliency still drawn
    assert ex.progress.bar_style == "danger"
    ex.method_select.value = ("grad",)
    assert ex.errors.value == ""  # the failing columns are no longer on view


def test_grayscale_rgba_and_odd_sizes_render() -> None:
    rng = np.random.default_rng(0)
    gray = [Image.fromarray(rng.integers(0, 256, (17, 29), dtype=np.uint8), "L")
            for _ in range(3)]
    gray_model = CountingCNN(in_channels=1)
    ex = SaliencyExplorer(gray_model, gray, methods=["saliency", "grad_cam"], cell=CELL)
    assert ex.errors.value == ""
    (cells,) = _cells(ex.view.value, 1, 3)
    fitted = np.asarray(render.fit_image(gray[0], CELL)).astype(int)
    top = (CELL - fitted.shape[0]) // 2
    assert np.array_equal(cells[0][top:top + fitted.shape[0]], fitted)
    assert (cells[0][..., 0] == cells[0][..., 2]).all()  # grey shown as grey RGB
    assert all(m.shape == (17, 29) for m in ex.maps().values())

    rgba = np.zeros((2, 9, 13, 4), np.uint8)
    rgba[:, :, :6] = (255, 0, 0, 255)  # left half opaque red, right half transparent
    ex2 = SaliencyExplorer(CountingCNN(), [Image.fromarray(a, "RGBA") for a in rgba],
                           methods=["saliency"], cell=CELL)
    assert ex2.errors.value == ""
    (cells,) = _cells(ex2.view.value, 1, 2)
    mid = CELL // 2
    assert cells[0][mid, 2].tolist() == [255, 0, 0]
    assert cells[0][mid, CELL - 3].tolist() == [255, 255, 255]  # transparency on white


def test_close_releases_hooks_caches_and_widgets() -> None:
    model = CountingCNN()
    ex = SaliencyExplorer(model, _images(), methods=["grad_cam", "guided_backprop", "deeplift"],
                          cell=CELL)
    assert ex.cache_info()["maps"] == 3 and ex.errors.value == ""
    view, alpha = ex.view, ex.alpha
    ex.close()
    assert _all_hooks(model) == 0
    assert ex.cache_info() == {"maps": 0, "predictions": 0, "inputs": 0}
    assert view.comm is None and alpha.comm is None and ex.comm is None
    assert model.training  # the user's training flag is untouched


def test_export_png_and_display() -> None:
    import base64
    import re

    ex = SaliencyExplorer(CountingCNN(), _images(), methods=["saliency"], cell=CELL)
    png = ex.to_png()
    view = np.asarray(render.from_png(ex.view.value))
    exported = np.asarray(render.from_png(png))  # the same tiles, captions drawn below them
    assert exported.shape[1] == view.shape[1] and exported.shape[0] > view.shape[0]
    assert np.array_equal(exported[:view.shape[0] - PAD], view[:-PAD])
    from IPython.core.formatters import DisplayFormatter

    bundle, _ = DisplayFormatter().format(ex)
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == ex.model_id
    # a front end without widgets shows the note and the current view, never a blank cell
    assert "did not show the live widget" in bundle["text/plain"]
    static = bundle["text/html"]
    assert "did not show the live widget" in static
    shown = re.search(r'src="data:image/png;base64,([^"]+)"', static).group(1)
    assert base64.b64decode(shown) == png
    assert "image/png" not in bundle  # the picture travels once, inside the HTML
    assert "visloupe-saliency-explorer" in ex._dom_classes


def test_export_button_offers_the_view_as_a_browser_download(tmp_path) -> None:
    """The button writes nothing where the kernel runs: it makes a download link holding the
    view's PNG; ``save_png`` is the script's way to write a file."""
    import base64
    import re

    ex = SaliencyExplorer(CountingCNN(), _images(), methods=["saliency"], cell=CELL)
    ex.save_path.value = "my <view>"
    ex.save_button.click()
    link = ex.download.value
    assert 'download="my &lt;view&gt;.png"' in link
    data = re.search(r"base64,([A-Za-z0-9+/=]+)", link).group(1)
    assert base64.b64decode(data) == ex.to_png()
    assert not list(tmp_path.iterdir())
    assert ex.save_png(tmp_path / "view.png").read_bytes() == ex.to_png()


def test_streaming_source_is_paged_in() -> None:
    import datasets
    images = [Image.fromarray(a) for a in _images(10)]

    def gen():
        for i, img in enumerate(images):
            yield {"image": img, "label": i % 4}

    stream = datasets.IterableDataset.from_generator(
        gen, features=datasets.Features({"image": datasets.Image(),
                                         "label": datasets.ClassLabel(num_classes=4)}))
    ex = SaliencyExplorer(CountingCNN(), stream, methods=["saliency"], cell=CELL, stream_page=4)
    assert ex.position.max == 3
    for _ in range(5):
        ex.next_button.click()
    assert ex.index == 5 and ex.position.max == 7 and ex.errors.value == ""
    for _ in range(10):
        ex.next_button.click()
    assert ex.index == 9 and ex.position.max == 9


def test_bad_arguments_raise_clear_errors(toy: CountingCNN) -> None:
    with pytest.raises(TypeError, match="models"):
        SaliencyExplorer("resnet", _images())
    with pytest.raises(ValueError, match="method"):
        SaliencyExplorer(toy, _images(), methods=["no_such_method"])
    with pytest.raises(TypeError, match="preprocess"):
        SaliencyExplorer(toy, _images(), preprocess=42)
    with pytest.raises(ValueError, match="top_k"):
        SaliencyExplorer(toy, _images(), top_k=0)
    # the vocabulary is (model, data, explainers, *, preprocess=): a preprocess in third place
    # is named, not taken for an explainer
    from visloupe.core.models import pretrained

    _, pre = pretrained("shapes-cnn")
    for misplaced in (pre, lambda image: torch.zeros(3, 32, 32)):
        with pytest.raises(TypeError, match="looks like a preprocess.*preprocess="):
            SaliencyExplorer(toy, _images(), misplaced)


@pytest.mark.slow
def test_builtin_shapes_cnn() -> None:
    from visloupe.core import data, models

    ds = data.load_builtin("shapes", split="test")
    cnn, pre = models.pretrained("shapes-cnn")
    ex = SaliencyExplorer(cnn, ds, preprocess=pre, methods=["saliency", "grad_cam"])
    assert ex.errors.value == ""
    n = 64
    x = torch.stack([pre(ds[i]["image"]) for i in range(n)])
    with torch.no_grad():
        preds = cnn(x).argmax(1).tolist()
    labels = [ds[i]["label"] for i in range(n)]
    wrong = [i for i in range(n) if preds[i] != labels[i]]
    ex.prediction_filter.value = ("model", False)
    assert [i for i in ex.visible_indices if i < n] == wrong
    ex.prediction_filter.value = ("model", True)
    assert [i for i in ex.visible_indices if i < n] == [i for i in range(n) if i not in wrong]
    assert ex.class_filter.options[1][0] == "circle"
    assert render.from_png(ex.to_png()).size[0] > 3 * 160
    ex.close()
    assert _all_hooks(cnn) == 0


def test_no_stale_bars_when_no_sample_passes_the_filters(toy: CountingCNN) -> None:
    images = _images()
    probe = SaliencyExplorer(toy, images, methods=["saliency"], cell=CELL)
    labels = probe._predictions("model", range(len(images))).tolist()  # all correct
    probe.close()
    ex = SaliencyExplorer(toy, (images, labels), methods=["saliency"], cell=CELL)
    assert ex.topk_box.layout.display != "none"
    ex.prediction_filter.value = ("model", False)  # no image is wrong
    assert ex.index is None and "no sample" in ex.status.value
    assert ex.topk_box.layout.display == "none"
    ex.prediction_filter.value = "all"
    assert ex.index is not None and ex.topk_box.layout.display != "none"


def test_every_map_on_view_has_a_colour_bar_with_its_values(toy: CountingCNN) -> None:
    """The legend states the scale the overlay was drawn with: the core display clipping
    (``display_map``) of the cached map, -vmax..0..vmax for signed views, 0..vmax otherwise."""
    from visloupe.widgets._common import display_map

    ex = SaliencyExplorer(toy, _images(), methods=["saliency", "saliency_abs"], cell=CELL)
    for view in ("signed", "absolute"):
        ex.sign.value = view
        columns = caption_columns(ex.captions.value)  # the input, then one per method
        assert bar_values(columns[0]) is None
        for (_model, title), raw in ex.maps().items():
            column = next(c for c in columns[1:] if f"<b>{escape(title)}</b>" in c)
            signed = view == "signed" and title.startswith("Saliency (signed")
            _, vmax = display_map(raw, float(ex.clip.value), signed)
            assert bar_values(column) == ([f"{-vmax:.3g}", "0", f"{vmax:.3g}"] if signed
                                          else ["0", f"{vmax:.3g}"])
