"""Dataset views on 10 000 images: profile, embed, near duplicates and outliers (CPU).

Run: ``.venv/bin/python benchmarks/bench_datasets.py`` (``--quick``: 1 000 images; ``--n``,
``--size``, ``--batch-size``). Data: the built-in ``shapes`` generator at ``n`` images of
``size`` x ``size`` pixels, a ``datasets.Dataset`` of PNG bytes, the same path Hub data take.

Prints images/s and peak memory over the whole data set, then compares ours with references
on the first ``--ratio-n`` images (default 2 000), alternating ours and each reference block by
block (``--block`` images) so that a busy machine slows all of them alike:

- ``profile_dataset`` vs decoding every image alone (``Image.open(bytes).load()`` in a loop: the
  floor of any profile) and vs the loop a user would write (``ds[i]["image"]`` + numpy stats).
- ``embed`` (``SmallResNet`` of ``shapes-cnn``'s shape, random weights: speed does not depend on
  them) vs the plain loop ``ImageSource.tensors(batch, preprocess)`` + ``model(x)`` and vs the
  forward passes alone on ready tensors (the floor).
- ``near_duplicates`` / ``outliers`` on the ``(N, D)`` embeddings vs scikit-learn's exact
  ``NearestNeighbors`` and the memory of one full ``N x N`` float32 distance matrix.

Peak memory: a second pass of each step under ``tracemalloc`` (Python and numpy allocations;
torch's own buffers are not traced; ``embed`` on the first 2 000 images, its memory is per
batch), and the process's peak RSS at the end.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from visloupe.core import data, models
from visloupe.core import profiling as vds


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def peak_mib(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def naive_profile(ds: Any) -> list[float]:
    """What a user would write: row access, then the statistics in numpy."""
    out = []
    for i in range(len(ds)):
        img = ds[i]["image"].convert("RGB")
        rgb = np.asarray(img, dtype=np.float64) / 255
        y = rgb @ np.array([0.299, 0.587, 0.114])
        lap = y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4 * y[1:-1, 1:-1]
        rg = rgb[..., 0] - rgb[..., 1]
        yb = (rgb[..., 0] + rgb[..., 1]) / 2 - rgb[..., 2]
        out.append(y.mean() + y.std() + np.hypot(rg.std(), yb.std()) + lap.var())
    return out


def decode_only(ds: Any) -> int:
    import datasets

    raw = ds.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))
    count = 0
    for batch in raw.iter(batch_size=256):
        for item in batch["image"]:
            Image.open(io.BytesIO(item["bytes"])).load()
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 000 images instead of 10 000")
    parser.add_argument("--n", type=int, default=None, help="images (default 10 000)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--ratio-n", type=int, default=2000,
                        help="images in the alternated ours-vs-reference comparison")
    parser.add_argument("--block", type=int, default=500,
                        help="images per alternation block in the comparison")
    args = parser.parse_args()
    n = args.n or (1000 if args.quick else 10_000)
    ratio_n = min(n, args.ratio_n)
    torch.manual_seed(0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}")

    t_gen, ds = timed(lambda: data.load_builtin("shapes", split="train", n=n, size=args.size))
    print(f"data: shapes, {n} images of {args.size}x{args.size} PNG ({t_gen:.1f} s to generate)")
    model = models.build_model("SmallResNet", {"in_channels": 3, "num_classes": 5,
                                               "widths": [16, 32, 64]}).eval()
    pre = models.ImagePreprocess(args.size, "RGB")
    bs = args.batch_size

    # ------------------------------------------------ whole data set: absolute speed, memory
    t_prof, df = timed(lambda: vds.profile_dataset(ds))
    assert len(df) == n and df["error"].isna().all()
    m_prof = peak_mib(lambda: vds.profile_dataset(ds))
    with tempfile.TemporaryDirectory() as tmp:
        t_emb, emb = timed(lambda: vds.embed(model, ds, preprocess=pre, batch_size=bs,
                                             cache=tmp))
        t_hit, emb2 = timed(lambda: vds.embed(model, ds, preprocess=pre, batch_size=bs,
                                              cache=tmp))
        assert np.array_equal(emb, emb2)
    m_n = min(n, 2000)  # per-batch memory: a 2 000-image pass shows the same peak, faster
    m_emb = peak_mib(lambda: vds.embed(model, ds, preprocess=pre, batch_size=bs, cache=False,
                                       indices=range(m_n)))

    # ------------------------------------------------ alternated comparison on blocks
    totals = dict.fromkeys(("prof", "floor", "naive", "emb", "plain", "fwd"), 0.0)
    for start in range(0, ratio_n, args.block):
        part = ds.select(range(start, min(ratio_n, start + args.block)))
        k = len(part)
        totals["prof"] += timed(lambda part=part: vds.profile_dataset(part))[0]
        totals["floor"] += timed(lambda part=part: decode_only(part))[0]
        totals["naive"] += timed(lambda part=part: naive_profile(part))[0]
        totals["emb"] += timed(lambda part=part: vds.embed(
            model, part, preprocess=pre, batch_size=bs, cache=False))[0]
        src = data.as_image_source(part)

        def plain_loop(src=src, k=k) -> None:
            with torch.no_grad():
                for s in range(0, k, bs):
                    model(src.tensors(range(s, min(k, s + bs)), pre))

        totals["plain"] += timed(plain_loop)[0]
        ready = [src.tensors(range(s, min(k, s + bs)), pre) for s in range(0, k, bs)]

        def forward_only(ready=ready) -> None:
            with torch.no_grad():
                for x in ready:
                    model(x)

        totals["fwd"] += timed(forward_only)[0]

    def rate(key: str) -> str:
        return f"{ratio_n / totals[key]:8.0f} img/s"

    print(f"\nprofile_dataset, all {n} images: {t_prof:.2f} s = {n / t_prof:.0f} img/s, "
          f"peak traced {m_prof:.1f} MiB")
    print(f"  alternated on {ratio_n} images in blocks of {args.block}:")
    print(f"  ours                 {rate('prof')}")
    print(f"  decode only (floor)  {rate('floor')}   ours / floor = "
          f"{totals['prof'] / totals['floor']:.2f}")
    print(f"  naive row loop       {rate('naive')}   ours / naive = "
          f"{totals['prof'] / totals['naive']:.2f}")
    print(f"\nembed (SmallResNet 16-32-64, penultimate layer, D = {emb.shape[1]}, batch {bs}), "
          f"all {n} images: {t_emb:.2f} s = {n / t_emb:.0f} img/s, cache hit {t_hit:.3f} s, "
          f"peak traced {m_emb:.1f} MiB (first {m_n})")
    print(f"  alternated on {ratio_n} images in blocks of {args.block}:")
    print(f"  ours                 {rate('emb')}")
    print(f"  plain loop           {rate('plain')}   ours / plain = "
          f"{totals['emb'] / totals['plain']:.2f}")
    print(f"  forward only (floor) {rate('fwd')}   ours / floor = "
          f"{totals['emb'] / totals['fwd']:.2f}")

    # ------------------------------------------------ neighbours
    from sklearn.neighbors import NearestNeighbors

    t_dup = t_out = t_sk = float("inf")
    for _ in range(2):  # alternated, best of two
        t_dup = min(t_dup, timed(lambda: vds.near_duplicates(emb, threshold=1e-4))[0])
        t_out = min(t_out, timed(lambda: vds.outliers(emb, k=10))[0])
        t_sk = min(t_sk, timed(
            lambda: NearestNeighbors(n_neighbors=11).fit(emb).kneighbors(emb))[0])
    pairs = vds.near_duplicates(emb, threshold=1e-4)
    m_dup = peak_mib(lambda: vds.near_duplicates(emb, threshold=1e-4))
    m_out = peak_mib(lambda: vds.outliers(emb, k=10))
    t_pca, _ = timed(lambda: vds.project(emb, "pca"))
    full = n * n * 4 / 2**20
    print(f"\nneighbours on ({n}, {emb.shape[1]}) embeddings (one full N x N float32 matrix: "
          f"{full:.0f} MiB)")
    print(f"  near_duplicates      {t_dup:7.2f} s  peak traced {m_dup:6.1f} MiB "
          f"({len(pairs)} pairs <= 1e-4)")
    print(f"  outliers (k = 10)    {t_out:7.2f} s  peak traced {m_out:6.1f} MiB  "
          f"sklearn NearestNeighbors {t_sk:.2f} s (ours / sklearn = {t_out / t_sk:.2f})")
    print(f"  project pca          {t_pca:7.2f} s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nprocess peak RSS {rss:.0f} MiB, load average at the end "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
