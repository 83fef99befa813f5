"""Dataset-scale jobs: the same numbers as the in-process core functions, nothing lost, nothing
twice, whatever the engine, the number of workers, the batch size or the sharding.

Small on purpose (a few dozen 32x32 ``shapes`` images, ``shapes-cnn``): the whole file runs in
well under two minutes on two cores. The Ray tests share one local Ray of 2 CPUs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import jobmodels
from visloupe.core import jobs
from visloupe.core.attribution import explain, explain_predicted
from visloupe.core.data import as_image_source, load_builtin
from visloupe.core.evaluation import (
    COSEReport,
    cose,
    infidelity,
    max_sensitivity,
    run_randomization,
)
from visloupe.core.models import checkpoints, pretrained
from visloupe.core.profiling import class_summary, embed, profile_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPES, MODEL, COUNTING = "builtin:shapes", "shapes-cnn", "helpers.jobmodels:counting_cnn"
COSE_OPTS = {"transforms": ["FlipLR", "Rotate", "Brightness"], "magnitudes_per_transform": 2}
TESTS = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shapes():
    ds = load_builtin("shapes", split="test")
    model, pre = pretrained(MODEL)
    return ds, model, pre


def _inputs(ds, pre, rows) -> torch.Tensor:
    return as_image_source(ds).tensors(list(rows), pre)


def _sorted(df: pd.DataFrame, keys) -> pd.DataFrame:
    return df.sort_values(list(keys), kind="stable").reset_index(drop=True)


def _cose_reference(model, ds, pre, rows, explainers, **options):
    """Per-image ``cose()`` with the job's per-row seeds: the job's rows must equal these."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for row in rows:
            for name in explainers:
                out[row, name] = cose(model, ds, name, indices=[row], preprocess=pre,
                                      seed=jobs.row_seed(0, row), **options)
    return out


def _assert_pairs_equal(pairs: pd.DataFrame, reference) -> None:
    for (row, name), report in reference.items():
        got = pairs[(pairs.row_id == row) & (pairs.explainer == name)]
        pd.testing.assert_frame_equal(got.drop(columns=["row_id", "explainer"])
                                      .reset_index(drop=True), report.pairs, atol=1e-6,
                                      check_exact=False)


