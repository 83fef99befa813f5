"""Results folders of dataset-scale jobs open in the widgets and are browsed without
recomputation: the maps, COSE scores and embeddings shown are the job's stored ones.

A planted failure in the computing function (``explain``, ``compare_methods``, ``embed``,
``profile_dataset``) proves nothing is recomputed; equality with the stored tables proves that
what is shown is what the job wrote.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from visloupe.core import jobs
from visloupe.core.data import load_builtin
from visloupe.core.models import pretrained
from visloupe.widgets import COSEExplorer, DatasetExplorer, JobProgress, SaliencyExplorer

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPES, MODEL = "builtin:shapes", "shapes-cnn"


def _forbid(monkeypatch, target: str, name: str) -> None:
    def planted(*_args, **_kwargs):
        raise AssertionError(f"{name} was called: the results should have been used")

    monkeypatch.setattr(target, planted)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    out = {}
    out["attribution"] = jobs.run(
        "attribution", data=SHAPES, model=MODEL, limit=6, out=root / "attr",
        explainers=["grad_cam", ("integrated_gradients", {"n_steps": 8})], shard_size=4)
    out["cose"] = jobs.run(
        "cose", data=SHAPES, model=MODEL, limit=4, out=root / "cose", explainers=["grad_cam"],
        transforms=["FlipLR", "Rotate"], magnitudes_per_transform=1, shard_size=2)
    out["embed"] = jobs.run("embed", data=SHAPES, model=MODEL, limit=8, out=root / "embed",
                            shard_size=4)
    return out


def test_saliency_explorer_shows_the_stored_maps_without_explaining(folders, monkeypatch):
    res = folders["attribution"]
    _forbid(monkeypatch, "visloupe.widgets.saliency.SaliencyExplorer._compute_map", "explain")
    explorer = SaliencyExplorer.from_results(res.path, cell=64)
    maps, table = jobs.decode_maps(res["maps"]), res["maps"]
    assert explorer.browser.ids == res.row_ids == list(range(6))
    for position, row in enumerate(res.row_ids):
        explorer.show(position)
        shown = explorer.maps()
        assert len(shown) == 2, explorer.error_area.value
        for (_model, title), raw in shown.items():
            k = int(np.flatnonzero((table.row_id == row) & (table.explainer == title))[0])
            np.testing.assert_array_equal(raw, maps[k])
    assert not explorer._cell_errors
    assert explorer.param_widgets["integrated_gradients"]["n_steps"].value == 8
    explorer.close()


def test_saliency_from_results_recomputes_what_the_job_did_not_store(folders):
    """Re-targeting computes a new map with the job's parameters (a script's explain call)."""
    from visloupe.core.attribution import explain

    res = folders["attribution"]
    explorer = SaliencyExplorer.from_results(res, cell=64)
    explorer.target.value = 0
    model, pre = pretrained(MODEL)
    x = explorer._input(0, MODEL)[None]
    expected = explain(model, x, 0, "integrated_gradients", n_steps=8)[0].numpy()
    np.testing.assert_allclose(explorer.maps()[(MODEL, "integrated_gradients")], expected,
                               rtol=1e-5, atol=1e-7)
    explorer.close()


def test_results_widgets_refuse_other_jobs_models_and_data(folders):
    with pytest.raises(ValueError, match="expected the results of a 'attribution' job"):
        SaliencyExplorer.from_results(folders["cose"].path)
    with pytest.raises(ValueError, match="expected the results of a 'cose' job"):
        COSEExplorer.from_results(folders["embed"].path)
    changed, _ = pretrained(MODEL)
    with torch.no_grad():
        next(changed.parameters()).add_(1.0)
    with pytest.raises(ValueError, match="model: not the model of the job"):
        SaliencyExplorer.from_results(folders["attribution"].path, model=changed)
    wrong = load_builtin("shapes", split="train")
    with pytest.raises(ValueError, match="data: not the data of the job"):
        DatasetExplorer.from_results(folders["embed"].path, data=wrong)


def test_cose_explorer_shows_the_jobs_summary_and_per_image_scores(folders, monkeypatch):
    res = folders["cose"]
    _forbid(monkeypatch, "visloupe.core.evaluation.compare_methods", "compare_methods")
    explorer = COSEExplorer.from_results(res.path, cell=48)
    summary = explorer.summary
    assert list(summary["method"]) == list(res.summary["explainer"])
    for col in ("consistency", "sensitivity", "cose", "n_consistency", "n_sensitivity"):
        np.testing.assert_array_equal(summary[col].to_numpy(), res.summary[col].to_numpy())
    assert "<svg" in explorer.bars.value and "<table" in explorer.table.value
    images = res["images"]
    for position, row in enumerate(res.row_ids):
        explorer.image_slider.value = position
        rec = images[(images.row_id == row) & (images.explainer == "grad_cam")].iloc[0]
        stored = f"row {row} in the job's results"
        assert stored in explorer.status.value
        if np.isfinite(rec.cose):
            assert f"cose <b>{rec.cose:.3f}</b>" in explorer.status.value
    explorer.close()


def test_dataset_explorer_uses_the_jobs_profile_and_embeddings(folders, monkeypatch):
    res = folders["embed"]
    _forbid(monkeypatch, "visloupe.core.profiling.embed", "embed")
    _forbid(monkeypatch, "visloupe.core.profiling.profile_dataset", "profile_dataset")
    explorer = DatasetExplorer.from_results(res.path)
    for tab in ("Overview", "Classes", "Map", "Duplicates & outliers"):
        explorer.show_tab(tab)
    assert not explorer.error_area.value, explorer.error_area.value
    expected = np.stack(res["embeddings"].sort_values("row_id").embedding.to_list())
    np.testing.assert_array_equal(explorer.embeddings, expected)
    pd.testing.assert_series_equal(explorer.profile["brightness"].reset_index(drop=True),
                                   res["profile"]["brightness"].reset_index(drop=True),
                                   check_names=False)
    assert explorer.duplicate_arguments()["embeddings"] is explorer.embeddings
    explorer.close()


def test_job_progress_reports_what_and_how_far():
    bar = JobProgress("cose on shapes")
    bar(0, 8)
    assert bar.bar.max == 8 and "0 / 8 rows (0 %" in bar.label.value
    bar(4, 8)
    assert bar.bar.value == 4 and "4 / 8 rows (50 %" in bar.label.value
    bar(8, 8)
    assert bar.bar.bar_style == "success" and "(done" in bar.label.value
    assert "&lt;b&gt;" in JobProgress("<b>x</b>").label.value
