"""Task2Box benchmarks: fit time and box-op speed/agreement, measured side by side.

    python benchmarks/bench_boxes.py [--threads 2] [--epochs 1350] [--repeats 3] [--accuracy]
                                     [--seeds 3] [--only ops|fit|accuracy|taskonomy]

1. Fit time of :class:`visloupe.core.boxes.Task2Box` for N ≈ 150 datasets x 1 350 full-batch
   epochs (5-D boxes, the paper's network and losses, 128-d features), against a straightforward
   reference loop written here (same network and loss, box-embeddings-style intersection with
   stacked tensors, plain Adam) on the same data and seed.
2. Pairwise soft intersection + log-volume (the core op, N = 500, d = 5), forward alone and
   forward + backward: ours against the ``box-embeddings`` library (iesl, v0.1.0, the one
   Task2Box used) when it is importable (``pip install --no-deps --target /tmp/bx
   box-embeddings==0.1.0`` then ``PYTHONPATH=/tmp/bx``), else against a reference written here:
   same numbers (max differences) and the speed ratio.
3. ``--accuracy`` (or ``--only accuracy`` / ``--only taskonomy``): the notebook's protocols
   (``bx.hierarchy_protocol``, ``bx.taskonomy_protocol``) with full settings over several seeds:
   hierarchy F1 on the ImageNet ``instrumentality.n.03`` WordNet tree (existing pairs and novel
   nodes) next to the paper's Table 2, and Taskonomy Spearman rho (existing and novel tasks) next
   to Table 3 (the shipped affinity table, or ``--taskonomy PATH``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from torch import nn
from visloupe.core import boxes as bx

GAMMA = bx.EULER_GAMMA


def _timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------
# A straightforward reference (what a first prototype looks like)


def _ref_intersection(z1, Z1, z2, Z2, t=1e-4):
    a = torch.stack((z1, -Z1), -2).expand(*torch.broadcast_shapes(z1.shape, z2.shape)[:-1], 2, -1)
    b = torch.stack((z2, -Z2), -2)
    lse = torch.logaddexp(a / t, b / t)
    return t * lse[..., 0, :], -t * lse[..., 1, :]


def _ref_log_volume(z, Z, tv=0.1, ti=1e-4):
    return torch.log(nn.functional.softplus(Z - z - 2 * GAMMA * ti, beta=1 / tv) + 1e-13).sum(-1)


def _ref_pairwise_log_overlap(z, Z):
    iz, iZ = _ref_intersection(z[:, None, :], Z[:, None, :], z[None, :, :], Z[None, :, :])
    return _ref_log_volume(iz, iZ) - _ref_log_volume(z, Z)[:, None]


def _ref_fit(x, target, mask, dim, epochs, seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = bx.BoxNet(x.shape[1], dim)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    t = target.clamp(min=1e-12)
    for _ in range(epochs):
        opt.zero_grad()
        z, Z = net(x)
        ov = torch.exp(_ref_pairwise_log_overlap(z, Z))
        loss_o = ((ov - t)[mask] ** 2).sum()
        vol = torch.exp(_ref_log_volume(z, Z))
        loss_v = ((1 / (vol + 1e-12)) ** (1 / dim)).sum()
        c = (z + Z) / 2
        d = ((c[:, None] - c[None]) ** 2).sum(-1)
        loss_d = d[mask & (t > 1e-12)].sum()
        s = Z - z
        loss_r = sum((s[:, k] - s[:, m]).abs().sum() for k in range(dim)
                     for m in range(k + 1, dim)) / dim**2
        loss = 100 * loss_o + 0.7 * loss_v + 0.01 * loss_d + loss_r
        loss.backward()
        opt.step()
    return net


# ---------------------------------------------------------------------------------------------


def _network_alone(x: torch.Tensor, epochs: int) -> None:
    """The floor under any Task2Box loss: the paper's feature -> box network (BatchNorm, fused
    Adam) trained on a trivial loss, so only the network's forward, backward and update run."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = bx.BoxNet(x.shape[1], 5)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    for _ in range(epochs):
        opt.zero_grad(set_to_none=True)
        lo, hi = net(x)
        (lo.sum() + hi.sum()).backward()
        opt.step()


def _matmuls_alone(x: torch.Tensor, epochs: int, hidden=(1024, 256, 128)) -> None:
    """The network's matrix products alone (forward, weight and input gradients), no autograd."""
    g = torch.Generator().manual_seed(0)
    widths = (x.shape[1], *hidden)
    ws = [torch.randn(b, a, generator=g) / a**0.5
          for a, b in zip(widths[:-1], widths[1:], strict=True)]
    for _ in range(epochs):
        acts = [x]
        for w in ws:
            acts.append(acts[-1] @ w.T)
        grad = torch.ones_like(acts[-1])
        for k in range(len(ws) - 1, -1, -1):
            grad.T @ acts[k]  # weight gradient
            if k:
                grad = grad @ ws[k]  # input gradient (none for the features)


