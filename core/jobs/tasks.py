"""The jobs: what one shard of rows computes, through the same public core functions a notebook
calls, and how the shards' tables add up to a summary.

Every job returns tables with one row per evaluated item and a ``row_id`` column (the data set
row). Randomness that is drawn per image (COSE's magnitudes, the perturbations of infidelity and
max-sensitivity) is seeded by :func:`row_seed` ``(seed, row_id)``, so an image gets the same
numbers whatever shard, batch or worker it lands in; those functions are therefore called one
image at a time. Jobs whose functions draw nothing per image (attribution, embeddings, the
randomisation test, whose re-initialised weights come from ``seed`` alone) run whole batches.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

if TYPE_CHECKING:
    from .worker import ShardWorker

__all__ = ["JOBS", "JobDef", "row_seed"]

logger = logging.getLogger(__name__)

Compute = Callable[["ShardWorker", list[int]], dict[str, pd.DataFrame]]
Summarize = Callable[[Mapping[str, pd.DataFrame], Mapping[str, Any]], pd.DataFrame]


def row_seed(seed: int, row_id: int) -> int:
    """A 63-bit seed from the job's ``seed`` and one data set row (BLAKE2b): the same row gets
    the same draws in any shard or batch, different rows get independent ones."""
    h = hashlib.blake2b(f"visloupe.jobs|{int(seed)}|{int(row_id)}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") >> 1


@dataclass(frozen=True)
class JobDef:
    """One job: its tables, its options with their defaults, what a shard computes and how the
    tables are summarised. ``explainers``: whether the job takes explainers; ``labels``:
    whether it needs a label column."""

    name: str
    description: str
    tables: tuple[str, ...]
    defaults: Mapping[str, Any]
    compute: Compute
    summarize: Summarize
    explainers: bool = True
    labels: bool = False


def _chunks(rows: Sequence[int], size: int) -> list[list[int]]:
    return [list(rows[i:i + size]) for i in range(0, len(rows), size)]


def _device_inputs(worker: ShardWorker, rows: Sequence[int]) -> torch.Tensor:
    from ..models import model_device

    x = worker.data.source.tensors(rows, worker.preprocess)
    return x.to(model_device(worker.model))


def _readable(worker: ShardWorker, rows: Sequence[int]) -> tuple[list[int], pd.DataFrame]:
    """The rows whose images decode, and the ``unreadable`` table ``(row_id, error)`` of the
    others: one corrupt file costs its own row, not the shard (the jobs' ``embed`` reads the
    same rows through its profile)."""
    src = worker.data.source
    ok: list[int] = []
    bad: list[tuple[int, str]] = []
    for chunk in _chunks(rows, 64):  # a few decoded images at a time, whatever the shard size
        try:
            src.images(chunk)
            ok.extend(chunk)
            continue
        except Exception:  # noqa: BLE001 - find the bad rows one by one
            pass
        for row in chunk:
            try:
                src.images([row])
                ok.append(row)
            except Exception as err:  # noqa: BLE001 - recorded per row
                bad.append((row, f"{type(err).__name__}: {err}"))
    if bad:
        logger.warning("%d of %d rows of this shard cannot be read (first: row %d, %s); they "
                       "are listed in the 'unreadable' table", len(bad), len(rows), *bad[0])
    return ok, _unreadable(bad)


def _unreadable(bad: Sequence[tuple[int, str]]) -> pd.DataFrame:
    return pd.DataFrame({"row_id": np.asarray([r for r, _ in bad], dtype=np.int64),
                         "error": pd.Series([e for _, e in bad], dtype=object)})


def _labels(worker: ShardWorker, rows: Sequence[int]) -> list[int | None]:
    return worker.data.source.label_values(rows)


def _nullable_ints(values: Sequence[int | None]) -> pd.Series:
    return pd.array([None if v is None else int(v) for v in values], dtype="Int64")


def _records_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record, the ``label`` column as nullable ints (rows without a label)."""
    if not records:  # a shard whose every row was unreadable
        return pd.DataFrame()
    df = pd.DataFrame(records)
    df["label"] = _nullable_ints(df["label"].tolist())
    return df


