"""``run``: a job over a data set, sharded, resumable, in-process or on Ray Data."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import Any

import pandas as pd
import torch

from ..cache import model_fingerprint
from ..checks import check_int, check_optional_int, check_options, check_progress, check_seed
from .engines import ENGINES, run_local, run_ray
from .specs import DataSpec, ModelSpec
from .store import FORMAT, Results, ResultsFolder, load_results, shard_ranges
from .tasks import JOBS, JobDef
from .worker import ShardWorker

__all__ = ["run", "visloupe_version"]

logger = logging.getLogger(__name__)

_CHOICES = {("attribution", "target"): ("predicted", "label"),
            ("sanity", "mode"): ("cascading", "independent")}


def visloupe_version() -> str:
    """The installed visloupe version (recorded in every manifest)."""
    try:
        return metadata.version("visloupe")
    except metadata.PackageNotFoundError:
        return "unknown"


def _plain(name: str, value: Any) -> Any:
    """``value`` as JSON data (what the manifest records and workers receive)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected JSON-serialisable values (the manifest records them "
                        f"and workers receive them), got {value!r}") from err


def _job(job: Any) -> JobDef:
    if not isinstance(job, str) or job not in JOBS:
        raise ValueError(f"job: expected one of {list(JOBS)}, got {job!r}")
    return JOBS[job]


def _options(spec: JobDef, job_options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(job_options) - set(spec.defaults))
    if unknown:
        raise TypeError(f"job_options: {unknown} are not options of job {spec.name!r}; it takes "
                        f"{sorted(spec.defaults) or 'none'}")
    options = {**spec.defaults, **job_options}
    for (job, key), allowed in _CHOICES.items():
        if job == spec.name and options[key] not in allowed:
            raise ValueError(f"{key}: expected one of {list(allowed)}, got {options[key]!r}")
    if spec.name == "robustness":
        from ..evaluation import infidelity, max_sensitivity

        check_options("infidelity_kwargs", options["infidelity_kwargs"], infidelity)
        check_options("max_sensitivity_kwargs", options["max_sensitivity_kwargs"],
                      max_sensitivity)
    if "store_maps" in options and not isinstance(options["store_maps"], bool):
        raise TypeError(f"store_maps: expected a bool, got {options['store_maps']!r}")
    alts = options.get("alt_models")
    if alts is not None and (isinstance(alts, str) or not isinstance(alts, Sequence)):
        raise TypeError(f"alt_models: expected a list of checkpoint names, got {alts!r}")
    return _plain("job_options", options)


def _explainers(spec: JobDef, explainers: Any) -> dict[str, list[Any]]:
    """``{display name: [method, params]}`` from names, ``(name, params)`` pairs or a dict."""
    from ..attribution import resolve_explainers

    if not spec.explainers:
        if explainers:
            raise ValueError(f"explainers: job {spec.name!r} takes none, got {explainers!r}")
        return {}
    if isinstance(explainers, str):
        explainers = [explainers]
    if not explainers:
        raise ValueError(f"explainers: job {spec.name!r} needs at least one explainer (a "
                         "registry name such as 'grad_cam' or 'integrated_gradients')")
    items = explainers.items() if isinstance(explainers, Mapping) else \
        ((None, e) for e in explainers)
    out: dict[str, list[Any]] = {}
    for label, value in items:
        method, params = (value[0], dict(value[1])) if isinstance(value, (list, tuple)) \
            and len(value) == 2 and isinstance(value[1], Mapping) else (value, {})
        if not isinstance(method, str):
            raise TypeError(f"explainers: jobs take registry method names (workers rebuild "
                            f"them), got {type(method).__name__}")
        try:
            resolved = resolve_explainers({label or method: (method, params)})
        except (TypeError, ValueError) as err:
            raise ValueError(f"explainers: {value!r}: {err}") from err
        name = next(iter(resolved))
        key, k = name, 2
        while key in out:
            key, k = f"{name} ({k})", k + 1
        out[key] = [method, params]
    return _plain("explainers", out)


