"""Where shards run: in this process (``"local"``) or on Ray Data (``"ray"``).

On Ray the shard list is a ``ray.data`` dataset; ``map_batches`` sends each shard to a pool of
``workers`` stateful actors, each holding one model replica loaded in its ``__init__``
(:class:`~visloupe.core.jobs.worker.ShardWorker`), with ``num_gpus=1`` per actor where the cluster
has GPUs. Actors ask for a fraction of a CPU (``cpus / (workers + 1)``, at most 1) so that on a
small machine the pool never takes every CPU slot and starves Ray Data's own tasks. Results come
back as Parquet bytes and the driver writes them, so the cluster needs no shared file system.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from .specs import environment_path
from .worker import ShardWorker

__all__ = ["ENGINES", "init_ray", "run_local", "run_ray"]

logger = logging.getLogger(__name__)

ENGINES = ("local", "ray")
OnShard = Callable[[Mapping[str, Any], Mapping[str, bytes]], None]


def run_local(worker: ShardWorker, shards: Iterable[Mapping[str, Any]],
              on_shard: OnShard) -> None:
    """Compute ``shards`` one after the other in this process."""
    for shard in shards:
        on_shard(shard, worker.encoded(shard["start"], shard["stop"]))


# Ray's notices about choices this module makes on purpose, kept out of the user's notebook:
# that a new local cluster uses Ray's default token authentication, and that Ray Data's progress
# bars are off (the job's progress() reports instead). Only these two loggers are quieted, and
# only while the cluster starts or the job runs; Ray's other warnings and errors still show.
_TOKEN_NOTICE = "ray._private.authentication.authentication_token_setup"
_PROGRESS_NOTICE = "ray.data._internal.progress"


@contextlib.contextmanager
def _quiet(*names: str, level: int = logging.ERROR) -> Iterator[None]:
    """Raise the level of the loggers ``names`` to ``level`` for the duration of the block."""
    loggers = [logging.getLogger(n) for n in names]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, level))
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, saved, strict=True):
            lg.setLevel(lvl)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ImportError("engine: 'ray' needs Ray Data; install it with "
                          "pip install 'visloupe[scale]' (or 'ray[data]')") from err
    return ray


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to Ray unless already connected; True if this call connected (the caller then
    shuts it down). No ``address``: a local cluster in this process with ``num_cpus`` (default
    the machine's) whose workers import what this process imports (its ``sys.path``) and see
    its environment. ``address``: ``"auto"``, ``"ray://host:10001"`` or a GCS address."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    if address is None:
        # Workers inherit the environment the local cluster starts with (a runtime_env would
        # make Ray start a separate, slower worker pool): lend them this process's import path.
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = environment_path()
        try:
            with _quiet(_TOKEN_NOTICE, level=logging.ERROR):
                ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                         log_to_driver=False, logging_level=logging.WARNING)
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
    else:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    return True


class _RayShardActor:
    """The stateful ``map_batches`` class: one :class:`ShardWorker` per actor."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        try:
            self.worker = ShardWorker(config)
        except Exception as err:
            raise RuntimeError(f"a Ray worker could not load the job ({type(err).__name__}: "
                               f"{err})") from err

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list[Any]] = {"shard": []}
        for table in self.worker.job.tables:
            out[f"table_{table}"] = []
        for k, start, stop in zip(batch["shard"], batch["start"], batch["stop"], strict=True):
            payload = self.worker.encoded(int(start), int(stop))
            out["shard"].append(int(k))
            for table, data in payload.items():
                out[f"table_{table}"].append(data)
        return {k: np.asarray(v, dtype=np.int64 if k == "shard" else object)
                for k, v in out.items()}


def _resources(ray: Any, workers: int) -> tuple[float, float]:
    """CPUs and GPUs per actor on the connected cluster."""
    total = ray.cluster_resources()
    cpus = float(total.get("CPU", 1.0))
    gpus = 1.0 if float(total.get("GPU", 0.0)) >= 1 else 0.0
    return min(1.0, cpus / (workers + 1)), gpus


def _threads(ray: Any, workers: int) -> int:
    """Torch threads per actor: the CPUs per actor when one actor's share is left to Ray's
    own processes and the driver (``cpus / (workers + 1)``), at most one node's CPUs. On 2
    cores one actor with 2 threads ran COSE ~45 % slower than with 1: its threads wait on
    each other whenever the raylet or the driver's executor runs."""
    total = float(ray.cluster_resources().get("CPU", 1.0))
    nodes = [float(n.get("Resources", {}).get("CPU", 0.0)) for n in ray.nodes()
             if n.get("Alive")]
    return max(1, int(min(total // (workers + 1), max(nodes, default=total))))


def run_ray(config: Mapping[str, Any], shards: list[Mapping[str, Any]], on_shard: OnShard, *,
            workers: int, address: str | None = None) -> None:
    """Compute ``shards`` on a Ray actor pool of ``workers`` (see the module docstring)."""
    if not shards:
        return
    ray = _import_ray()
    started = init_ray(address)
    context = ray.data.DataContext.get_current()
    bars = context.enable_progress_bars
    try:
        with _quiet("ray.data", level=logging.WARNING), _quiet(_PROGRESS_NOTICE):
            context.enable_progress_bars = False  # the caller's progress() reports instead
            _map_shards(ray, config, shards, on_shard, workers, address)
    finally:
        context.enable_progress_bars = bars
        if started:
            ray.shutdown()


def _map_shards(ray: Any, config: Mapping[str, Any], shards: list[Mapping[str, Any]],
                on_shard: OnShard, workers: int, address: str | None) -> None:
    """The actor pool's ``map_batches`` over the shard list, each result handed to
    ``on_shard`` as it comes back."""
    import torch

    cpus, gpus = _resources(ray, workers)
    if not gpus and torch.cuda.is_available() and address is None:
        gpus = 1.0
    config = dict(config)
    if gpus:
        config["device"] = "cuda"
    if not config.get("threads"):
        config["threads"] = _threads(ray, workers)
    by_index = {int(s["index"]): s for s in shards}
    items = [{"shard": int(s["index"]), "start": int(s["start"]), "stop": int(s["stop"])}
             for s in shards]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    results = ds.map_batches(
        _RayShardActor, batch_size=1, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(workers, len(items))),
        fn_constructor_kwargs={"config": config}, num_cpus=cpus,
        **({"num_gpus": gpus} if gpus else {}))
    logger.info("ray: %d shards on %d actors (%.2f CPU, %.0f GPU each)", len(items),
                workers, cpus, gpus)
    for row in results.iter_rows():
        shard = by_index[int(row["shard"])]
        on_shard(shard, {t: row[f"table_{t}"] for t in shard["files"]})