# --------------------------------------------------------------------------- attribution


def _attribution(worker: ShardWorker, rows: list[int]) -> dict[str, pd.DataFrame]:
    """Saliency maps of every explainer (:func:`visloupe.core.attribution.explain`)."""
    from ..attribution import explain, explain_predicted
    from ..models import predict

    opts = worker.options
    target, store = opts["target"], opts["store_maps"]
    rows, unreadable = _readable(worker, rows)
    records: list[dict[str, Any]] = []
    for chunk in _chunks(rows, worker.batch_size):
        x = _device_inputs(worker, chunk)
        labels = _labels(worker, chunk)
        prediction: torch.Tensor | None = None
        for name, (method, params) in worker.explainer_specs.items():
            kwargs = {"postprocess": opts["postprocess"], "reduce": opts["reduce"], **params}
            if target == "predicted":
                maps, predicted = explain_predicted(worker.model, x, method, **kwargs)
                targets = predicted
                prediction = predicted if prediction is None else prediction
            else:
                if any(v is None for v in labels):
                    raise ValueError("target: 'label' needs a label on every row; row "
                                     f"{chunk[labels.index(None)]} has none")
                if prediction is None:
                    logits = predict(worker.model, x, batch_size=worker.batch_size)
                    prediction = logits.argmax(1).cpu()
                targets = torch.tensor(labels, dtype=torch.long)
                maps = explain(worker.model, x, targets.to(x.device), method, **kwargs)
            maps = maps.detach().cpu()
            for k, row in enumerate(chunk):
                m = maps[k]
                rec = {"row_id": row, "explainer": name, "method": method,
                       "label": labels[k], "prediction": int(prediction[k]),
                       "target": int(targets[k]), "height": int(m.shape[0]),
                       "width": int(m.shape[1]), "map_min": float(m.min()),
                       "map_max": float(m.max()), "map_mean": float(m.mean()),
                       "map_dtype": str(m.dtype).replace("torch.", "")}
                if store:
                    rec["map"] = m.contiguous().numpy().tobytes()
                records.append(rec)
    return {"maps": _records_table(records), "unreadable": unreadable}


def _attribution_summary(tables: Mapping[str, pd.DataFrame],
                         options: Mapping[str, Any]) -> pd.DataFrame:
    df = tables["maps"]
    rows = []
    for name, group in df.groupby("explainer", sort=False):
        labelled = group[group.label.notna()]
        rows.append({"explainer": name, "method": group.method.iloc[0], "n_maps": len(group),
                     "accuracy": float((labelled.label == labelled.prediction).mean())
                     if len(labelled) else float("nan"),
                     "map_mean": float(group.map_mean.mean()),
                     "maps_stored": bool(options["store_maps"])})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- cose


def _cose(worker: ShardWorker, rows: list[int]) -> dict[str, pd.DataFrame]:
    """COSE per image and explainer (:func:`visloupe.core.evaluation.cose`; Daroya, Sun, Maji,
    ICCV-W 2023, arXiv:2309.10989), the image's magnitudes seeded by ``row_seed``."""
    from ..evaluation import cose, pixel_data

    opts = worker.options
    rows, unreadable = _readable(worker, rows)
    pairs, images = [], []
    for row in rows:
        pdata = pixel_data(worker.data.source, worker.preprocess, indices=[row])
        seed = row_seed(worker.seed, row)
        for name, explainer in worker.explainers.items():
            with warnings.catch_warnings():  # one image often lacks one side: NaN, no warning
                warnings.simplefilter("ignore", RuntimeWarning)
                report = cose(worker.model, pdata, explainer, transforms=opts["transforms"],
                              magnitudes_per_transform=opts["magnitudes_per_transform"],
                              alt_models=worker.alt_models, seed=seed,
                              batch_size=worker.batch_size, win_size=opts["win_size"],
                              postprocess=opts["postprocess"], quantize=opts["quantize"])
            table = report.to_dataframe()
            table.insert(0, "explainer", name)
            table.insert(0, "row_id", row)
            pairs.append(table)
            images.append({"row_id": row, **report.to_dict(), "explainer": name})
    return {"pairs": pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame(),
            "images": pd.DataFrame(images), "unreadable": unreadable}


