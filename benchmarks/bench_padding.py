"""Padding audit and foveation map of a ResNet-50-sized network at 224x224 on CPU (goal < 2 s).

Run: ``.venv/bin/python benchmarks/bench_padding.py`` (``--repeat N``). Prints absolute times and,
side by side in the same run, the reference costs they replace: one real forward pass of the
network (what a hook-based audit on the real model costs) and the foveation map computed on the
linearised full-width network in float64 (the textbook recipe), whose result must equal ours.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from visloupe.core import padding as P
from visloupe.core.padding.arithmetic import _trace
from visloupe.core.padding.foveation import _path_counts, linearize


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--skip-reference", action="store_true",
                        help="skip the slow full-width float64 reference foveation map")
    args = parser.parse_args()
    n, r = args.size, args.repeat
    torch.manual_seed(0)
    net = P.reference_resnet(50)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"network: ResNet-50 layout, {sum(p.numel() for p in net.parameters()) / 1e6:.1f} M "
          f"parameters, input {n}x{n}")

    cold = time.perf_counter()
    P.audit_padding(net, n)
    cold = time.perf_counter() - cold
    t_audit, frame = best(lambda: P.audit_padding(net, n), r)
    t_fov, fmap = best(lambda: P.foveation_map(net, n), r)
    t_even, sizes = best(lambda: P.even_input_sizes(net, 100, 300), 1)
    with torch.no_grad():
        t_fwd, _ = best(lambda: net(torch.zeros(1, 3, n, n)), r)
    t_hook, rows = best(lambda: _trace(net, torch.zeros(1, 3, n, n), meta=False), 1)
    assert frame.to_dict("records") == rows, "skeleton audit differs from the real forward"
    print(f"audit_padding          {t_audit * 1e3:8.1f} ms  (first call {cold * 1e3:.1f} ms; "
          f"{len(frame)} layers, {int(frame.uneven.sum())} uneven)")
    print(f"foveation_map          {t_fov * 1e3:8.1f} ms  (float64 path counts, {fmap.shape})")
    print(f"audit + foveation      {(t_audit + t_fov):8.3f} s   goal < 2 s")
    print(f"even_input_sizes       {t_even:8.3f} s   [100, 300): {sizes}")
    print(f"reference: one real forward (float32)      {t_fwd * 1e3:8.1f} ms  -> audit is "
          f"{t_fwd / t_audit:.1f}x cheaper")
    print(f"reference: hooked real-model audit         {t_hook * 1e3:8.1f} ms  (same table)")
    if not args.skip_reference:
        def full() -> torch.Tensor:
            return _path_counts(linearize(net), torch.ones(1, 3, n, n, dtype=torch.float64))

        t_full, ref = best(full, 1)
        rel = float((ref - fmap).abs().max() / ref.abs().max())
        print(f"reference: linearised full-width float64   {t_full * 1e3:8.1f} ms  -> ours is "
              f"{t_full / t_fov:.1f}x faster, max relative difference {rel:.1e}")
    print(f"times are the best of {r} runs (even_input_sizes and references: 1 run)")


if __name__ == "__main__":
    main()
