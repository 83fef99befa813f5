"""Throughput of a dataset-scale job: in-process vs Ray Data with 1 and 2 workers, at the same
total torch threads (local: all cores; Ray: cores / workers per actor) and at Ray's default.

    .venv/bin/python benchmarks/bench_jobs.py                      # COSE, 32 shapes images
    .venv/bin/python benchmarks/bench_jobs.py --job attribution --explainer integrated_gradients

Each engine writes its own results folder from scratch. Ray's cluster start (``ray.init``) is
paid once and printed apart; per engine the script prints the total wall time (including the
actors' start: process, imports, data and model load) and the steady rate from the first shard
that comes back to the last, plus the ratio to the in-process rate (goal: Ray's overhead
<= 15 % at the same threads). The numbers of every engine are checked equal.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _measure(job: str, out: Path, **kwargs) -> dict[str, float]:
    from visloupe.core import jobs

    stamps: list[tuple[float, int]] = []
    start = time.perf_counter()
    res = jobs.run(job, out=out, progress=lambda d, n: stamps.append((time.perf_counter(), d)),
                   **kwargs)
    total = time.perf_counter() - start
    arrivals = [(t, d) for t, d in stamps if d > 0]
    (t0, d0), (t1, d1) = arrivals[0], arrivals[-1]
    steady = (d1 - d0) / (t1 - t0) if t1 > t0 else float("nan")
    return {"total_s": total, "rows": d1, "overall": d1 / total, "steady": steady,
            "first_s": t0 - start, "results": res}


def _default_threads(cores: int, workers: int) -> int:
    return max(1, cores // (workers + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", default="cose")
    parser.add_argument("--explainer", action="append", default=None)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    from visloupe.core import jobs

    cores = os.cpu_count() or 1
    print(f"machine: {platform.platform()}, {cores} cores, torch {torch.__version__}, "
          f"load average {os.getloadavg()}")
    explainers = args.explainer or (["grad_cam"] if args.job != "embed" else [])
    common = dict(data="builtin:shapes", model="shapes-cnn", explainers=explainers,
                  limit=args.images, shard_size=args.shard_size, batch_size=args.batch_size)
    print(f"job {args.job} {explainers} on {args.images} shapes images, shards of "
          f"{args.shard_size}, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = {}
        torch.set_num_threads(cores)
        # warm-up: a process's first calls pay one-time costs (lazy imports, allocator, data
        # build) that Ray's actors pay before their first shard, outside the steady rate too
        _measure(args.job, Path(tmp) / "warm", engine="local", **{**common, "limit": 4})
        rows["local"] = _measure(args.job, Path(tmp) / "local", engine="local", **common)
        start = time.perf_counter()
        jobs.init_ray(num_cpus=cores)
        print(f"ray.init: {time.perf_counter() - start:.1f} s (once)")
        # the same total threads as local, then Ray's default (a share left to Ray itself)
        for name, workers, threads in (("ray x1", 1, cores), ("ray x1 default", 1, None),
                                       ("ray x2", 2, max(1, cores // 2))):
            rows[name] = _measure(args.job, Path(tmp) / name.replace(" ", "_"), engine="ray",
                                  workers=workers, threads=threads, **common)
            rows[name]["label"] = f"{workers}x{threads or _default_threads(cores, workers)}"
        import ray

        ray.shutdown()
        rows["local"]["label"] = f"1x{cores}"
        base = rows["local"]["steady"]
        print(f"{'engine':<15} {'threads':>7} {'total s':>8} {'1st shard s':>11} "
              f"{'img/s all':>9} {'img/s steady':>12} {'steady / local':>14}")
        for name, r in rows.items():
            print(f"{name:<15} {r['label']:>7} {r['total_s']:8.1f} {r['first_s']:11.1f} "
                  f"{r['overall']:9.2f} {r['steady']:12.2f} {r['steady'] / base:14.2f}")
        tables = [r["results"].tables for r in rows.values()]
        for name in tables[0]:
            ref = tables[0][name].select_dtypes("number").to_numpy(dtype=float)
            for other in tables[1:]:
                got = other[name].select_dtypes("number").to_numpy(dtype=float)
                same = np.allclose(ref, got, atol=1e-6, equal_nan=True)
                print(f"table {name}: {'equal' if same else 'DIFFERENT'} across engines")
        same = rows["ray x1"]["steady"] / base
        print(f"Ray x1 at the same threads: {same:.2f}x the in-process rate (overhead "
              f"{max(0.0, 1 - same):.0%}, goal <= 15 %); x2 / x1 default: "
              f"{rows['ray x2']['steady'] / rows['ray x1 default']['steady']:.2f}x")


if __name__ == "__main__":
    main()
