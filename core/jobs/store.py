"""A results folder: a manifest, one Parquet file per shard and table, and a summary.

Layout::

    out/
      manifest.json                 job, options, data and model fingerprints, version, shards
      shards/<table>-<shard>.parquet one file per shard and table, each written atomically
      summary.parquet               written once every shard is there

A shard is finished when all its table files exist: each appears whole or not at all
(:func:`visloupe.core.cache.atomic_write`), so a killed run leaves no partial shard that could
pass for a finished one, and a restart recomputes exactly the missing shards under the same
names (a row is never stored twice). The manifest's identity (job, options, data and model
fingerprints, visloupe version) must match for a run to continue a folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from ..cache import atomic_write
from ..checks import check_int
from .specs import DataSpec, LoadedData, ModelSpec, Preprocess
from .worker import decode_table

__all__ = ["FORMAT", "MANIFEST", "Results", "ResultsFolder", "decode_maps", "load_results",
           "shard_ranges"]

MANIFEST = "manifest.json"
SUMMARY = "summary.parquet"
FORMAT = 1
IDENTITY = ("format", "visloupe_version", "job", "options", "data", "model")


def shard_ranges(rows: int, shard_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` row ranges of ``shard_size`` rows: fixed by the row index alone."""
    check_int("rows", rows, 0)
    check_int("shard_size", shard_size)
    return [(s, min(rows, s + shard_size)) for s in range(0, rows, shard_size)]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, obj: Mapping[str, Any]) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))


def _read_manifest(path: Path, name: str) -> dict[str, Any]:
    file = path / MANIFEST
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{name}: cannot read {str(file)!r} ({err}); not a visloupe results "
                         "folder") from err
    if not isinstance(manifest, dict) or "job" not in manifest or "shards" not in manifest:
        raise ValueError(f"{name}: {str(file)!r} is not a visloupe results manifest")
    return manifest


