"""Where a classifier errs on a data set: the confusion matrix and per-class accuracy."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from visloupe.core.cache import cache_folder, load_array, save_array
from visloupe.core.data import as_image_source
from visloupe.core.models.adapter import eval_mode, model_device, model_dtype
from visloupe.core.models.adapter import logits as model_logits

from .embed import cache_key, check_run_args

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ConfusionResult:
    """``matrix[t, p]``: items of true class ``t`` predicted as ``p`` (``(K, K)`` int64).

    ``per_class_accuracy[t]`` = ``matrix[t, t] / matrix[t].sum()`` (NaN for classes with no
    items); ``predictions``/``labels`` ``(N,)`` int64 for the items ``indices`` (dataset
    positions); ``class_names`` ``K`` names (the data's, else the class numbers).
    """

    matrix: np.ndarray
    per_class_accuracy: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    indices: np.ndarray

    @property
    def accuracy(self) -> float:
        """Overall fraction of items predicted correctly."""
        return float((self.predictions == self.labels).mean()) if len(self.labels) else \
            float("nan")

    def samples(self, true: int, pred: int) -> list[int]:
        """Dataset indices of the items of class ``true`` predicted as ``pred``."""
        k = self.matrix.shape[0]
        for name, value in (("true", true), ("pred", pred)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or not 0 <= value < k:
                raise ValueError(f"{name}: expected a class index in [0, {k - 1}], got {value!r}")
        hit = (self.labels == true) & (self.predictions == pred)
        return [int(i) for i in self.indices[hit]]

    def to_dataframe(self) -> pd.DataFrame:
        """The matrix as a table: rows true classes, columns predicted classes."""
        return pd.DataFrame(self.matrix, index=pd.Index(self.class_names, name="true"),
                            columns=pd.Index(self.class_names, name="predicted"))


def confusion(model: nn.Module, source: Any, *,
              preprocess: Callable[[Any], torch.Tensor] | None = None, batch_size: int = 64,
              indices: Sequence[int] | None = None, limit: int | None = None,
              progress: Callable[[int, int], None] | None = None,
              cache: bool | str | os.PathLike = True) -> ConfusionResult:
    """Run ``model`` over the labelled items of ``source`` and tabulate true vs predicted class.

    Predictions are the argmax of the logits (:func:`~visloupe.core.models.as_logits` reads
    tensors, tuples and HF outputs), computed in eval mode without gradients in batches of
    ``batch_size``. Unlabelled items are skipped (logged); data without any label raises
    ValueError. ``K`` is the larger of the data's class count and the model's output size.
    Streams use their first ``limit`` items (default 1000). ``cache`` stores the predictions on
    disk under the same key as :func:`~visloupe.core.profiling.embed` (data, model weights,
    preprocess), so a second call on the same data and model runs no forward pass.
    """
    check_run_args(model, batch_size, preprocess, progress)
    src = as_image_source(source, name="source")
    idx = src.indices(indices, limit)
    labels = src.label_values(idx)
    keep = [(i, y) for i, y in zip(idx, labels, strict=True) if y is not None]
    if not keep:
        raise ValueError("source: no item has a label; confusion needs labelled data (pass "
                         "label_column= to as_image_source, or labels with the images)")
    if len(keep) < len(idx):
        logger.info("confusion: skipping %d unlabelled items", len(idx) - len(keep))
    items = [i for i, _ in keep]
    folder = cache_folder(cache, "embeddings")
    key = cache_key("predictions", src, items, model, preprocess) if folder else None
    path = folder / f"pred-{key}.npy" if key is not None else None
    cached = load_array(path, len(items)) if path is not None else None
    if cached is not None:
        if progress is not None:
            progress(len(items), len(items))
        return _tabulate(src, keep, cached[:, 0], int(cached[0, 1]))
    device, dtype = model_device(model), model_dtype(model)
    preds: list[np.ndarray] = []
    n_out = 0
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(keep), int(batch_size)):
            chunk = [i for i, _ in keep[start:start + int(batch_size)]]
            x = src.tensors(chunk, preprocess).to(device=device, dtype=dtype)
            out = model_logits(model, x, "source")
            if out.dim() != 2 or out.shape[0] != len(chunk):
                raise ValueError(f"model: expected logits of shape (N, K) = ({len(chunk)}, K), "
                                 f"got {tuple(out.shape)}")
            n_out = int(out.shape[1])
            if n_out < 2:
                raise ValueError(f"model: outputs {n_out} score per image; a confusion matrix "
                                 "needs one score per class (N, K >= 2) to take the argmax -- "
                                 "for a one-logit binary classifier return "
                                 "torch.cat([-z, z], 1) (or [1 - p, p])")
            preds.append(out.argmax(dim=1).cpu().numpy().astype(np.int64))
            if progress is not None:
                progress(min(start + int(batch_size), len(keep)), len(keep))
    pred = np.concatenate(preds)
    if path is not None:
        save_array(path, np.stack([pred, np.full_like(pred, n_out)], axis=1),
                     {"kind": "predictions", "model": type(model).__name__, "n": len(items),
                      "source": repr(src), "preprocess": repr(preprocess)})
    return _tabulate(src, keep, pred, n_out)


def _tabulate(src: Any, keep: list[tuple[int, int]], pred: np.ndarray,
              n_out: int) -> ConfusionResult:
    """The confusion matrix and per-class accuracy from predictions of the labelled items."""
    pred = np.asarray(pred, dtype=np.int64)
    true = np.asarray([y for _, y in keep], dtype=np.int64)
    names = list(src.class_names) if src.class_names else []
    k = max(len(names), n_out, int(true.max()) + 1, int(pred.max()) + 1)
    names = names + [str(c) for c in range(len(names), k)]
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(support > 0, np.diag(matrix) / np.maximum(support, 1), np.nan)
    return ConfusionResult(matrix=matrix, per_class_accuracy=acc.astype(np.float64),
                           predictions=pred, labels=true, class_names=names,
                           indices=np.asarray([i for i, _ in keep], dtype=np.int64))


__all__ = ["ConfusionResult", "confusion"]