def _check_alt_models(names: Sequence[str], model: str) -> None:
    """COSE's model-change pairs are checkpoints of the job's own built-in model."""
    if not names:
        return
    from ..models import available_models, model_info

    if model not in available_models():
        raise ValueError(f"alt_models: checkpoints exist for the built-in models only "
                         f"({sorted(available_models())}), not for {model!r}")
    known = list(model_info(model)["checkpoints"])
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"alt_models: {unknown} are not checkpoints of {model!r}; it has "
                         f"{known}")


def _root_cause(err: BaseException) -> BaseException:
    """The innermost exception behind Ray's wrappers (``RayTaskError.cause``, ``__cause__``)."""
    seen, current = set(), err
    while id(current) not in seen:
        seen.add(id(current))
        nxt = getattr(current, "cause", None) or current.__cause__
        if not isinstance(nxt, BaseException):
            break
        current = nxt
    return current


def _first_lines(err: BaseException, limit: int = 400) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_labels(spec: JobDef, data: Any, data_spec: DataSpec) -> None:
    if not spec.labels:
        return
    if all(v is None for v in data.source.label_values(range(min(data.rows, 64)))):
        raise ValueError(f"label_column: job {spec.name!r} needs labels but {data_spec.spec!r} "
                         f"has no label column among {data.dataset.column_names} (pass "
                         "label_column=)")