def bench_fit(epochs: int, repeats: int) -> None:
    h = bx.synthetic_hierarchy(depth=3, branching=(3, 4), roots=9, seed=5)
    f = bx.hierarchical_features(h, dim=64, seed=0)
    x, o = f.mean_var, h.overlap()
    train, _, _ = bx.pair_split(len(h), seed=0)
    print(f"fit: N = {len(h)} datasets, features {x.shape[1]}-d, 5-D boxes, {epochs} epochs")
    ours = _timeit(lambda: bx.Task2Box(dim=5).fit(x, o, train, epochs=epochs, seed=0), repeats)
    ref = _timeit(lambda: _ref_fit(x, o, train, 5, epochs, 0), repeats)
    print(f"  visloupe Task2Box.fit : {ours:7.2f} s  ({1e3 * ours / epochs:.2f} ms/epoch)")
    print(f"  straightforward loop  : {ref:7.2f} s  ({1e3 * ref / epochs:.2f} ms/epoch)")
    print(f"  speed-up              : {ref / ours:7.2f} x")
    alone = _timeit(lambda: _network_alone(x, epochs), repeats)
    mm = _timeit(lambda: _matmuls_alone(x, epochs), repeats)
    print(f"  floor: the network alone, trivial loss : {alone:6.2f} s  "
          f"({1e3 * alone / epochs:.2f} ms/epoch)")
    print(f"  floor: its matrix products alone       : {mm:6.2f} s  "
          f"({1e3 * mm / epochs:.2f} ms/epoch)")