def _describe(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: folder has {_describe(a)}, this run {_describe(b)}")
    return out


class ResultsFolder:
    """The results folder ``path`` of one job (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"out: expected a folder path, got {type(path).__name__}")
        self.path = Path(path).expanduser()

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def file(self, table: str, shard: int) -> Path:
        return self.path / "shards" / f"{table}-{shard:05d}.parquet"

    def open(self, identity: Mapping[str, Any], tables: Sequence[str],
             ranges: Sequence[tuple[int, int]]) -> dict[str, Any]:
        """The manifest of a new folder (written now) or of a folder this run continues; a
        folder made by another job, options, data, model or version raises ValueError."""
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"out: {str(self.path)!r} exists and is not a folder")
        if self.manifest_path.exists():
            manifest = _read_manifest(self.path, "out")
            old = {k: manifest.get(k) for k in IDENTITY}
            diffs = _differences(old, dict(identity))
            if old.get("job") != identity.get("job"):  # another job: its options differ anyway
                diffs = [d for d in diffs if d.startswith("job:")]
            if diffs:
                raise ValueError(
                    f"out: {str(self.path)!r} holds results of another run ("
                    + "; ".join(diffs) + "); use another folder, or delete this one to start "
                    "again")
            added = [t for t in tables if t not in manifest["tables"]]
            if added:  # a folder begun before the job had these tables: its pending shards
                # write them, its finished shards stay finished (and lack them)
                manifest["tables"] = [*manifest["tables"], *added]
                for shard in manifest["shards"]:
                    if not self.done(manifest, shard):
                        shard["files"].update({t: str(self.file(t, shard["index"]).relative_to(
                            self.path)) for t in added})
                _write_json(self.manifest_path, manifest)
            return manifest
        if self.path.is_dir() and any(self.path.iterdir()):
            raise ValueError(f"out: {str(self.path)!r} is not empty and has no {MANIFEST}; "
                             "not a visloupe results folder (give a new or empty folder)")
        (self.path / "shards").mkdir(parents=True, exist_ok=True)
        manifest = {
            **identity, "tables": list(tables), "created": _now(), "complete": False,
            "shards": [{"index": k, "start": s, "stop": e,
                        "files": {t: str(self.file(t, k).relative_to(self.path))
                                  for t in tables}}
                       for k, (s, e) in enumerate(ranges)],
            "runs": [],
        }
        _write_json(self.manifest_path, manifest)
        return manifest

    def done(self, manifest: Mapping[str, Any], shard: Mapping[str, Any]) -> bool:
        """Whether every table file of ``shard`` is there."""
        return all((self.path / f).is_file() for f in shard["files"].values())

    def pending(self, manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The shards still to compute."""
        return [s for s in manifest["shards"] if not self.done(manifest, s)]

    def write_shard(self, shard: Mapping[str, Any], payload: Mapping[str, bytes]) -> None:
        """Store one shard's Parquet bytes, each table file atomically."""
        (self.path / "shards").mkdir(parents=True, exist_ok=True)
        for table, rel in shard["files"].items():
            if table not in payload:
                raise RuntimeError(f"shard {shard['index']}: no table {table!r} came back")
            data = payload[table]
            atomic_write(self.path / rel, lambda tmp, data=data: Path(tmp).write_bytes(data))

    def read_tables(self, manifest: Mapping[str, Any], *,
                    allow_partial: bool = False) -> dict[str, pd.DataFrame]:
        """Every table, shards concatenated in row order."""
        frames: dict[str, list[pd.DataFrame]] = {t: [] for t in manifest["tables"]}
        missing = []
        for shard in manifest["shards"]:
            if not self.done(manifest, shard):
                missing.append(shard["index"])
                continue
            for table, rel in shard["files"].items():
                df = pd.read_parquet(self.path / rel)
                if len(df) and not df["row_id"].between(shard["start"],
                                                        shard["stop"] - 1).all():
                    raise ValueError(f"path: {rel} holds rows outside its shard "
                                     f"[{shard['start']}, {shard['stop']})")
                frames[table].append(df)
        if missing and not allow_partial:
            raise ValueError(f"path: {len(missing)} of {len(manifest['shards'])} shards of "
                             f"{str(self.path)!r} are not finished (first: {missing[0]}); run "
                             "the job again to finish it, or pass allow_partial=True")
        return {t: pd.concat(f, ignore_index=True) if f else pd.DataFrame({"row_id": []})
                for t, f in frames.items()}

    def finish(self, manifest: dict[str, Any], summary: pd.DataFrame,
               run: Mapping[str, Any] | None) -> dict[str, Any]:
        """Write the summary, mark the manifest complete and log ``run``."""
        from .worker import encode_table

        data = encode_table(summary)
        atomic_write(self.path / SUMMARY, lambda tmp: Path(tmp).write_bytes(data))
        manifest = {**manifest, "complete": True, "summary": SUMMARY, "finished": _now()}
        if run is not None:
            manifest["runs"] = [*manifest.get("runs", []), dict(run)]
        _write_json(self.manifest_path, manifest)
        return manifest


@dataclass(frozen=True)
class Results:
    """A job's results: ``tables`` (pandas, one row per evaluated item, ``row_id`` the data set
    row; ``"summary"`` once complete) and the ``manifest`` (job, options, fingerprints, shards,
    runs)."""

    path: Path
    manifest: dict[str, Any] = field(repr=False)
    tables: dict[str, pd.DataFrame] = field(repr=False)
    missing: tuple[int, ...] = ()
    """Indices of the shards not finished yet (empty for a complete job)."""

    @property
    def job(self) -> str:
        return str(self.manifest["job"])

    @property
    def complete(self) -> bool:
        """Whether every shard is there and the summary written."""
        return not self.missing and "summary" in self.tables

    @property
    def summary(self) -> pd.DataFrame | None:
        return self.tables.get("summary")

    def __getitem__(self, table: str) -> pd.DataFrame:
        if table not in self.tables:
            raise KeyError(f"table: expected one of {list(self.tables)}, got {table!r}")
        return self.tables[table]

    def require(self, job: str, name: str = "results") -> None:
        """Raise ValueError naming ``name`` unless these are results of ``job``."""
        if self.job != job:
            raise ValueError(f"{name}: expected the results of a {job!r} job, got a "
                             f"{self.job!r} job's folder {str(self.path)!r}")

    @property
    def row_ids(self) -> list[int]:
        """The data set rows the stored tables cover, ascending (not the ``unreadable`` ones,
        which have no results)."""
        ids: set[int] = set()
        for name, table in self.tables.items():
            if name not in ("summary", "unreadable") and "row_id" in table.columns:
                ids.update(int(i) for i in table["row_id"].unique())
        return sorted(ids)

    def open_data(self) -> LoadedData:
        """The job's data reopened from its manifest (as every worker opened it). Raises
        ValueError naming ``data`` if those rows are no longer what the job saw."""
        recorded = self.manifest["data"]
        spec = DataSpec(**{k: recorded[k] for k in ("spec", "split", "kwargs", "image_column",
                                                    "label_column", "limit")})
        loaded = spec.load()
        if loaded.fingerprint() != recorded["fingerprint"]:
            raise ValueError(f"data: {spec.spec!r} (split {spec.split!r}) no longer holds the "
                             f"rows the job in {str(self.path)!r} ran on; pass the data "
                             "yourself or rerun the job")
        return loaded

    def open_model(self) -> tuple[nn.Module, Preprocess | None]:
        """``(model, preprocess)`` reopened from the manifest's model spec. Raises ValueError
        naming ``model`` if its weights or code differ from the job's."""
        from ..cache import model_fingerprint

        recorded = self.manifest["model"]
        model, preprocess = ModelSpec(recorded["spec"]).load()
        if model_fingerprint(model) != recorded["fingerprint"]:
            raise ValueError(f"model: {recorded['spec']!r} now loads other weights or code "
                             f"than the job in {str(self.path)!r} used; pass the model "
                             "yourself or rerun the job")
        return model, preprocess

    @property
    def model_name(self) -> str:
        """The job's model spec (a built-in name or ``module:factory``)."""
        return str(self.manifest["model"]["spec"])

    def explainers(self) -> dict[str, Any]:
        """The job's explainers as core :class:`~visloupe.core.attribution.Explainer` objects,
        keyed by the labels the tables use."""
        from ..attribution import resolve_explainers

        specs = self.manifest["options"].get("explainers") or {}
        return resolve_explainers({str(k): (str(m), dict(p)) for k, (m, p) in specs.items()})


def load_results(path: str | os.PathLike, *, allow_partial: bool = False) -> Results:
    """Open a results folder made by :func:`visloupe.core.jobs.run` (here or on a cluster).

    Raises ValueError when shards are missing unless ``allow_partial`` (then the finished
    shards' rows are returned and ``summary`` is absent until the job completes)."""
    folder = ResultsFolder(path)
    if not folder.path.is_dir():
        raise ValueError(f"path: {str(folder.path)!r} is not a folder")
    manifest = _read_manifest(folder.path, "path")
    tables = folder.read_tables(manifest, allow_partial=allow_partial)
    summary = folder.path / SUMMARY
    pending = folder.pending(manifest)
    if not pending and summary.is_file():
        tables["summary"] = decode_table(summary.read_bytes())
    return Results(folder.path, manifest, tables, tuple(int(s["index"]) for s in pending))


def decode_maps(table: pd.DataFrame) -> np.ndarray:
    """The stored saliency maps of an attribution ``maps`` table as ``(N, H, W)`` (in the
    table's row order and the maps' own dtype)."""
    if "map" not in table.columns:
        raise ValueError("table: no 'map' column (the job ran with store_maps=False)")
    if not len(table):
        return np.zeros((0, 0, 0), dtype=np.float32)
    out = [np.frombuffer(b, dtype=np.dtype(d)).reshape(int(h), int(w))
           for b, d, h, w in zip(table["map"], table["map_dtype"], table["height"],
                                 table["width"], strict=True)]
    return np.stack(out)