def run(
    job: str,
    *,
    data: str,
    model: str,
    explainers: Any = (),
    split: str | None = "test",
    limit: int | None = None,
    out: str | os.PathLike,
    engine: str = "local",
    workers: int = 1,
    batch_size: int = 16,
    seed: int = 0,
    address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    shard_size: int = 32,
    image_column: str | None = None,
    label_column: str | None = None,
    data_kwargs: Mapping[str, Any] | None = None,
    threads: int | None = None,
    **job_options: Any,
) -> Results:
    """Run ``job`` over the first ``limit`` rows of ``data`` (all by default) and store one row
    per evaluated item under ``out``; returns :func:`load_results` of the folder.

    Jobs (``JOBS``): ``attribution`` (maps of each explainer, stored unless
    ``store_maps=False``), ``cose`` (COSE pairs per image, the paper's summary; Daroya, Sun,
    Maji, ICCV-W 2023), ``robustness`` (infidelity and max-sensitivity; Yeh et al., NeurIPS
    2019), ``embed`` (embeddings and image statistics), ``sanity`` (model-parameter
    randomisation; Adebayo et al., NeurIPS 2018). ``job_options`` are the job's own options
    (``JOBS[job].defaults``).

    Args:
        data: ``"builtin:<name>"``, a local image folder, or a Hugging Face dataset name
            (``datasets.load_dataset(data, split=split, **data_kwargs)``).
        model: a built-in model name or an importable ``"module:factory"`` returning
            ``(model, preprocess)`` or a model.
        explainers: registry method names, ``(name, params)`` pairs or ``{label: name}``.
        out: the results folder; a folder of a finished run returns at once (no model call), one
            of an interrupted run is continued: only missing shards are computed.
        engine: ``"local"`` (this process) or ``"ray"`` (Ray Data, an actor pool of
            ``workers`` model replicas; a local cluster unless ``address`` is given:
            ``"auto"`` or ``"ray://host:10001"``).
        batch_size: images per model call inside a shard (results do not depend on it).
        seed: per-image draws use ``row_seed(seed, row_id)``; the randomisation test's
            re-initialised weights use ``seed``.
        progress: ``progress(done_rows, total_rows)`` after each shard.
        shard_size: rows per shard, the unit of resumption (fixed by the row index alone).
        threads: torch threads per worker (default: torch's own locally; on Ray the CPUs
            per actor once a share is left to Ray itself, ``cpus // (workers + 1)``, >= 1).
    """
    spec = _job(job)
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {list(ENGINES)}, got {engine!r}")
    workers = check_int("workers", workers)
    batch_size = check_int("batch_size", batch_size)
    shard_size = check_int("shard_size", shard_size)
    limit = check_optional_int("limit", limit)
    threads = check_optional_int("threads", threads)
    seed = check_seed(seed)
    check_progress(progress)
    if address is not None and (not isinstance(address, str) or engine != "ray"):
        raise ValueError(f"address: only engine='ray' attaches to a cluster; got address="
                         f"{address!r} with engine={engine!r}")
    options = _options(spec, job_options)
    explainer_specs = _explainers(spec, explainers)
    data_spec = DataSpec(data, split, _plain("data_kwargs", dict(data_kwargs or {})),
                         image_column, label_column, limit)
    model_spec = ModelSpec(model)
    loaded = data_spec.load()
    _check_labels(spec, loaded, data_spec)
    net, preprocess = model_spec.load()
    _check_alt_models(options.get("alt_models") or [], model_spec.spec)
    identity = {
        "format": FORMAT, "visloupe_version": visloupe_version(), "job": spec.name,
        "options": {**options, "explainers": explainer_specs, "seed": seed,
                    "shard_size": shard_size},
        "data": {**data_spec.to_dict(), "rows": loaded.rows, "fingerprint": loaded.fingerprint(),
                 "class_names": loaded.source.class_names},
        "model": {"spec": model_spec.spec, "fingerprint": model_fingerprint(net)},
    }
    folder = ResultsFolder(out)
    manifest = folder.open(identity, spec.tables, shard_ranges(loaded.rows, shard_size))
    pending = folder.pending(manifest)
    total = loaded.rows
    done_rows = total - sum(s["stop"] - s["start"] for s in pending)
    if progress is not None:
        progress(done_rows, total)
    if not pending and manifest.get("complete"):
        return load_results(folder.path)

    config = {"job": spec.name, "options": options, "explainers": explainer_specs,
              "seed": seed, "batch_size": batch_size, "data": data_spec.to_dict(),
              "data_fingerprint": identity["data"]["fingerprint"], "model": model_spec.spec,
              "model_fingerprint": identity["model"]["fingerprint"],
              "threads": threads}
    counter = {"rows": done_rows, "shards": 0}

    def on_shard(shard: Mapping[str, Any], payload: Mapping[str, bytes]) -> None:
        folder.write_shard(shard, payload)
        counter["rows"] += int(shard["stop"]) - int(shard["start"])
        counter["shards"] += 1
        if progress is not None:
            progress(counter["rows"], total)

    started = time.perf_counter()
    if engine == "local":
        device = "cuda" if torch.cuda.is_available() else None
        saved = torch.get_num_threads()
        try:
            run_local(ShardWorker({**config, "device": device}, (loaded, net, preprocess)),
                      pending, on_shard)
        finally:
            torch.set_num_threads(saved)  # threads= is for this run, not the caller's session
    else:
        try:
            run_ray(config, pending, on_shard, workers=workers, address=address)
        except Exception as err:
            if isinstance(err, (ImportError, KeyboardInterrupt)):
                raise
            cause = _root_cause(err)
            raise RuntimeError(
                f"engine='ray': the job stopped after {counter['shards']} of {len(pending)} "
                f"shard(s) ({type(cause).__name__}: {_first_lines(cause)}). Finished shards "
                f"are kept in {str(folder.path)!r}; run the same call again to compute the "
                "rest (if a worker ran out of memory, lower batch_size or workers)") from err
    seconds = time.perf_counter() - started
    rows_run = sum(s["stop"] - s["start"] for s in pending)
    tables = folder.read_tables(manifest)
    if any(len(t) for name, t in tables.items() if name != "unreadable"):
        summary = spec.summarize(tables, options)
    else:  # no row could be read: nothing to summarise, the unreadable table says why
        logger.warning("no row of the %s job could be read; see its 'unreadable' table", job)
        summary = pd.DataFrame()
    folder.finish(manifest, summary, {
        "engine": engine, "workers": workers if engine == "ray" else 1,
        "batch_size": batch_size, "threads": threads, "shards": len(pending),
        "rows": rows_run, "seconds": round(seconds, 3),
        "rows_per_second": round(rows_run / seconds, 3) if seconds > 0 else None})
    return load_results(folder.path)
