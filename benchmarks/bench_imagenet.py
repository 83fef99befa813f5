"""The real ImageNet model in the explorer: one Grad-CAM view, one IG view (50 steps), the
SaliencyExplorer's first paint and a cheap re-render, on EfficientNet-Lite0 at 224x224.

Each figure sits beside its lower bound measured in the same run: a view needs the model's
forward + backward passes (1 for Grad-CAM, 50 for IG with 50 steps, run here as one plain
autograd call on the same batch); a re-render needs no model call at all.

    .venv/bin/python benchmarks/bench_imagenet.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch


def best(fn, repeats: int) -> float:
    """The fastest of ``repeats`` runs, in seconds (the least disturbed by other work)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def passes(model, x: torch.Tensor, n: int, target: int) -> None:
    """``n`` forward + backward passes on one batch: what any gradient view must pay."""
    xs = x.expand(n, -1, -1, -1).clone().requires_grad_(True)
    model(xs)[:, target].sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from visloupe.core import data, models
    from visloupe.core.attribution import explain
    from visloupe.widgets import SaliencyExplorer

    model, pre = models.pretrained("efficientnet-lite0")
    photos = data.load_builtin("photos", split="test").select(range(3))
    x = pre(photos[0]["image"])[None]
    target = int(models.predict(model, x).argmax())
    r = args.repeats

    gc_view = best(lambda: explain(model, x, target, "grad_cam"), r)
    gc_bound = best(lambda: passes(model, x, 1, target), r)
    ig_view = best(lambda: explain(model, x, target, "integrated_gradients", n_steps=50), r)
    ig_bound = best(lambda: passes(model, x, 50, target), r)

    def first_paint() -> None:
        ex = SaliencyExplorer(model, photos, ["grad_cam"], preprocess=pre, top_k=5, cell=224)
        ex.to_png()
        ex.close()

    paint = best(first_paint, r)
    explorer = SaliencyExplorer(model, photos, ["grad_cam"], preprocess=pre, top_k=5, cell=224)
    values = iter([0.3, 0.7] * (4 * r))
    rerender = best(lambda: setattr(explorer.alpha, "value", next(values)), max(r, 5))
    cached = explorer.cache_info()
    explorer.close()

    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; EfficientNet-Lite0 at 224x224, best of {r}")
    print(f"Grad-CAM view      {gc_view * 1e3:8.1f} ms   1 fwd+bwd pass {gc_bound * 1e3:8.1f} ms"
          f"   ratio {gc_view / gc_bound:.2f}")
    print(f"IG view (50 steps) {ig_view * 1e3:8.1f} ms  50 fwd+bwd passes {ig_bound * 1e3:6.1f} ms"
          f"   ratio {ig_view / ig_bound:.2f}")
    print(f"explorer first paint (build, predict, Grad-CAM, PNG) {paint * 1e3:8.1f} ms"
          f"   (goal < 1000 ms)")
    print(f"cheap re-render (alpha slider, no model call) {rerender * 1e3:8.1f} ms"
          f"   (goal < 50 ms; caches {cached})")


if __name__ == "__main__":
    main()