def _cose_summary(tables: Mapping[str, pd.DataFrame],
                  options: Mapping[str, Any]) -> pd.DataFrame:
    """The paper's aggregate per explainer (``COSEReport.from_pairs``) over every pair."""
    from ..evaluation import COSEReport

    pairs, images = tables["pairs"], tables["images"]
    rows = []
    for name, group in images.groupby("explainer", sort=False):
        own = pairs[pairs.explainer == name].drop(columns=["row_id", "explainer"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            report = COSEReport.from_pairs(
                str(name), own.reset_index(drop=True), int(group.n_images.sum()),
                int(group.n_dropped.sum()), postprocess=str(group.postprocess.iloc[0]),
                quantized=bool(group.quantized.any()))
        rows.append(report.to_dict())
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- robustness


def _robustness(worker: ShardWorker, rows: list[int]) -> dict[str, pd.DataFrame]:
    """Infidelity and max-sensitivity per image (Yeh et al., NeurIPS 2019;
    :func:`visloupe.core.evaluation.infidelity` / ``max_sensitivity``) of the predicted class,
    each image's perturbations seeded by ``row_seed``."""
    from ..evaluation import infidelity, max_sensitivity
    from ..models import predict

    opts = worker.options
    rows, unreadable = _readable(worker, rows)
    records = []
    for chunk in _chunks(rows, worker.batch_size):
        x = _device_inputs(worker, chunk)
        labels = _labels(worker, chunk)
        predicted = predict(worker.model, x, batch_size=worker.batch_size).argmax(1)
        for k, row in enumerate(chunk):
            xi, ti = x[k:k + 1], predicted[k:k + 1]
            seed = row_seed(worker.seed, row)
            for name, explainer in worker.explainers.items():
                inf = infidelity(worker.model, xi, explainer, ti, seed=seed,
                                 batch_size=worker.batch_size, **opts["infidelity_kwargs"])
                sens = max_sensitivity(worker.model, xi, explainer, ti, seed=seed,
                                       batch_size=worker.batch_size,
                                       **opts["max_sensitivity_kwargs"])
                records.append({
                    "row_id": row, "explainer": name, "label": labels[k],
                    "prediction": int(ti), "correct": labels[k] is not None
                    and int(ti) == labels[k], "infidelity": float(inf[0]),
                    "max_sensitivity": float(sens[0])})
    return {"scores": _records_table(records), "unreadable": unreadable}


def _robustness_summary(tables: Mapping[str, pd.DataFrame],
                        options: Mapping[str, Any]) -> pd.DataFrame:
    """Means over the correctly classified images, as ``compare_methods`` reports them."""
    df = tables["scores"]
    rows = []
    for name, group in df.groupby("explainer", sort=False):
        ok = group[group.correct]
        rows.append({"explainer": name, "n_images": len(group), "n_correct": len(ok),
                     "infidelity": float(ok.infidelity.mean()) if len(ok) else float("nan"),
                     "max_sensitivity": float(ok.max_sensitivity.mean()) if len(ok)
                     else float("nan")})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- embed


def _embed(worker: ShardWorker, rows: list[int]) -> dict[str, pd.DataFrame]:
    """Image statistics (:func:`visloupe.core.profiling.profile_dataset`) of each row and
    pooled activations (:func:`visloupe.core.profiling.embed`) of each readable one: a corrupt
    file costs its own embedding, its profile row says why, and the job goes on."""
    from ..profiling import embed, profile_dataset

    opts = worker.options
    spec = worker.data_spec
    profile = profile_dataset(worker.data.dataset.select(rows), image_column=spec.image_column,
                              label_column=spec.label_column)
    profile["index"] = np.asarray(rows, dtype=np.int64)[profile["index"].to_numpy()]
    profile.insert(0, "row_id", profile["index"].to_numpy())
    profile.attrs = {}
    readable = [int(r) for r in profile.loc[profile["error"].isna(), "row_id"]]
    vectors = embed(worker.model, worker.data.source, opts["layer"],
                    preprocess=worker.preprocess, batch_size=worker.batch_size, cache=False,
                    indices=readable) if readable else []
    labels = _labels(worker, readable)
    emb = pd.DataFrame({"row_id": np.asarray(readable, dtype=np.int64),
                        "label": _nullable_ints(labels),
                        "embedding": [np.asarray(v, dtype=np.float32) for v in vectors]})
    return {"embeddings": emb, "profile": profile}


def _embed_summary(tables: Mapping[str, pd.DataFrame],
                   options: Mapping[str, Any]) -> pd.DataFrame:
    """Per class: counts and mean statistics (:func:`visloupe.core.profiling.class_summary`)."""
    from ..profiling import class_summary

    summary = class_summary(tables["profile"])
    dims = {len(v) for v in tables["embeddings"].embedding}
    summary["embedding_dim"] = dims.pop() if len(dims) == 1 else -1
    return summary


# --------------------------------------------------------------------------- sanity


def _sanity(worker: ShardWorker, rows: list[int]) -> dict[str, pd.DataFrame]:
    """Model-parameter randomisation (Adebayo et al., NeurIPS 2018;
    :func:`visloupe.core.evaluation.run_randomization`): the same re-initialised models, seeded
    by ``seed``, for every row."""
    from ..evaluation import run_randomization

    opts = worker.options
    rows, unreadable = _readable(worker, rows)
    frames = []
    for chunk in _chunks(rows, worker.batch_size):
        x = _device_inputs(worker, chunk)
        result = run_randomization(worker.model, x, worker.explainers, mode=opts["mode"],
                                   layers=opts["layers"], seed=worker.seed,
                                   measures=opts["measures"], batch_size=worker.batch_size)
        records = result.to_dataframe(aggregate=False)
        position = records["input"].to_numpy()
        records["input"] = np.asarray(chunk, dtype=np.int64)[position]
        records.insert(0, "row_id", records["input"].to_numpy())
        records["target"] = result.targets.numpy()[position]
        frames.append(records)
    if not frames:
        return {"records": pd.DataFrame(), "unreadable": unreadable}
    records = pd.concat(frames, ignore_index=True)  # in row order, whatever the batch size
    records = records.sort_values("row_id", kind="stable")  # each row's own order kept
    return {"records": records.reset_index(drop=True), "unreadable": unreadable}


def _sanity_summary(tables: Mapping[str, pd.DataFrame],
                    options: Mapping[str, Any]) -> pd.DataFrame:
    """Mean similarity per step, explainer and measure (``aggregate_records``)."""
    from ..evaluation import aggregate_records

    return aggregate_records(tables["records"].drop(columns=["row_id", "target"]))


JOBS: dict[str, JobDef] = {
    "attribution": JobDef(
        "attribution", "saliency maps per image and explainer (stored compressed unless "
        "store_maps=false); unreadable rows listed apart", ("maps", "unreadable"),
        {"target": "predicted", "store_maps": True, "postprocess": None, "reduce": None},
        _attribution, _attribution_summary),
    "cose": JobDef(
        "cose", "COSE consistency/sensitivity pairs per image and explainer, and the paper's "
        "summary", ("pairs", "images", "unreadable"),
        {"transforms": None, "magnitudes_per_transform": 6, "alt_models": [],
         "win_size": 5, "postprocess": "paper", "quantize": None},
        _cose, _cose_summary, labels=True),
    "robustness": JobDef(
        "robustness", "infidelity and max-sensitivity per image and explainer",
        ("scores", "unreadable"),
        {"infidelity_kwargs": {}, "max_sensitivity_kwargs": {}},
        _robustness, _robustness_summary),
    "embed": JobDef(
        "embed", "embeddings and image statistics per image, with a per-class summary",
        ("embeddings", "profile"), {"layer": None}, _embed, _embed_summary, explainers=False),
    "sanity": JobDef(
        "sanity", "randomisation sanity check per image, step, explainer and measure",
        ("records", "unreadable"), {"mode": "cascading", "layers": None, "measures": None},
        _sanity, _sanity_summary),
}
