"""Cheap widget re-render: an alpha change on a 224x224 SaliencyExplorer view, from cache.

Goal (issue 3): median < 50 ms. What is timed is exactly what the kernel does when the alpha
slider moves: post-process the cached map (absolute value, percentile clip), overlay it on the
display image, compose the grid with captions, encode the PNG and set ``Image.value`` (no model
call; the script checks the model's call counter). For scale, the same overlay drawn the common
way -- a matplotlib ``Figure`` with two ``imshow`` layers saved to PNG -- is timed side by side.

Images: four scikit-image photos at 224x224 (``--noise``: random pixels, PNG's worst case).
Run: ``.venv/bin/python benchmarks/bench_render.py [--repeats 50] [--cell 224] [--methods 1]``
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import time

import numpy as np
import torch
from torch import nn
from visloupe.widgets import SaliencyExplorer, render


class Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)


def _matplotlib_reference(image: np.ndarray, sal: np.ndarray, alpha: float) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.24, 2.24), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(image)
    ax.imshow(np.abs(sal), cmap="inferno", alpha=alpha)
    ax.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _photos() -> np.ndarray:
    """Four natural photos bundled with scikit-image, centre-cropped and resized to 224x224."""
    from PIL import Image
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        img = Image.fromarray(getattr(data, name)())
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        out.append(np.asarray(img.crop((left, top, left + side, top + side)).resize((224, 224))))
    return np.stack(out)


def _noise() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)


def _median_ms(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--cell", type=int, default=224)
    parser.add_argument("--methods", type=int, default=1, choices=(1, 2, 3))
    parser.add_argument("--noise", action="store_true",
                        help="random-pixel images: the worst case for PNG compression")
    args = parser.parse_args()
    torch.manual_seed(0)
    images = _noise() if args.noise else _photos()
    model = Counting()
    methods = ["saliency", "input_x_gradient", "guided_backprop"][: args.methods]
    explorer = SaliencyExplorer(model, images, methods=methods, cell=args.cell)
    assert explorer.errors.value == "", explorer.errors.value
    calls = model.calls
    values = [0.2, 0.8]
    step = iter(range(10**9))

    def alpha_change() -> None:
        explorer.alpha.value = values[next(step) % 2]

    alpha_change()  # warm caches (colormap LUT, display image, font)
    median, best = _median_ms(alpha_change, args.repeats)
    assert model.calls == calls, "the cheap path called the model"

    base = explorer._display_base(0)
    (raw,) = list(explorer.maps().values())[:1]
    parts = {
        "overlay": lambda: render.overlay(base, np.abs(raw), 0.5, "inferno"),
        "grid + captions": lambda: render.image_grid([base, base], ["a\nb", "c\nd"],
                                                     ncols=2, cell=args.cell),
        "PNG encode": lambda: render.to_png(explorer._grid),
    }
    ref_median, _ = _median_ms(lambda: _matplotlib_reference(base, raw, 0.5), args.repeats)
    ours_one, _ = _median_ms(lambda: render.to_png(render.overlay(base, np.abs(raw), 0.5)),
                             args.repeats)

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
          f"torch {torch.__version__}, load average {load[0]:.1f}")
    print(f"view: 1 model x {len(methods)} method(s) + input, cell {args.cell} px, "
          f"{'random-pixel' if args.noise else 'photo'} images, "
          f"grid {explorer._grid.size[0]}x{explorer._grid.size[1]}, {args.repeats} repeats")
    print(f"alpha change, full re-render from cache: median {median:.1f} ms (best {best:.1f} ms;"
          f" goal < 50 ms), model calls during it: {model.calls - calls}")
    for name, fn in parts.items():
        m, _ = _median_ms(fn, args.repeats)
        print(f"  {name:<16} median {m:.2f} ms")
    print(f"one 224x224 overlay -> PNG: ours {ours_one:.2f} ms, matplotlib Figure+imshow "
          f"{ref_median:.2f} ms (ratio {ref_median / ours_one:.1f}x)")
    explorer.close()


if __name__ == "__main__":
    main()
