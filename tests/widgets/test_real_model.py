"""Every widget on the real ImageNet model (issue 15): EfficientNet-Lite0 on the bundled photos.

Each test builds the widget on ``models.pretrained("efficientnet-lite0")`` and checks that what it
shows is the core result for the same arguments, at the model's 224x224 resolution.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from visloupe import widgets
from visloupe.core import attribution, data, evaluation, models, padding


@pytest.fixture(scope="module")
def lite0():
    return models.pretrained("efficientnet-lite0")


@pytest.fixture(scope="module")
def photos():
    ds = data.load_builtin("photos", "test")
    return ds.filter(lambda row: row["label"] >= 0)


def _png(widget) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(widget.to_png())).convert("RGB"))


def test_saliency_explorer_explains_the_crop_the_model_sees(lite0, photos) -> None:
    model, preprocess = lite0
    two = photos.select([0, 1])  # chelsea (451x300), coffee (600x400)
    explorer = widgets.SaliencyExplorer(model, two, ["grad_cam"], preprocess=preprocess, top_k=5,
                                        cell=224)
    try:
        x = preprocess(two[0]["image"])[None]
        want = attribution.explain(model, x, None, "grad_cam")
        got = next(iter(explorer.maps().values()))
        np.testing.assert_allclose(got, want[0].numpy(), rtol=1e-4, atol=1e-6)
        probs = models.predict(model, x).softmax(1)[0]
        second = int(probs.topk(2).indices[1])
        explorer.target.value = second  # what the second top-5 button does
        retargeted = next(iter(explorer.maps().values()))
        want2 = attribution.explain(model, x, second, "grad_cam")[0].numpy()
        np.testing.assert_allclose(retargeted, want2, rtol=1e-4, atol=1e-6)
        # The frame under the map is the model's centre crop, not the 3:2 photo squeezed.
        frame = evaluation.model_view(two[0]["image"], preprocess)
        assert frame.size == (224, 224)
        png = _png(explorer)
        tile = png[4:228, 4:228].astype(float)  # the first cell, after the grid's 4-px margin
        squeezed = np.asarray(two[0]["image"].convert("RGB").resize((224, 224)), dtype=float)
        err_crop = np.abs(tile - np.asarray(frame, dtype=float)).mean()
        assert err_crop < 2.0 < np.abs(tile - squeezed).mean()
    finally:
        explorer.close()


def test_splitig_explorer_on_the_real_model(lite0, photos) -> None:
    model, preprocess = lite0
    explorer = widgets.SplitIGExplorer(model, photos.select([1]), preprocess=preprocess, n_steps=8)
    try:
        x = preprocess(photos[1]["image"])[None]
        result = attribution.split_integrated_gradients(model, x, n_steps=8)
        shown = explorer.result
        torch.testing.assert_close(shown.ig, result.ig, rtol=1e-4, atol=1e-6)
        assert shown.ig.shape[-2:] == (224, 224)
    finally:
        explorer.close()


def test_padding_inspector_on_the_real_model(lite0) -> None:
    """The TF-SAME ZeroPad2d modules count: at 224 the stride-2 convs pad unevenly (Mind the Pad)
    and the inspector's table marks exactly the rows the core audit calls uneven."""
    model, _ = lite0
    inspector = widgets.PaddingInspector(model, input_size=224)
    try:
        rows = padding.audit_padding(model, 224)
        uneven = int(rows["uneven"].sum())
        assert uneven > 0
        assert inspector.table.value.count("visloupe-uneven") == uneven
    finally:
        inspector.close()


def test_dataset_explorer_embeds_the_photos_with_the_real_model(lite0) -> None:
    model, preprocess = lite0
    photos = data.load_builtin("photos", "test")
    explorer = widgets.DatasetExplorer(photos, model=model, preprocess=preprocess)
    try:
        explorer.show_tab("Map")
        from visloupe.core import profiling

        want = profiling.embed(model, photos, preprocess=preprocess)
        assert explorer.embeddings.shape == want.shape == (22, 1280)
        np.testing.assert_allclose(explorer.embeddings, want, rtol=1e-4, atol=1e-5)
    finally:
        explorer.close()


def test_cose_explorer_summary_on_the_real_model(lite0, photos) -> None:
    """COSE's own setting: an ImageNet CNN, Grad-CAM, its official preprocess (8-bit photos)."""
    import pandas as pd

    model, preprocess = lite0
    two = photos.select([0, 1])
    random = models.checkpoints("efficientnet-lite0")["random"]  # a model-change pair
    explorer = widgets.COSEExplorer({"lite0": model}, two, ["grad_cam"], preprocess=preprocess,
                                    alt_models={"lite0": {"random": random}}, n_images=2,
                                    magnitudes_per_transform=1, cell=112)
    try:
        explorer.with_robustness.value = False
        shown = explorer.compute_summary()
        expected = evaluation.compare_methods({"lite0": model}, two, ["grad_cam"],
                                              preprocess=preprocess, n_images=2,
                                              **explorer.summary_arguments())
        pd.testing.assert_frame_equal(shown, expected, check_dtype=False)
        assert explorer.error_area.value == ""
        assert 0.0 < float(shown["cose"].iloc[0]) <= 1.0
    finally:
        explorer.close()


def test_sanity_explorer_cascade_on_the_real_model(lite0, photos) -> None:
    """Cascading randomization of EfficientNet-Lite0 from the head, on one photo, two layers."""
    model, preprocess = lite0
    explorer = widgets.SanityCheckExplorer(model, photos.select([1]), ["saliency"],
                                           preprocess=preprocess, n_inputs=1,
                                           layers=["_fc", "_conv_head"], cell=96)
    try:
        assert explorer.error_area.value == ""
        want = evaluation.run_randomization(model, explorer.inputs, ["saliency"],
                                            mode="cascading", layers=["_fc", "_conv_head"],
                                            seed=0)
        got = explorer.result("original", "cascading")
        assert got.layers == want.layers == ("_fc", "_conv_head")
        torch.testing.assert_close(got.maps["saliency"], want.maps["saliency"])
        assert got.maps["saliency"].shape[-2:] == (224, 224)
    finally:
        explorer.close()
