"""The ``visloupe`` command line: ``visloupe run JOB ...`` (the options of
:func:`visloupe.core.jobs.run`), ``visloupe show RESULTS`` and ``visloupe jobs``.

Example::

    visloupe run cose --data builtin:shapes --split test --model shapes-cnn \\
        --explainer grad_cam --explainer integrated_gradients --limit 64 --out results/ \\
        --engine ray --workers 2
    visloupe show results/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def _pair(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (numbers, true/false, lists, dicts)
    and as a string otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except ValueError:
        return key.replace("-", "_"), value


def _parser() -> argparse.ArgumentParser:
    from .tasks import JOBS

    parser = argparse.ArgumentParser(
        prog="visloupe", description="Dataset-scale explanations and their evaluation.")
    sub = parser.add_subparsers(dest="command", required=True)
    jobs_help = "; ".join(f"{n}: {j.description}" for n, j in JOBS.items())
    r = sub.add_parser("run", help="run a job over a data set (resumes an unfinished --out)",
                       description=f"Jobs -- {jobs_help}.")
    r.add_argument("job", choices=list(JOBS))
    r.add_argument("--data", required=True,
                   help="builtin:<name>, a Hugging Face dataset name or a local image folder")
    r.add_argument("--split", default="test", help="split to read (default: test)")
    r.add_argument("--model", required=True,
                   help="a built-in model name or an importable module:factory")
    r.add_argument("--explainer", action="append", default=[], dest="explainers",
                   metavar="METHOD", help="a registry method (repeat for several)")
    r.add_argument("--limit", type=int, default=None, help="first N rows only")
    r.add_argument("--out", required=True, help="results folder")
    r.add_argument("--engine", choices=["local", "ray"], default="local")
    r.add_argument("--workers", type=int, default=1, help="Ray actors (model replicas)")
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--address", default=None,
                   help="Ray cluster to attach to: auto or ray://host:10001")
    r.add_argument("--shard-size", type=int, default=32, help="rows per shard")
    r.add_argument("--image-column", default=None)
    r.add_argument("--label-column", default=None)
    r.add_argument("--data-kwarg", action="append", default=[], type=_pair, metavar="KEY=VALUE",
                   help="keyword for datasets.load_dataset / load_builtin (repeat)")
    r.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    r.add_argument("-o", "--option", action="append", default=[], type=_pair,
                   metavar="KEY=VALUE", help="a job option, VALUE as JSON (repeat)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    s = sub.add_parser("show", help="print a results folder's status and summary")
    s.add_argument("results")
    s.add_argument("--table", default=None, help="also print the first rows of this table")
    s.add_argument("--rows", type=int, default=10)
    sub.add_parser("jobs", help="list the jobs and their options")
    return parser


def _progress(quiet: bool) -> Any:
    start = time.perf_counter()

    def report(done: int, total: int) -> None:
        if quiet:
            return
        rate = done / max(time.perf_counter() - start, 1e-9)
        print(f"visloupe: {done}/{total} rows ({rate:.1f} rows/s)", file=sys.stderr,
              flush=True)

    return report


def _run(args: argparse.Namespace) -> int:
    from .runner import run

    results = run(
        args.job, data=args.data, model=args.model, explainers=args.explainers,
        split=args.split or None, limit=args.limit, out=args.out, engine=args.engine,
        workers=args.workers, batch_size=args.batch_size, seed=args.seed,
        address=args.address, progress=_progress(args.quiet), shard_size=args.shard_size,
        image_column=args.image_column, label_column=args.label_column,
        data_kwargs=dict(args.data_kwarg), threads=args.threads, **dict(args.option))
    _show(results, None, 0)
    return 0


def _show(results: Any, table: str | None, rows: int) -> None:
    import pandas as pd

    m = results.manifest
    shards = m["shards"]
    done = len(shards) - len([s for s in shards if s["index"] in results.missing])
    print(f"job:      {m['job']} (visloupe {m['visloupe_version']})")
    print(f"data:     {m['data']['spec']} split={m['data']['split']} rows={m['data']['rows']}")
    print(f"model:    {m['model']['spec']} ({m['model']['fingerprint'][:12]})")
    explainers = m["options"].get("explainers") or {}
    if explainers:
        print(f"explainers: {', '.join(explainers)}")
    print(f"shards:   {done}/{len(shards)} finished" + ("" if results.complete
                                                       else " (run again to finish)"))
    for run in m.get("runs", []):
        print(f"run:      engine={run['engine']} workers={run['workers']} rows={run['rows']} "
              f"{run['seconds']} s ({run['rows_per_second']} rows/s)")
    print("tables:   " + ", ".join(f"{k} ({len(v)} rows)" for k, v in results.tables.items()))
    with pd.option_context("display.width", 160, "display.max_columns", 40,
                           "display.max_colwidth", 40):
        if results.summary is not None:
            print("\nsummary:")
            print(results.summary.to_string(index=False))
        if table is not None:
            df = results[table]
            print(f"\n{table} (first {rows} rows):")
            print(df.drop(columns=[c for c in ("map",) if c in df]).head(rows)
                  .to_string(index=False))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``visloupe`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "jobs":
            from .tasks import JOBS

            for name, job in JOBS.items():
                print(f"{name}: {job.description}")
                for key, value in job.defaults.items():
                    print(f"    -o {key}={json.dumps(value)}")
            return 0
        if args.command == "show":
            from .store import load_results

            _show(load_results(args.results, allow_partial=True), args.table, args.rows)
            return 0
        return _run(args)
    except KeyboardInterrupt:
        print("visloupe: interrupted; the same command continues from the finished shards",
              file=sys.stderr)
        return 130
    except (ValueError, TypeError, ImportError, KeyError) as err:
        print(f"visloupe: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"visloupe: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