def bench_ops(repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    n, d = 500, 5
    lo = torch.rand(n, d, generator=g) * 3
    hi = lo + torch.rand(n, d, generator=g) + 0.05
    try:
        from box_embeddings.modules.intersection import Intersection
        from box_embeddings.modules.volume.volume import Volume
        from box_embeddings.parameterizations.box_tensor import BoxTensor

        inter = Intersection(intersection_temperature=1e-4)
        vol = Volume(volume_temperature=0.1, intersection_temperature=1e-4)

        def theirs(z: torch.Tensor, zz: torch.Tensor) -> torch.Tensor:
            a = BoxTensor.from_zZ(z[:, None, :], zz[:, None, :])
            b = BoxTensor.from_zZ(z[None, :, :], zz[None, :, :])
            return vol(inter(a, b)) - vol(BoxTensor.from_zZ(z, zz))[:, None]

        name = "box-embeddings 0.1.0"
    except ImportError:
        theirs = _ref_pairwise_log_overlap
        name = "reference written here (box-embeddings not importable)"
    print(f"pairwise log-overlap, N = {n}, d = {d} ({n * n} pairs) vs {name}")
    with torch.no_grad():
        diff = float((bx.pairwise_log_overlap(lo, hi) - theirs(lo, hi)).abs().max())
        t_ours = _timeit(lambda: bx.pairwise_log_overlap(lo, hi), repeats * 5)
        t_other = _timeit(lambda: theirs(lo, hi), repeats * 5)
        lo64, hi64 = lo.double(), hi.double()
        diff64 = float((bx.pairwise_log_overlap(lo64, hi64) - theirs(lo64, hi64)).abs().max())
    print(f"  forward:   max |ours - theirs| (log scale) {diff:.2e} in float32, {diff64:.2e} in "
          f"float64;  visloupe {1e3 * t_ours:.2f} ms   theirs {1e3 * t_other:.2f} ms   "
          f"ratio theirs/ours {t_other / t_ours:.2f}")
    # forward + backward of a loss on all pairs (what a training step needs)
    w = torch.rand(n, n, generator=g)

    def step(fn):
        z, zz = lo.clone().requires_grad_(), hi.clone().requires_grad_()
        (fn(z, zz).exp() * w).sum().backward()
        return z.grad, zz.grad

    ours_g, other_g = step(bx.pairwise_log_overlap), step(theirs)
    rel = max(float((a - b).abs().max() / b.abs().max())
              for a, b in zip(ours_g, other_g, strict=True))
    t_ours = _timeit(lambda: step(bx.pairwise_log_overlap), repeats * 3)
    t_other = _timeit(lambda: step(theirs), repeats * 3)
    print(f"  fwd + bwd: max relative gradient difference {rel:.2e};  visloupe "
          f"{1e3 * t_ours:.2f} ms   theirs {1e3 * t_other:.2f} ms   ratio theirs/ours "
          f"{t_other / t_ours:.2f}")


PAPER_TABLE2 = {  # F1 %, "mean, var (CLIP)" columns: existing, novel
    "Task2Box 2D": (63.33, 48.35), "Task2Box 3D": (82.79, 66.48), "Task2Box 5D": (88.48, 78.84),
    "MLP": (60.43, 64.56), "Linear": (8.33, 11.87), "KL": (5.53, 10.41),
    "Asym. cosine": (4.28, 4.52), "Asym. Euclidean": (3.73, 4.52), "Random": (3.64, 5.02),
}


PAPER_TABLE3 = {  # Spearman rho, mean and std over 10 splits: existing, novel
    "Task2Box 2D": ((0.85, 0.06), (0.12, 0.21)), "Task2Box 3D": ((0.93, 0.02), (0.48, 0.24)),
    "Task2Box 5D": ((0.94, 0.03), (0.39, 0.22)), "MLP": ((0.88, 0.06), (0.31, 0.18)),
    "Linear": ((0.75, 0.11), (0.40, 0.24)), "Random": ((0.05, 0.14), (0.15, 0.07)),
}


def _summary(runs: list[dict], scale: float) -> dict[str, tuple[float, float]]:
    return {name: (statistics.mean(scale * r[name] for r in runs),
                   statistics.pstdev(scale * r[name] for r in runs) if len(runs) > 1 else 0.0)
            for name in runs[0]}


def bench_accuracy(epochs: int, seeds: int) -> None:
    h = bx.imagenet_hierarchy("instrumentality.n.03")
    feats = bx.hierarchical_features(h, dim=64, seed=0)
    print(f"hierarchy F1 (%), ImageNet instrumentality: {len(h)} datasets, "
          f"{int(h.ancestors().sum())} ancestor pairs, synthetic [mean; var] features, "
          f"{epochs} epochs, mean ± std over {seeds} splits (seeds 0..{seeds - 1})")
    for protocol, col in (("existing", 0), ("novel", 1)):
        t = time.perf_counter()
        runs = [bx.hierarchy_protocol(h, feats, protocol, seed=seed, epochs=epochs)[0]
                for seed in range(seeds)]
        print(f"  {protocol} ({time.perf_counter() - t:.0f} s)")
        for name, (mean, sd) in _summary(runs, 100).items():
            per_seed = " ".join(f"{100 * r[name]:5.1f}" for r in runs)
            print(f"    {name:16s} {mean:6.2f} ± {sd:5.2f}   paper {PAPER_TABLE2[name][col]:6.2f}"
                  f"   [{per_seed}]")


def bench_taskonomy(path: str, seeds: int, epochs: int = 3000) -> None:
    try:
        aff = bx.load_taskonomy_affinities(path)
    except FileNotFoundError:
        print(f"Taskonomy: no affinity table at {path}; skipped")
        return
    print(f"Taskonomy Spearman rho: {len(aff.square()[0])} tasks, our attribute features, "
          f"{epochs} epochs, mean ± std over {seeds} splits (seeds 0..{seeds - 1})")
    for protocol, col in (("existing", 0), ("novel", 1)):
        t = time.perf_counter()
        runs = [bx.taskonomy_protocol(aff, protocol, seed=seed, epochs=epochs)
                for seed in range(seeds)]
        print(f"  {protocol} ({time.perf_counter() - t:.0f} s)")
        for name, (mean, sd) in _summary(runs, 1).items():
            pm, ps = PAPER_TABLE3[name][col]
            print(f"    {name:16s} {mean:5.2f} ± {sd:4.2f}   paper {pm:.2f} ± {ps:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1350)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accuracy", action="store_true", help="also run the F1 protocol")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--taskonomy", default=str(bx.SHIPPED_AFFINITIES),
                        help="folder or CSV of Taskonomy affinities (default: the shipped table)")
    parser.add_argument("--only", choices=("ops", "fit", "accuracy", "taskonomy"),
                        help="run one part alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, load "
          f"average {load}, {platform.processor() or '?'}, {platform.platform()}")
    if args.only in (None, "ops"):
        bench_ops(args.repeats)
    if args.only in (None, "fit"):
        bench_fit(args.epochs, args.repeats)
    if args.accuracy or args.only == "accuracy":
        bench_accuracy(args.epochs, args.seeds)
    if args.accuracy or args.only == "taskonomy":
        bench_taskonomy(args.taskonomy, args.seeds)


if __name__ == "__main__":
    main()
