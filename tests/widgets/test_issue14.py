"""Issue 14: every explorer frees the user's model and data on close, escapes dataset text,
validates its arguments, accepts normalising preprocesses, and shows exactly what core returns."""

from __future__ import annotations

import gc
import weakref

import ipywidgets as w
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from visloupe.core.attribution import explain, split_integrated_gradients
from visloupe.core.evaluation import compare_methods, pixel_data, run_randomization
from visloupe.core.models import ImagePreprocess
from visloupe.core.padding import blind_spot_probe, input_size_advice
from visloupe.core.profiling import near_duplicates
from visloupe.widgets import (
    BoxExplorer,
    COSEExplorer,
    DatasetExplorer,
    PaddingInspector,
    SaliencyExplorer,
    SanityCheckExplorer,
    SplitIGExplorer,
)

pytestmark = pytest.mark.usefixtures("one_thread")

EVIL = "<img src=x onerror=alert(1)>"
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


class TinyCNN(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


def _images(n: int = 6, side: int = 12) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def _data(n: int = 6) -> tuple[np.ndarray, list[int]]:
    return _images(n), [i % 3 for i in range(n)]


def _normalising(image) -> torch.Tensor:
    """A user's own preprocess that ends with (x - mean) / std (not a visloupe class)."""
    x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
    x = x.permute(2, 0, 1)
    return (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def _build(kind: str, model: nn.Module, names=None):
    data = _data()
    if kind == "saliency":
        return SaliencyExplorer(model, data, class_names=names, methods=["saliency"], cell=32)
    if kind == "splitig":
        return SplitIGExplorer(model, data, class_names=names, n_steps=4, cell=32)
    if kind == "cose":
        return COSEExplorer({"m": model}, data, ["saliency"], n_images=3,
                            magnitudes_per_transform=1, cell=32)
    if kind == "sanity":
        return SanityCheckExplorer(model, torch.rand(2, 3, 12, 12), ["saliency"], n_inputs=2,
                                   cell=32)
    if kind == "padding":
        return PaddingInspector(model, torch.rand(2, 3, 12, 12), input_size=12)
    if kind == "dataset":
        ex = DatasetExplorer(data, model=model, class_names=names, sample=None)
        ex.show_tab("Duplicates & outliers")
        ex.show_tab("Errors")
        return ex
    if kind == "boxes":
        return BoxExplorer(np.array([[0, 0, 2, 2], [0.5, 0.5, 1, 1.5]], dtype=float),
                           names or ["a", "b"])
    raise AssertionError(kind)


KINDS = ("saliency", "splitig", "cose", "sanity", "padding", "dataset", "boxes")


@pytest.mark.parametrize("kind", KINDS)
def test_close_frees_the_model_and_is_idempotent(kind: str) -> None:
    """After close() and gc, a weakref to the model (and the explorer) passed in is dead."""
    model = TinyCNN()
    ref = weakref.ref(model)
    ex = _build(kind, model)
    ex_ref = weakref.ref(ex)
    ex.close()
    ex.close()  # a second call must not raise
    del model, ex
    gc.collect()
    assert ref() is None, f"{kind}: the model outlives close()"
    assert ex_ref() is None, f"{kind}: the explorer outlives close()"


def test_half_built_sanity_explorer_closes_quietly(monkeypatch) -> None:
    """A constructor that raises midway closes what it built; close() on a bare instance and
    twice never raises."""
    bare = SanityCheckExplorer.__new__(SanityCheckExplorer)
    bare.close()
    bare.close()

    def boom(self) -> None:
        raise RuntimeError("midway")

    monkeypatch.setattr(SanityCheckExplorer, "refresh", boom)
    model = TinyCNN()
    ref = weakref.ref(model)
    with pytest.raises(RuntimeError, match="midway"):
        SanityCheckExplorer(model, torch.rand(2, 3, 12, 12), ["saliency"], n_inputs=2)
    del model
    gc.collect()
    assert ref() is None


def _html_values(widget) -> list[str]:
    out = []
    stack = [widget]
    while stack:
        node = stack.pop()
        if isinstance(node, (w.HTML, w.HTMLMath)):
            out.append(node.value)
        stack.extend(getattr(node, "children", ()) or ())
    return out


@pytest.mark.parametrize("kind", ("saliency", "splitig", "dataset", "boxes"))
def test_dataset_text_is_escaped_in_every_html_value(kind: str) -> None:
    names = [EVIL, "b", "c"] if kind != "boxes" else [EVIL, "b"]
    ex = _build(kind, TinyCNN(), names)
    try:
        if kind == "dataset":
            ex.show_tab("Classes")
        if kind == "saliency":
            ex.target.value = 0  # a class-name target and label in the status line
        values = _html_values(ex)
        if kind in ("saliency", "splitig", "boxes"):
            values.append(ex.to_html())
        assert values and not any(EVIL in v for v in values)
        if kind != "splitig":  # Split IG draws class names only into its PNG
            assert any("&lt;img" in v for v in values)  # the name is there, escaped
    finally:
        ex.close()


def test_saliency_escapes_model_and_method_names_and_errors() -> None:
    def broken(model, x, target):
        raise ValueError(EVIL)

    ex = SaliencyExplorer({EVIL: TinyCNN()}, _data(), methods={EVIL: broken}, cell=32)
    try:
        values = _html_values(ex)
        assert EVIL not in "".join(values) and "&lt;img" in ex.errors.value
    finally:
        ex.close()


def test_cache_size_zero_still_renders_the_maps() -> None:
    ex = SaliencyExplorer(TinyCNN(), _data(), methods=["saliency"], cell=32, cache_size=0)
    try:
        assert ex.errors.value == ""
        maps = ex.maps()
        assert list(maps) == [("model", "Saliency (signed gradient)")] or len(maps) == 1
        assert ex.cache_info()["maps"] == 0
        ex.position.value = 1
        assert len(ex.maps()) == 1  # the new view is computed and shown
    finally:
        ex.close()
    with pytest.raises(ValueError, match="cache_size"):
        SaliencyExplorer(TinyCNN(), _data(), methods=["saliency"], cache_size=-1)


def test_padding_input_size_zero_is_an_error() -> None:
    with pytest.raises(ValueError, match="input_size"):
        PaddingInspector(TinyCNN(), input_size=0)


def test_cose_accepts_a_normalising_preprocess_and_matches_compare_methods() -> None:
    model = TinyCNN()
    data = _data()
    ex = COSEExplorer({"m": model}, data, ["saliency"], preprocess=_normalising,
                      normalize=(MEAN, STD), n_images=4, magnitudes_per_transform=1, cell=32)
    try:
        ex.inf_samples.value = 2
        ex.sens_samples.value = 2
        shown = ex.compute_summary()
        # the equivalent script: pixels + the model's normalisation, then compare_methods
        pdata = pixel_data(data, None, normalize=ImagePreprocess(12, "RGB", MEAN, STD)
                           .__class__.__call__ and _norm, n_images=4)
        kw = ex.summary_arguments()
        expected = compare_methods({"m": model}, pdata, ["saliency"], **kw)
        pd.testing.assert_frame_equal(shown.reset_index(drop=True), expected, atol=1e-5,
                                      check_dtype=False)
        assert ex.error_area.value == ""
    finally:
        ex.close()


def _norm(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_cose_with_image_preprocess_summary_equals_compare_methods() -> None:
    model = TinyCNN()
    data = _data()
    pre = ImagePreprocess(12, "RGB", MEAN, STD)
    ex = COSEExplorer({"m": model}, data, ["saliency"], preprocess=pre, n_images=4,
                      magnitudes_per_transform=1, cell=32)
    try:
        ex.with_robustness.value = False
        shown = ex.compute_summary()
        expected = compare_methods({"m": model}, data, ["saliency"], preprocess=pre,
                                   n_images=4, **ex.summary_arguments())
        pd.testing.assert_frame_equal(shown, expected, check_dtype=False)
    finally:
        ex.close()


def test_sanity_accepts_a_normalising_preprocess_and_matches_core() -> None:
    model = TinyCNN()
    data = _data(3)
    ex = SanityCheckExplorer(model, data, ["saliency"], preprocess=_normalising,
                             normalize=(MEAN, STD), n_inputs=3, cell=32)
    try:
        assert ex.error_area.value == ""
        expected_inputs = torch.stack([_normalising(__import__("PIL").Image.fromarray(a))
                                       for a in data[0]])
        assert torch.allclose(ex.inputs, expected_inputs, atol=1e-5)
        core = run_randomization(model, ex.inputs, ["saliency"], mode="cascading")
        shown = ex.result()
        assert torch.allclose(shown.maps["saliency"], core.maps["saliency"], equal_nan=True)
    finally:
        ex.close()


def test_saliency_map_equals_core_explain() -> None:
    model = TinyCNN()
    data = _data()
    ex = SaliencyExplorer(model, data, methods=["integrated_gradients"], cell=32)
    try:
        (title,) = ex.param_widgets
        ex.param_widgets[title]["n_steps"].value = 8
        target = int(ex._key("model", title)[4])
        x = torch.from_numpy(data[0][0].astype(np.float32) / 255).permute(2, 0, 1)[None]
        expected = explain(model, x, torch.tensor([target]), "integrated_gradients", n_steps=8)
        np.testing.assert_allclose(ex.maps()[("model", title)], expected[0].numpy(), atol=1e-6)
    finally:
        ex.close()


def test_splitig_result_equals_core() -> None:
    model = TinyCNN()
    data = _data()
    ex = SplitIGExplorer(model, data, n_steps=4, cell=32)
    try:
        x = torch.from_numpy(data[0][0].astype(np.float32) / 255).permute(2, 0, 1)[None]
        target = int(ex.result.target[0])
        core = split_integrated_gradients(model, x, target=target, n_steps=4, ratio=0.9)
        assert torch.allclose(ex.result.left, core.left, atol=1e-6)
    finally:
        ex.close()


def test_padding_advice_and_probe_equal_core() -> None:
    model = TinyCNN()
    x = torch.rand(2, 3, 13, 13, generator=torch.Generator().manual_seed(0))
    insp = PaddingInspector(model, x, input_size=13)
    try:
        core = input_size_advice(model, 13, zero_padding=True)
        assert insp.advice == core and core.text in insp.recommendation.value
        probe = blind_spot_probe(model, 13, x)
        assert torch.allclose(insp._result["blind"].scores, probe.scores)
    finally:
        insp.close()


def test_duplicates_tab_is_exactly_core_near_duplicates() -> None:
    imgs = _images(8)
    imgs[5] = imgs[1]  # one exact copy
    imgs[6] = np.clip(imgs[2].astype(int) + 3, 0, 255).astype(np.uint8)  # a near one
    ex = DatasetExplorer((imgs, [0] * 8))
    try:
        ex.threshold.value = 0.02
        ex.show_tab("Duplicates & outliers")
        core = near_duplicates((imgs, [0] * 8), threshold=0.02)
        assert ex.duplicates[["i", "j"]].values.tolist() == core[["i", "j"]].values.tolist()
        np.testing.assert_allclose(ex.duplicates["distance"], core["distance"])
        assert f"{len(core)} pairs" in ex.dup_info.value
    finally:
        ex.close()


def test_saliency_on_a_selection_shows_the_original_ids() -> None:
    data = _data(8)
    ex = DatasetExplorer(data)
    try:
        ex.select([7, 3, 5])
        chosen = ex.selection
    finally:
        ex.close()
    sal = SaliencyExplorer(TinyCNN(), chosen, methods=["saliency"], cell=32)
    try:
        assert sal.sample_id == 7 and "id 7" in sal.status.value
        sal.next_button.click()
        assert sal.sample_id == 3 and "id 3" in sal.status.value
        sal.seek.value = 5  # seeking uses the original id
        assert sal.index == 2 and sal.sample_id == 5
    finally:
        sal.close()