def _assert_cose_equal(a: jobs.Results, b: jobs.Results) -> None:
    for table, keys in (("pairs", ["row_id", "explainer", "op", "magnitude"]),
                        ("images", ["row_id", "explainer"]), ("summary", ["explainer"])):
        pd.testing.assert_frame_equal(_sorted(a[table], keys), _sorted(b[table], keys),
                                      check_exact=False, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------- per-row equality


def test_attribution_rows_equal_explain(tmp_path, shapes):
    ds, model, pre = shapes
    calls = []
    res = jobs.run("attribution", data=SHAPES, model=MODEL, limit=10, out=tmp_path / "a",
                   explainers=["grad_cam", ("integrated_gradients", {"n_steps": 8})],
                   shard_size=4, batch_size=3, progress=lambda d, n: calls.append((d, n)))
    assert calls[0] == (0, 10) and calls[-1] == (10, 10) and len(calls) == 4
    assert res.complete and res.job == "attribution"
    x = _inputs(ds, pre, range(10))
    labels = ds.select(range(10))["label"]
    for name, method, params in (("grad_cam", "grad_cam", {}),
                                 ("integrated_gradients", "integrated_gradients",
                                  {"n_steps": 8})):
        part = res["maps"][res["maps"].explainer == name].sort_values("row_id")
        assert part.row_id.tolist() == list(range(10))
        expected, predicted = explain_predicted(model, x, method, **params)
        np.testing.assert_allclose(jobs.decode_maps(part), expected.numpy(), rtol=1e-4,
                                   atol=1e-6)
        assert part.prediction.tolist() == predicted.tolist() == part.target.tolist()
        assert part.label.tolist() == labels
    assert set(res.summary.explainer) == {"grad_cam", "integrated_gradients"}

    # the label as target, maps not stored: the statistics still match explain()
    res = jobs.run("attribution", data=SHAPES, model=MODEL, limit=3, out=tmp_path / "b",
                   explainers=["saliency"], target="label", store_maps=False)
    assert "map" not in res["maps"]
    with pytest.raises(ValueError, match="store_maps"):
        jobs.decode_maps(res["maps"])
    expected = explain(model, _inputs(ds, pre, range(3)), torch.tensor(labels[:3]), "saliency")
    np.testing.assert_allclose(res["maps"].map_mean, expected.mean(dim=(1, 2)).numpy(),
                               rtol=1e-4, atol=1e-7)


def test_cose_rows_equal_per_image_cose_and_ignore_sharding(tmp_path, shapes):
    ds, model, pre = shapes
    explainers = ["grad_cam", "saliency"]
    kwargs = dict(data=SHAPES, model=MODEL, explainers=explainers, limit=6,
                  alt_models=["random"], **COSE_OPTS)
    res = jobs.run("cose", out=tmp_path / "a", shard_size=4, batch_size=5, **kwargs)
    alt = {"random": checkpoints(MODEL)["random"]}
    reference = _cose_reference(model, ds, pre, range(6), explainers, alt_models=alt,
                                **COSE_OPTS)
    pairs, images = res["pairs"], res["images"]
    _assert_pairs_equal(pairs, reference)
    for (row, name), report in reference.items():
        one = images[(images.row_id == row) & (images.explainer == name)]
        assert len(one) == 1
        for key, value in report.to_dict().items():
            assert one.iloc[0][key] == pytest.approx(value, nan_ok=True, abs=1e-6), key
    assert (pairs.kind == "model").any()
    for name in explainers:  # the summary is the paper's aggregate over every image's pairs
        own = [r for (_, n), r in reference.items() if n == name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            total = COSEReport.from_pairs(
                name, pd.concat([r.pairs for r in own], ignore_index=True),
                sum(r.n_images for r in own), sum(r.n_dropped for r in own),
                postprocess=own[0].postprocess, quantized=own[0].quantized)
        row = res.summary[res.summary.explainer == name].iloc[0]
        for key, value in total.to_dict().items():
            assert row[key] == pytest.approx(value, nan_ok=True, abs=1e-9), key
    # seeds come from (seed, row id): other shards and batches give the same numbers
    other = jobs.run("cose", out=tmp_path / "b", shard_size=1, batch_size=2, **kwargs)
    _assert_cose_equal(res, other)


def test_robustness_rows_equal_per_image_metrics(tmp_path, shapes):
    ds, model, pre = shapes
    inf_kw, sens_kw = {"n_samples": 4, "radius": 0.05}, {"n_samples": 3}
    res = jobs.run("robustness", data=SHAPES, model=MODEL, explainers=["grad_cam"], limit=5,
                   out=tmp_path / "r", shard_size=2, batch_size=4, infidelity_kwargs=inf_kw,
                   max_sensitivity_kwargs=sens_kw)
    scores = res["scores"].sort_values("row_id")
    assert scores.row_id.tolist() == list(range(5))
    x = _inputs(ds, pre, range(5))
    for row in range(5):
        xi, seed = x[row:row + 1], jobs.row_seed(0, row)
        got = scores[scores.row_id == row].iloc[0]
        assert got.infidelity == pytest.approx(
            float(infidelity(model, xi, "grad_cam", seed=seed, **inf_kw)[0]), rel=1e-4)
        assert got.max_sensitivity == pytest.approx(
            float(max_sensitivity(model, xi, "grad_cam", seed=seed, **sens_kw)[0]), rel=1e-4,
            abs=1e-7)
    ok = scores[scores.correct]
    assert res.summary.infidelity.iloc[0] == pytest.approx(ok.infidelity.mean())


def test_embed_rows_equal_embed_and_profile(tmp_path, shapes):
    ds, model, pre = shapes
    res = jobs.run("embed", data=SHAPES, model=MODEL, limit=10, out=tmp_path / "e",
                   shard_size=4, batch_size=3)
    emb = res["embeddings"]
    assert emb.row_id.tolist() == list(range(10))
    expected = embed(model, ds, preprocess=pre, cache=False, limit=10)
    np.testing.assert_allclose(np.stack(emb.embedding), expected, rtol=1e-5, atol=1e-6)
    profile = profile_dataset(ds.select(range(10)))
    got = res["profile"]
    assert got.row_id.tolist() == got["index"].tolist() == list(range(10))
    pd.testing.assert_frame_equal(got.drop(columns=["row_id"]), profile, check_dtype=False)
    pd.testing.assert_frame_equal(res.summary.drop(columns=["embedding_dim"]),
                                  class_summary(profile), check_dtype=False)


def test_sanity_rows_equal_run_randomization(tmp_path, shapes):
    ds, model, pre = shapes
    measures = ["spearman", "ssim"]
    res = jobs.run("sanity", data=SHAPES, model=MODEL, explainers=["grad_cam"], limit=6,
                   out=tmp_path / "s", shard_size=4, batch_size=3, measures=measures)
    full = run_randomization(model, _inputs(ds, pre, range(6)), ["grad_cam"], seed=0,
                             measures=measures)
    keys = ["row_id", "step", "measure"]
    expected = full.to_dataframe(aggregate=False).rename(columns={"input": "row_id"})
    got = _sorted(res["records"], keys)
    expected = _sorted(expected, keys)
    # float32 convolutions round differently in batches of 3 and of 6, and a rank correlation
    # of a randomised model's near-flat map turns that into ~1e-5 differences
    np.testing.assert_allclose(got.similarity, expected.similarity, atol=5e-4)
    stored = res["records"]  # stored in row order whatever the batch size
    assert stored.row_id.tolist() == sorted(stored.row_id.tolist())
    assert got.layer.tolist() == expected.layer.tolist()
    pd.testing.assert_frame_equal(res.summary, full.to_dataframe(), check_exact=False,
                                  atol=5e-4)


def test_hugging_face_name_and_folder_read_the_same_rows(tmp_path, shapes):
    ds, model, pre = shapes
    folder = tmp_path / "images"
    names = ds.features["label"].names
    for row in range(8):
        item = ds[row]
        path = folder / "test" / names[item["label"]] / f"{row:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        item["image"].save(path)
    hub = jobs.run("embed", data="imagefolder", data_kwargs={"data_dir": str(folder)},
                   model=MODEL, out=tmp_path / "hub", shard_size=3)
    local = jobs.run("embed", data=str(folder), model=MODEL, out=tmp_path / "folder",
                     shard_size=5)
    ref = datasets.load_dataset("imagefolder", data_dir=str(folder), split="test")
    expected = embed(model, ref, preprocess=pre, cache=False)
    for res in (hub, local):
        np.testing.assert_allclose(np.stack(res["embeddings"].embedding), expected, atol=1e-6)
        assert res["embeddings"].label.tolist() == ref["label"]
    assert hub.manifest["data"]["fingerprint"] == local.manifest["data"]["fingerprint"]


def test_embed_job_goes_on_past_an_unreadable_file(tmp_path, shapes):
    """A corrupt file costs its own embedding; its profile row names the error and the other
    rows are embedded as ``embed`` embeds them."""
    ds, model, pre = shapes
    folder = tmp_path / "images"
    names = ds.features["label"].names
    for row in range(6):
        item = ds[row]
        path = folder / names[item["label"]] / f"{row:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        item["image"].save(path)
    bad = sorted(folder.rglob("*.png"))[2]
    bad.write_bytes(b"not a png")
    res = jobs.run("embed", data=str(folder), split=None, model=MODEL, out=tmp_path / "e",
                   shard_size=4)
    profile = res["profile"]
    errors = profile.loc[profile["error"].notna(), "row_id"].tolist()
    assert len(errors) == 1 and "cannot decode" in profile["error"].dropna().iloc[0]
    readable = [r for r in range(6) if r not in errors]
    assert res["embeddings"].row_id.tolist() == readable
    source = as_image_source(str(folder))
    expected = embed(model, source, preprocess=pre, cache=False, indices=readable)
    np.testing.assert_allclose(np.stack(res["embeddings"].embedding), expected, atol=1e-6)
    # the other jobs list it apart and compute every other row
    for job, table, kwargs in (("attribution", "maps", {"explainers": ["saliency"]}),
                               ("sanity", "records", {"explainers": ["saliency"]}),
                               ("robustness", "scores", {"explainers": ["saliency"],
                                                         "infidelity_kwargs": {"n_samples": 2},
                                                         "max_sensitivity_kwargs": {
                                                             "n_samples": 2}})):
        other = jobs.run(job, data=str(folder), split=None, model=MODEL, shard_size=4,
                         out=tmp_path / job, **kwargs)
        assert other["unreadable"].row_id.tolist() == errors, job
        assert "cannot read" in other["unreadable"].error.iloc[0]
        assert sorted(other[table].row_id.unique()) == readable == other.row_ids, job
    # nothing readable: the job finishes with an empty summary, the table says why
    for path in sorted(folder.rglob("*.png")):
        path.write_bytes(b"not a png")
    none = jobs.run("attribution", data=str(folder), split=None, model=MODEL, shard_size=4,
                    out=tmp_path / "none", explainers=["saliency"])
    assert none.complete and len(none.summary) == 0 and len(none["unreadable"]) == 6
    # a folder begun before the job had the unreadable table: pending shards write it
    old = tmp_path / "old"
    jobs.run("attribution", data=str(folder), split=None, model=MODEL, shard_size=4, out=old,
             explainers=["saliency"])
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["tables"] = ["maps"]
    manifest["complete"] = False
    for shard in manifest["shards"]:
        shard["files"] = {"maps": shard["files"]["maps"]}
        (old / shard["files"]["maps"]).unlink()
    (old / "manifest.json").write_text(json.dumps(manifest))
    again = jobs.run("attribution", data=str(folder), split=None, model=MODEL, shard_size=4,
                     out=old, explainers=["saliency"])
    assert len(again["unreadable"]) == 6


# --------------------------------------------------------------------------- resumption


def _maps_files(path: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (path / "shards").glob("*.parquet")}


def test_interrupted_run_restarts_with_each_row_once(tmp_path, monkeypatch, shapes):
    ds, model, pre = shapes
    armed = tmp_path / "armed"
    armed.touch()
    monkeypatch.setenv("VISLOUPE_TEST_FAIL_FILE", str(armed))
    monkeypatch.setenv("VISLOUPE_TEST_FAIL_AFTER", "3")
    out = tmp_path / "r"
    kwargs = dict(data=SHAPES, model=COUNTING, explainers=["grad_cam"], limit=10,
                  shard_size=2, batch_size=2, out=out)
    with pytest.raises(RuntimeError, match="planted failure"):
        jobs.run("attribution", **kwargs)
    partial = jobs.load_results(out, allow_partial=True)
    assert not partial.complete and partial.summary is None
    done = 5 - len(partial.missing)
    assert 1 <= done < 5
    assert sorted(partial["maps"].row_id) == sorted(
        r for s in partial.manifest["shards"] if s["index"] not in partial.missing
        for r in range(s["start"], s["stop"]))
    with pytest.raises(ValueError, match="not finished"):
        jobs.load_results(out)
    before = _maps_files(out)
    armed.unlink()
    res = jobs.run("attribution", **kwargs)
    assert res.complete and res["maps"].row_id.tolist() == list(range(10))
    after = _maps_files(out)
    assert all(after[name] == stamp for name, stamp in before.items())  # kept, not redone
    expected, _ = explain_predicted(model, _inputs(ds, pre, range(10)), "grad_cam")
    np.testing.assert_allclose(jobs.decode_maps(res["maps"]), expected.numpy(), rtol=1e-4,
                               atol=1e-6)


def test_rerun_of_a_finished_job_makes_no_model_call(tmp_path):
    kwargs = dict(data=SHAPES, model=COUNTING, explainers=["grad_cam"], limit=4,
                  out=tmp_path / "n", shard_size=2)
    first = jobs.run("attribution", **kwargs)
    assert jobmodels.INSTANCES[-1]._calls > 0
    again = jobs.run("attribution", **kwargs)
    assert jobmodels.INSTANCES[-1]._calls == 0
    pd.testing.assert_frame_equal(first["maps"], again["maps"])
    # nor on Ray: a finished folder returns before any engine starts
    jobs.run("attribution", engine="ray", workers=2, batch_size=1, **kwargs)
    assert jobmodels.INSTANCES[-1]._calls == 0
    assert len(again.manifest["runs"]) == 1


# --------------------------------------------------------------------------- bad input


def test_bad_input_names_the_argument(tmp_path):
    base = dict(data=SHAPES, model=MODEL, explainers=["saliency"], limit=2)
    cases = [
        (dict(base, job="nope"), ValueError, "job:"),
        (dict(base, explainers=[]), ValueError, "explainers: job 'attribution' needs"),
        (dict(base, explainers=["nope"]), ValueError, "explainers:"),
        (dict(base, colour=3), TypeError, "job_options: \\['colour'\\]"),
        (dict(base, engine="spark"), ValueError, "engine:"),
        (dict(base, address="auto"), ValueError, "address:"),
        (dict(base, workers=0), ValueError, "workers:"),
        (dict(base, target="pixel"), ValueError, "target:"),
        (dict(base, model="no-such-model"), ValueError, "model: expected a built-in"),
        (dict(base, model="no_such_module_xyz:make"), ValueError, "model: cannot import"),
        (dict(base, model="helpers.jobmodels:missing"), ValueError, "has no attribute"),
        (dict(base, model="helpers.jobmodels:not_a_model"), TypeError, "returned str"),
        (dict(base, data="builtin:nope"), ValueError, "data: expected a built-in"),
        (dict(base, data=str(tmp_path / "absent")), ValueError, "data: folder"),
        (dict(base, split="validation"), ValueError, "split:"),
        (dict(base, image_column="picture"), ValueError, "image_column:"),
        (dict(base, label_column="tag"), ValueError, "label_column:"),
    ]
    for kwargs, error, match in cases:
        job = kwargs.pop("job", "attribution")
        with pytest.raises(error, match=match):
            jobs.run(job, out=tmp_path / "x", **kwargs)
    # a folder made by another job, other options or another version
    out = tmp_path / "made"
    jobs.run("attribution", out=out, **base)
    other_job = 'another run \\(job: folder has "attribution", this run "robustness"\\)'
    with pytest.raises(ValueError, match=other_job):
        jobs.run("robustness", out=out, **base)
    with pytest.raises(ValueError, match="explainers"):
        jobs.run("attribution", out=out, **dict(base, explainers=["grad_cam"]))
    with pytest.raises(ValueError, match="limit"):
        jobs.run("attribution", out=out, **dict(base, limit=3))
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "visloupe_version": "0.0.1"}))
    with pytest.raises(ValueError, match="visloupe_version: folder has \"0.0.1\""):
        jobs.run("attribution", out=out, **base)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and has no manifest.json"):
        jobs.run("attribution", out=tmp_path / "busy", **base)
    with pytest.raises(ValueError, match="path:"):
        jobs.load_results(tmp_path / "busy")
    flat = tmp_path / "flat"  # one folder of images: no label column
    flat.mkdir()
    load_builtin("shapes", split="test")[0]["image"].save(flat / "one.png")
    with pytest.raises(ValueError, match="label_column: job 'cose' needs labels"):
        jobs.run("cose", data=str(flat), split="train", model=MODEL, explainers=["saliency"],
                 out=tmp_path / "nolabels")


