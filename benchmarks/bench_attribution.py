"""Attribution speed: ``explain()`` against Captum, and IG / Split IG against their lower bound.

Run from the repository root (one command)::

    .venv/bin/python benchmarks/bench_attribution.py            # ~5-6 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_attribution.py --quick    # ~2-3 minutes

Part A -- wrapper overhead (goal: ratio <= 1.05). The same inputs and targets go through
``visloupe.core.attribution.explain`` and through Captum directly (``IntegratedGradients``,
``Saliency``, ``LayerGradCam`` + bilinear upsampling), each reduced to the same ``(N, H, W)``
maps; the outputs are checked to agree. Single calls alternate (ours, Captum, Captum, ours, ...)
for a fixed time budget per case, and the ratio of the medians is reported with the ratio of the
lower quartiles and the median difference in microseconds (explain's own cost per call). Two
sizes: the built-in ``shapes-cnn`` on 16 images of 32x32 (10-20 ms calls, the worst case for a
fixed per-call cost) and a random ``SmallResNet`` on 2 images of 224x224.

Part B -- gradient-method cost against its lower bound (goal: ratio <= 1.3). IG with ``n`` steps
and Split IG with ``n`` steps evaluate ``N * n`` path points; the lower bound is a plain loop of
forward+backward passes over the same number of rows in the same chunk size (the target logit
summed, the gradient taken with respect to the input), with nothing else. Timed interleaved with
the methods, at 32x32 on the built-in ``shapes-cnn`` and at 224x224 on a larger randomly
initialised ``SmallResNet`` (1000 classes).

Everything is printed as a table with the machine (platform, cores, threads, load, torch and
captum versions). Timings are wall clock; on a shared machine the ratios (measured side by side)
are the numbers to read, the absolute times less so.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import captum
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, LayerGradCam, Saliency
from torch import Tensor, nn
from visloupe.core.attribution import explain
from visloupe.core.attribution.split_ig import split_integrated_gradients
from visloupe.core.models import build_model

OVERHEAD_GOAL = 1.05
LOWER_BOUND_GOAL = 1.3


# ------------------------------------------------------------------------------------ timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall-clock seconds of one call, the device synchronised on both sides."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def alternating(fns: dict[str, Callable[[], Any]], device: torch.device, *,
                rounds: int | None = None, budget_s: float = 0.0, min_rounds: int = 15,
                max_rounds: int = 400) -> dict[str, list[float]]:
    """Per-call wall-clock seconds of each function, the functions called one after another in
    every round (the order reversed every other round) after one warm-up call each: ``rounds``
    rounds, or as many as fill ``budget_s`` (calibrated on one more call each). Alternating
    single calls keeps slow drifts of a shared machine out of the comparison better than blocks
    of calls do."""
    names = list(fns)
    for name in names:
        fns[name]()
    if rounds is None:
        per_round = sum(timed(fns[name], device) for name in names)
        rounds = max(min_rounds, min(max_rounds, round(budget_s / max(per_round, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(timed(fns[name], device))
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(100 * q) - 1]


def paired_ratio(num: list[float], den: list[float]) -> float:
    """Median of the per-repeat ratios (robust to a repeat where the machine was busy)."""
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


# ------------------------------------------------------------------------------------ models


def shapes_cnn(random_weights: bool) -> nn.Module:
    """The built-in ``shapes-cnn`` (its weights ship in the package), or the same architecture
    with random weights (timings do not depend on the weights)."""
    if not random_weights:
        from visloupe.core.models import pretrained

        model, _ = pretrained("shapes-cnn")
        return model
    return build_model("SmallResNet", {"in_channels": 3, "num_classes": 5,
                                       "widths": [16, 32, 64]}, seed=0)


def large_cnn() -> nn.Module:
    """A larger random CNN for 224x224 inputs: SmallResNet with 4 downsampling stages."""
    return build_model("SmallResNet", {"in_channels": 3, "num_classes": 1000,
                                       "widths": [32, 64, 128, 256, 512]}, seed=0)


# ------------------------------------------------------------------------------------ part A


def overhead_rows(config: str, model: nn.Module, x: Tensor, target: Tensor, device: torch.device,
                  ig_steps: int | None, budget_s: float) -> list[dict[str, Any]]:
    """explain() vs Captum on identical inputs for IG, saliency and Grad-CAM."""
    baseline = torch.zeros_like(x)
    layer = model.features[-1]
    hw = x.shape[-2:]

    def captum_ig() -> Tensor:
        attr = IntegratedGradients(model).attribute(x, baselines=baseline, target=target,
                                                    n_steps=ig_steps)
        return attr.sum(dim=1)

    def captum_saliency() -> Tensor:
        return Saliency(model).attribute(x.detach().clone().requires_grad_(True),
                                         target=target, abs=False).sum(dim=1)

    def captum_gradcam() -> Tensor:  # what LayerAttribution.interpolate does, bilinear
        cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
        return F.interpolate(cam, size=hw, mode="bilinear", align_corners=False)[:, 0]

    cases = [
        ("saliency", captum_saliency, lambda: explain(model, x, target, "saliency")),
        ("grad_cam (layer=None: auto)", captum_gradcam,
         lambda: explain(model, x, target, "grad_cam")),
        ("grad_cam (layer given)", captum_gradcam,
         lambda: explain(model, x, target, "grad_cam", layer=layer)),
    ]
    if ig_steps:
        cases.insert(0, (f"integrated_gradients (n_steps={ig_steps})", captum_ig,
                         lambda: explain(model, x, target, "integrated_gradients",
                                         n_steps=ig_steps)))
    rows = []
    for name, ref, ours in cases:
        diff = float((ours() - ref()).detach().abs().max())
        times = alternating({"ours": ours, "captum": ref}, device, budget_s=budget_s)
        t_ours, t_ref = median(times["ours"]), median(times["captum"])
        rows.append({
            "config": config, "method": name, "calls": len(times["ours"]),
            "ours_ms": 1e3 * t_ours, "captum_ms": 1e3 * t_ref, "ratio": t_ours / t_ref,
            "q25": quantile(times["ours"], 0.25) / quantile(times["captum"], 0.25),
            "extra_us": 1e6 * (t_ours - t_ref), "max_abs_diff": diff,
        })
    return rows


# ------------------------------------------------------------------------------------ part B


def lower_bound_fn(model: nn.Module, x: Tensor, target: Tensor, n_steps: int,
                   chunk: int) -> Callable[[], None]:
    """n forward+backward passes' worth of rows: N * n_steps rows in chunks of ``chunk``, each
    pass the summed target logit differentiated with respect to its input, nothing else."""
    rows = x.shape[0] * n_steps
    pool = x.repeat_interleave(n_steps, dim=0)
    row_targets = target.repeat_interleave(n_steps)

    def run() -> None:
        for start in range(0, rows, chunk):
            z = pool[start:start + chunk].detach().requires_grad_(True)
            out = model(z)
            score = out.gather(1, row_targets[start:start + chunk, None]).sum()
            torch.autograd.grad(score, z)

    return run


def cost_rows(label: str, model: nn.Module, x: Tensor, target: Tensor, n_steps: int,
              chunk: int, repeats: int, device: torch.device) -> list[dict[str, Any]]:
    """IG (ours and Captum) and Split IG against the lower bound, timed interleaved."""
    baseline = torch.zeros_like(x)
    # Captum runs chunk // N steps of all N images per pass; keep chunk a multiple of N
    per_pass = chunk // x.shape[0] * x.shape[0] if chunk >= x.shape[0] else chunk

    def captum_ig() -> None:
        IntegratedGradients(model).attribute(x, baselines=baseline, target=target,
                                             n_steps=n_steps, method="riemann_right",
                                             internal_batch_size=chunk)

    def ours_ig() -> None:
        explain(model, x, target, "integrated_gradients", n_steps=n_steps,
                quadrature="riemann_right", internal_batch_size=chunk)

    def split_ig_stored() -> None:
        split_integrated_gradients(model, x, target, n_steps=n_steps, batch_size=chunk)

    def split_ig_plain() -> None:
        split_integrated_gradients(model, x, target, n_steps=n_steps, batch_size=chunk,
                                   store_path=False)

    fns = {
        "lower bound": lower_bound_fn(model, x, target, n_steps, per_pass),
        "IG explain()": ours_ig,
        "IG Captum": captum_ig,
        "Split IG (store_path)": split_ig_stored,
        "Split IG (store_path=False)": split_ig_plain,
    }
    times = alternating(fns, device, rounds=repeats)
    bound = times["lower bound"]
    rows = []
    for name, values in times.items():
        rows.append({
            "config": label, "method": name, "ms": 1e3 * median(values),
            "ratio": median(values) / median(bound), "paired": paired_ratio(values, bound),
        })
    return rows


# ------------------------------------------------------------------------------------ output


def machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    parts = [
        f"platform: {platform.platform()} ({platform.machine()}), python {sys.version.split()[0]}",
        f"cpu: {platform.processor() or 'unknown'}; {os.cpu_count()} logical cores, "
        f"torch threads {torch.get_num_threads()}; load average {load[0]:.1f} / {load[1]:.1f} "
        "(1 / 5 min) at start",
        f"torch {torch.__version__}, captum {captum.__version__}",
    ]
    if torch.cuda.is_available():
        parts.append(f"cuda device: {torch.cuda.get_device_name(0)}")
    return "\n".join(parts)


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """Plain-text table; ``columns`` are (key, header, format)."""
    cells = [[format(row[k], fmt) for k, _, fmt in columns] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h, _) in enumerate(columns)]
    line = "  ".join(h.ljust(w) for (_, h, _), w in zip(columns, widths, strict=True))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per case")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--random-weights", action="store_true",
                        help="shapes-cnn architecture with random weights (skips training)")
    parser.add_argument("--part", choices=("A", "B", "both"), default="both",
                        help="run only part A (overhead) or part B (lower bound)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (5 if args.quick else 11)
    torch.manual_seed(0)  # only the benchmark's own random inputs; core code takes seeds
    gen = torch.Generator().manual_seed(0)

    print("visloupe attribution benchmark")
    print(machine())
    print(f"device: {device}; part B: {repeats} alternating rounds per case, medians\n")

    small = shapes_cnn(args.random_weights).to(device).eval()
    x_small = torch.randn(16, 3, 32, 32, generator=gen).to(device)
    with torch.no_grad():
        t_small = small(x_small).argmax(dim=1)

    if args.part != "B":
        big_a = large_cnn().to(device).eval()
        x_a = torch.randn(2, 3, 224, 224, generator=gen).to(device)
        with torch.no_grad():
            t_a = big_a(x_a).argmax(dim=1)
        budget = 3.0 if args.quick else 12.0
        print(f"A. explain() overhead vs Captum directly (goal: ratio <= {OVERHEAD_GOAL}); single "
              "calls alternating, medians")
        rows_a = overhead_rows(f"shapes-cnn, {x_small.shape[0]} x 3x32x32", small, x_small,
                               t_small, device, 32 if args.quick else 50, budget)
        rows_a += overhead_rows(f"random CNN, {x_a.shape[0]} x 3x224x224", big_a, x_a, t_a,
                                device, None, budget)
        print(table(rows_a, [("config", "config", "s"), ("method", "method", "s"),
                             ("calls", "calls", "d"), ("ours_ms", "explain ms", ".2f"),
                             ("captum_ms", "captum ms", ".2f"), ("ratio", "ratio", ".3f"),
                             ("q25", "ratio of p25", ".3f"), ("extra_us", "extra us", ".0f"),
                             ("max_abs_diff", "max |diff|", ".1e")]))
        worst = max(r["ratio"] for r in rows_a)
        verdict = "within" if worst <= OVERHEAD_GOAL else "ABOVE"
        print(f"worst ratio {worst:.3f}: {verdict} the goal; 'extra us' is explain's own cost "
              "per call (median difference; negative where it is faster)\n")
    if args.part == "A":
        return 0

    n_small = 32 if args.quick else 64
    big = large_cnn().to(device).eval()
    side = 224
    x_big = torch.randn(1, 3, side, side, generator=gen).to(device)
    with torch.no_grad():
        t_big = big(x_big).argmax(dim=1)
    n_big = 16 if args.quick else 32
    configs = [
        (f"shapes-cnn 32x32, 8 images, n={n_small}, chunk 64", small, x_small[:8], t_small[:8],
         n_small, 64),
        (f"random CNN 224x224, 1 image, n={n_big}, chunk 16", big, x_big, t_big, n_big, 16),
    ]
    print(f"B. IG / Split IG cost vs the lower bound of n forward+backward passes "
          f"(goal: ratio <= {LOWER_BOUND_GOAL})")
    rows_b: list[dict[str, Any]] = []
    for label, model, x, t, n, chunk in configs:
        rows_b += cost_rows(label, model, x, t, n, chunk, max(3, repeats // 2), device)
    print(table(rows_b, [("config", "config", "s"), ("method", "method", "s"),
                         ("ms", "median ms", ".1f"), ("ratio", "x lower bound", ".3f"),
                         ("paired", "paired", ".3f")]))
    ours = [r for r in rows_b if r["method"] in ("IG explain()", "Split IG (store_path)",
                                                 "Split IG (store_path=False)")]
    worst_b = max(r["ratio"] for r in ours)
    print(f"worst ratio of ours {worst_b:.3f}: "
          f"{'within' if worst_b <= LOWER_BOUND_GOAL else 'ABOVE'} the goal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
