"""One model replica with its data: what runs a job's shards in-process or inside a Ray actor.

A :class:`ShardWorker` is built from a plain configuration (strings, numbers, lists: what a
manifest records and what a cluster can ship), opens the data and the model itself, checks
that it sees the data the driver fingerprinted, and turns one shard of rows into Parquet bytes
per table.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..cache import model_fingerprint
from .specs import DataSpec, LoadedData, ModelSpec, Preprocess
from .tasks import JOBS

__all__ = ["ShardWorker", "decode_table", "encode_table"]


def encode_table(df: pd.DataFrame) -> bytes:
    """A table as Parquet bytes (zstd: stored maps and embeddings are compressed)."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, compression="zstd")
    return buf.getvalue()


def decode_table(data: bytes) -> pd.DataFrame:
    """The inverse of :func:`encode_table`."""
    return pd.read_parquet(io.BytesIO(data))


class ShardWorker:
    """Computes shards of one job. ``config`` holds ``job``, ``data`` (a :class:`DataSpec` as a
    dict), ``model`` (a spec string), ``options``, ``explainers`` (``{name: [method, params]}``),
    ``seed``, ``batch_size``, ``data_fingerprint``, ``model_fingerprint`` and optionally
    ``threads`` and ``device``.
    ``loaded``: the driver's already opened ``(data, model, preprocess)`` (in-process runs)."""

    def __init__(self, config: Mapping[str, Any],
                 loaded: tuple[LoadedData, nn.Module, Preprocess | None] | None = None) -> None:
        from ..attribution import resolve_explainers

        self.job = JOBS[config["job"]]
        self.options: dict[str, Any] = dict(config["options"])
        self.seed = int(config["seed"])
        self.batch_size = int(config["batch_size"])
        self.data_spec = DataSpec(**config["data"])
        threads = config.get("threads")
        if threads:
            torch.set_num_threads(int(threads))
        if loaded is None:
            data = self.data_spec.load()
            if data.fingerprint() != config["data_fingerprint"]:
                raise ValueError(f"data: this worker opened {self.data_spec.spec!r} (split "
                                 f"{self.data_spec.split!r}) and sees different rows than the "
                                 "driver fingerprinted; every worker must read the same data")
            model, preprocess = ModelSpec(config["model"]).load()
            if model_fingerprint(model) != config["model_fingerprint"]:
                raise ValueError(f"model: this worker loaded {config['model']!r} with other "
                                 "weights or code than the driver; every worker must load the "
                                 "same model")
        else:
            data, model, preprocess = loaded
        device = config.get("device")
        if device:
            model = model.to(device)
        self.data, self.model, self.preprocess = data, model, preprocess
        self.explainer_specs: dict[str, tuple[str, dict[str, Any]]] = {
            str(k): (str(v[0]), dict(v[1])) for k, v in config["explainers"].items()}
        self.explainers = resolve_explainers(
            {k: (m, p) for k, (m, p) in self.explainer_specs.items()}) \
            if self.explainer_specs else {}
        self.alt_models: dict[str, nn.Module] = {}
        names = self.options.get("alt_models") or []
        if names:
            from ..models import checkpoints

            stages = checkpoints(str(config["model"]))
            self.alt_models = {n: stages[n].to(device) if device else stages[n] for n in names}

    def compute(self, start: int, stop: int) -> dict[str, pd.DataFrame]:
        """The tables of rows ``start .. stop - 1``."""
        tables = self.job.compute(self, list(range(int(start), int(stop))))
        missing = set(self.job.tables) - set(tables)
        if missing:
            raise RuntimeError(f"job {self.job.name!r} produced no table {sorted(missing)}")
        return {name: tables[name].reset_index(drop=True) for name in self.job.tables}

    def encoded(self, start: int, stop: int) -> dict[str, bytes]:
        """:meth:`compute` as Parquet bytes per table (what travels back from a worker)."""
        return {name: encode_table(df) for name, df in self.compute(start, stop).items()}
