"""Smoke test of an installed visloupe (a wheel, not the source tree): every widget builds and
renders on the built-in data with the shipped weights (no training, no download), the shipped
data files are there, and the command line answers.

    python scripts/smoke_install.py      # run with the interpreter of the environment to check

Prints one line per check and exits non-zero on the first failure. ``tests/test_setup.py``
runs it against the wheel built from the sdist.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main() -> int:
    import numpy as np
    import torch
    import visloupe.core
    from visloupe import widgets as vw
    from visloupe.core import boxes, data, models
    from visloupe.core.models import zoo

    torch.set_num_threads(1)
    root = Path(visloupe.core.__file__).resolve().parent
    print(f"visloupe.core from {root}")

    def no_training(*_a, **_k):
        raise AssertionError("a built-in model trained: its shipped weights are missing")

    zoo.train_classifier = no_training
    for name in ("shapes-cnn", "shapes-vit", "digits-cnn", "text-cnn"):
        folder = models.shipped_weights(name)
        assert folder is not None and folder.is_relative_to(root), (name, folder)
    print("shipped weights: 4 built-in models inside the installed package")
    aff = boxes.load_taskonomy_affinities()
    assert len(aff.sources) == 27 and boxes.SHIPPED_AFFINITIES.is_relative_to(root)
    assert len(data.imagenet_class_names()) == 1000
    print("shipped data: Taskonomy affinities, ImageNet class names")

    shapes = data.load_builtin("shapes", split="test").select(range(4))
    cnn, pre = models.pretrained("shapes-cnn")
    boxes_2d = np.array([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 2.0, 2.0]])
    builders = {
        "SaliencyExplorer": lambda: vw.SaliencyExplorer(cnn, shapes, preprocess=pre, cell=64),
        "SplitIGExplorer": lambda: vw.SplitIGExplorer(cnn, shapes, preprocess=pre, n_steps=8,
                                                      cell=64),
        "COSEExplorer": lambda: vw.COSEExplorer(cnn, shapes, ["grad_cam"], preprocess=pre,
                                                n_images=2, cell=48),
        "SanityCheckExplorer": lambda: vw.SanityCheckExplorer(cnn, shapes, ["saliency"],
                                                              preprocess=pre, n_inputs=2),
        "PaddingInspector": lambda: vw.PaddingInspector(cnn, shapes, preprocess=pre),
        "DatasetExplorer": lambda: vw.DatasetExplorer(shapes, model=cnn, preprocess=pre),
        "BoxExplorer": lambda: vw.BoxExplorer(boxes_2d, ["parent", "child"]),
    }
    for name, build in builders.items():
        start = time.perf_counter()
        widget = build()
        errors = getattr(widget, "error_area", None)
        assert errors is None or not errors.value, f"{name}: {errors.value}"
        png = widget.to_png()
        assert png[:8] == b"\x89PNG\r\n\x1a\n", name
        widget.close()
        print(f"{name}: built and rendered in {time.perf_counter() - start:.1f} s")

    from visloupe.core.jobs.cli import main as cli

    assert cli(["jobs"]) == 0
    print("command line: visloupe jobs answers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
