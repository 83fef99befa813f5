"""Retrain the built-in models from their recipes and write the weights the package ships
(``core/models/weights/<name>/``): every checkpoint of each run (random, per epoch, final).

    .venv/bin/python scripts/train_builtin_models.py [--model shapes-cnn ...] [--out DIR]

Training is seeded (``models.zoo``'s recipes); the test ``tests/core/models/test_shipped.py``
retrains one model and checks its accuracy against the shipped weights'.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from visloupe.core.models import read_metadata, train_builtin
from visloupe.core.models.zoo import SHIPPED, available_models

BUILTIN = [n for n in available_models() if not n.startswith("efficientnet")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", choices=BUILTIN,
                        help="a model to retrain (repeatable; default: all built-ins)")
    parser.add_argument("--out", type=Path, default=SHIPPED, help="where the folders go")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for name in args.model or BUILTIN:
        start = time.perf_counter()

        def report(epoch: int, total: int, metrics: dict, name: str = name) -> None:
            print(f"  {name}: epoch {epoch}/{total} {metrics}", flush=True)

        folder = train_builtin(name, args.out, progress=report)
        accuracy = read_metadata(folder / "final.safetensors")["test_accuracy"]
        size = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
        print(f"{name}: {folder} ({size:.1f} MB) in {time.perf_counter() - start:.0f} s, "
              f"test accuracy {accuracy:.4f}", flush=True)


if __name__ == "__main__":
    main()