# --------------------------------------------------------------------------- command line


def _cli(*args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1"}
    exe = Path(sys.executable).with_name("visloupe")
    return subprocess.Popen([str(exe), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def test_cli_run_and_show(tmp_path, shapes):
    out = tmp_path / "cli"
    proc = _cli("run", "attribution", "--data", SHAPES, "--split", "test", "--model", MODEL,
                "--explainer", "grad_cam", "--explainer", "saliency", "--limit", "6",
                "--out", str(out), "--engine", "local", "--shard-size", "4",
                "--batch-size", "3", "-o", "store_maps=false")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "6/6 rows" in stderr and "summary:" in stdout
    api = jobs.run("attribution", data=SHAPES, model=MODEL, explainers=["grad_cam", "saliency"],
                   limit=6, out=tmp_path / "api", store_maps=False)
    pd.testing.assert_frame_equal(_sorted(jobs.load_results(out)["maps"], ["row_id"]),
                                  _sorted(api["maps"], ["row_id"]), check_exact=False,
                                  atol=1e-6)
    show = _cli("show", str(out), "--table", "maps")
    stdout, stderr = show.communicate(timeout=60)
    assert show.returncode == 0, stderr
    assert "shards:   2/2 finished" in stdout and "grad_cam" in stdout
    bad = _cli("run", "cose", "--data", SHAPES, "--model", "nope", "--explainer", "saliency",
               "--out", str(tmp_path / "bad"))
    _, stderr = bad.communicate(timeout=60)
    assert bad.returncode == 2 and "visloupe: error: model:" in stderr


def test_cli_killed_mid_run_restarts_with_each_row_once(tmp_path, shapes):
    ds, model, pre = shapes
    out = tmp_path / "killed"
    args = ("run", "cose", "--data", SHAPES, "--model", MODEL, "--explainer", "saliency",
            "--limit", "24", "--out", str(out), "--shard-size", "2", "--batch-size", "16",
            "-q", "-o", "magnitudes_per_transform=6")
    proc = _cli(*args)
    deadline = time.monotonic() + 120
    while not any((out / "shards").glob("images-*.parquet")):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    partial = jobs.load_results(out, allow_partial=True)
    assert partial.missing, "the job finished before it could be killed"
    proc = _cli(*args)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    res = jobs.load_results(out)
    assert res["images"].row_id.tolist() == list(range(24))
    pairs = res["pairs"]
    assert not pairs.duplicated(["row_id", "op", "magnitude"]).any()
    _assert_pairs_equal(pairs, _cose_reference(model, ds, pre, [0, 23], ["saliency"],
                                               magnitudes_per_transform=6))


# --------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """One local Ray of 2 CPUs for the module (starting one costs seconds). Workers inherit
    the environment it starts with: the planted-failure switch is set before."""
    ray = pytest.importorskip("ray")
    armed = tmp_path_factory.mktemp("ray") / "armed"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISLOUPE_TEST_FAIL_FILE", str(armed))
        mp.setenv("VISLOUPE_TEST_FAIL_AFTER", "3")
        started = jobs.init_ray(num_cpus=2)
    yield armed
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def cose_local(tmp_path_factory):
    kwargs = dict(data=SHAPES, model=MODEL, explainers=["grad_cam", "saliency"], limit=8,
                  shard_size=2, **COSE_OPTS)
    res = jobs.run("cose", out=tmp_path_factory.mktemp("cose") / "local", batch_size=8,
                   **kwargs)
    return kwargs, res


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "batch_size"), [(1, 3), (2, 16)])
def test_ray_matches_local(tmp_path, local_ray, cose_local, workers, batch_size):
    kwargs, local = cose_local
    res = jobs.run("cose", out=tmp_path / "ray", engine="ray", workers=workers,
                   batch_size=batch_size, **kwargs)
    _assert_cose_equal(res, local)
    assert res.manifest["runs"][-1]["engine"] == "ray"
    assert res.manifest["runs"][-1]["workers"] == workers


@pytest.mark.slow
def test_ray_worker_failure_keeps_shards_and_resumes(tmp_path, local_ray, shapes):
    ds, model, pre = shapes
    out = tmp_path / "flaky"
    kwargs = dict(data=SHAPES, model=COUNTING, explainers=["grad_cam"], limit=12,
                  shard_size=2, batch_size=2, out=out, engine="ray", workers=2)
    local_ray.touch()
    try:
        with pytest.raises(RuntimeError, match="engine='ray'.*run the same call again"):
            jobs.run("attribution", **kwargs)
    finally:
        local_ray.unlink()
    partial = jobs.load_results(out, allow_partial=True)
    assert partial.missing and len(partial["maps"]) == 12 - sum(
        s["stop"] - s["start"] for s in partial.manifest["shards"]
        if s["index"] in partial.missing)
    res = jobs.run("attribution", **kwargs)
    assert res["maps"].row_id.tolist() == list(range(12))
    expected, _ = explain_predicted(model, _inputs(ds, pre, range(12)), "grad_cam")
    np.testing.assert_allclose(jobs.decode_maps(res["maps"]), expected.numpy(), rtol=1e-4,
                               atol=1e-6)
