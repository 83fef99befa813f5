"""COSE speed: ``evaluation.cose`` (batched by op across images) against a straightforward
per-image, per-pair loop in the official code's pattern (one image at a time: predict, explain,
invert the map with scikit-image, SSIM with scikit-image), on the same images, magnitudes and
explainer. Prints both times, the ratio, the largest difference between the two sets of SSIM
values, and where our time goes.

    .venv/bin/python benchmarks/bench_cose.py [--n-images 200] [--threads 2]
    .venv/bin/python benchmarks/bench_cose.py --model efficientnet-lite0   # 224x224, all photos
    .venv/bin/python benchmarks/bench_cose.py --model efficientnet-lite0 --device cuda
"""

from __future__ import annotations

import argparse
import cProfile
import platform
import pstats
import time
import warnings

import numpy as np
import torch


def reference_loop(model, pdata, keep, table, explain_fn, quantize=False,
                   alt_models=None) -> np.ndarray:
    """One pair at a time, as cvl-umass/COSE's ``explain.py`` does (``explain_fn`` returns the
    maps as the paper scales them; ``quantize``: 8-bit transformed pixels, as its uint8 PIL
    transforms give)."""
    from skimage.metrics import structural_similarity
    from skimage.transform import AffineTransform, rotate, warp
    from visloupe.core.evaluation.transforms import apply_transform, pixel_shift, transform_spec
    from visloupe.core.models.adapter import model_device

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from skimage.morphology import binary_erosion

    norm = pdata.normalize
    device = model_device(model)
    pos = {idx: i for i, idx in enumerate(pdata.indices)}
    sims = []
    refs: dict[int, np.ndarray] = {}
    for row in table.itertuples(index=False):
        i = pos[int(row.image)]
        x = pdata.pixels[i:i + 1].to(device)
        blank = torch.ones_like(pdata.pixels[i:i + 1, :1])  # for the validity mask, on the CPU
        if i not in refs:  # the original map (computed once per image, as the official code)
            with torch.no_grad():
                p0 = model(norm(x)).argmax(1)
            refs[i] = explain_fn(model, norm(x), p0)[0].detach().double().cpu().numpy()
        s0 = refs[i]
        if row.kind == "model":  # the same input through the changed model, its own prediction
            other = alt_models[row.op]
            with torch.no_grad():
                pm = other(norm(x)).argmax(1)
            back = explain_fn(other, norm(x), pm)[0].detach().double().cpu().numpy()
            r = max(np.ptp(s0), np.ptp(back)) or 1e-12
            sims.append(structural_similarity(s0, back, win_size=5, data_range=r))
            continue
        spec = transform_spec(row.op)
        mag = None if not spec.signed else float(row.magnitude)
        xt = apply_transform(row.op, x, mag, quantize=quantize)
        with torch.no_grad():
            pt = model(norm(xt)).argmax(1)
        st = explain_fn(model, norm(xt), pt)[0].detach().double().cpu().numpy()
        mask = None
        if row.op in ("TranslateX", "TranslateY"):
            shift = int(pixel_shift(torch.tensor([mag]))[0])
            t = [-shift, 0] if row.op == "TranslateX" else [0, -shift]
            back = warp(st, AffineTransform(translation=t).inverse, mode="constant", cval=0,
                        order=0)
            ones = apply_transform(row.op, blank, mag)[0, 0].double().numpy()
            mask = warp(ones, AffineTransform(translation=t).inverse, mode="constant",
                        cval=0, order=0).astype(bool)
        elif row.op == "Rotate":
            back = rotate(st, -mag, resize=False, mode="constant", cval=0, order=1)
            ones = apply_transform(row.op, blank, mag)[0, 0].double().numpy()
            mask = rotate(ones, -mag, resize=False, mode="constant", cval=0, order=1).astype(bool)
        elif row.op == "FlipLR":
            back = np.fliplr(st)
        elif row.op == "FlipUD":
            back = np.flipud(st)
        else:
            back = st
        r = max(np.ptp(s0), np.ptp(back))
        if r == 0:
            r = 1e-12
        if mask is None:
            sims.append(structural_similarity(s0, back, win_size=5, data_range=r))
        else:
            _, full = structural_similarity(s0, back, win_size=5, data_range=r, full=True)
            with warnings.catch_warnings():  # deprecated in skimage 0.26, as the official code
                warnings.simplefilter("ignore", FutureWarning)  # calls it
                eroded = binary_erosion(mask, footprint=np.ones((5, 5), dtype=bool))
            sims.append(full[eroded].mean())
    return np.asarray(sims)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where both runs put the "
                        "models (ours batches on it; the loop sends one image at a time)")
    parser.add_argument("--method", default="grad_cam")
    parser.add_argument("--model", default="shapes-cnn",
                        help="shapes-cnn (on shapes) or efficientnet-lite0 (on the 22 photos, "
                             "with its random initialisation as the model-change pair)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from visloupe.core import data, models
    from visloupe.core.attribution import resolve_explainer
    from visloupe.core.evaluation.cose import cose, pixel_data

    device = torch.device(args.device)
    model, pre = models.pretrained(args.model)
    model = model.to(device)
    alt = {}
    if args.model == "shapes-cnn":
        ds = data.load_builtin("shapes", split="test")
    else:  # the real ImageNet CNN on every bundled photo (labelled ones can be "correct")
        ds = data.load_builtin("photos", split="test")
        alt = {"random": models.checkpoints(args.model)["random"].to(device)}
    pdata = pixel_data(ds, pre, n_images=min(args.n_images, len(ds)))
    explain_fn = resolve_explainer(args.method, postprocess="paper")  # the paper's map scaling
    cose(model, pdata, explain_fn, transforms=["Blur"])  # warm-up

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    sync()
    t0 = time.perf_counter()
    report = cose(model, pdata, explain_fn, alt_models=alt)
    sync()
    ours = time.perf_counter() - t0
    keep = sorted(set(report.pairs.image))
    t0 = time.perf_counter()
    ref = reference_loop(model, pdata, keep, report.pairs, explain_fn, report.quantized, alt)
    sync()
    loop = time.perf_counter() - t0
    diff = np.abs(ref - report.pairs.similarity.to_numpy())

    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}{gpu}")
    print(f"COSE ({args.method}, {args.model}): {report.n_images} correct of {len(pdata.indices)} "
          f"images, {len(report.pairs)} pairs; COSE {report.cose:.4f} "
          f"(consistency {report.consistency:.4f}, sensitivity {report.sensitivity:.4f})")
    print(f"ours (batched by op): {ours:8.2f} s")
    print(f"per-pair loop:        {loop:8.2f} s")
    print(f"speed-up: {loop / ours:.1f}x   max |ΔSSIM| = {diff.max():.2e}")

    profile = cProfile.Profile()
    profile.enable()
    cose(model, pdata, explain_fn, alt_models=alt)
    profile.disable()
    stats = pstats.Stats(profile)
    wanted = {"_predict": "predictions (forward)", "_explain": "explanations (fwd+bwd)",
              "apply_transform": "transforms", "invert_map": "inverse maps",
              "validity_mask": "validity masks", "ssim": "SSIM"}
    total = sum(v[3] for k, v in stats.stats.items() if k[2] == "cose")
    print("where our time goes (cumulative, one more run):")
    for (_, _, fn), v in stats.stats.items():
        if fn in wanted and v[3] > 0:
            print(f"  {wanted[fn]:24s} {v[3]:7.2f} s  ({100 * v[3] / total:4.1f} %)")
    print(f"  {'total':24s} {total:7.2f} s")


if __name__ == "__main__":
    main()
