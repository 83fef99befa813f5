"""Smoothing a network for smoother explanations, and measuring what it changes.

Kokhlikyan et al., "Investigating sanity checks for saliency maps with image and text
classification" (arXiv:2106.07475) report that replacing ReLUs by Softplus and max pooling by
LogSumExp (LSE) pooling gives explanations with lower infidelity (Yeh et al., NeurIPS 2019).
The surgery itself -- :func:`smooth_model` and the LSE pooling layers -- is model surgery and
lives in :mod:`visloupe.core.models.surgery` (re-exported here); :func:`smoothing_check` puts
infidelity and max-sensitivity of several models (e.g. the original and its smoothed copy) side
by side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..attribution import (
    check_token_ids,
    is_token_ids,
    resolve_explainers,
    resolve_text_explainers,
)
from ..checks import check_bool, check_seed
from ..models.adapter import check_inputs, check_model, eval_mode, model_device
from ..models.adapter import logits as model_logits
from ..models.surgery import (
    AdaptiveLSEPool1d,
    AdaptiveLSEPool2d,
    LSEPool1d,
    LSEPool2d,
    SmoothingReport,
    lse_pool2d,
    smooth_model,
)
from .robustness import infidelity, max_sensitivity, text_infidelity

__all__ = [
    "AdaptiveLSEPool1d",
    "AdaptiveLSEPool2d",
    "LSEPool1d",
    "LSEPool2d",
    "SmoothingReport",
    "lse_pool2d",
    "smooth_model",
    "smoothing_check",
]


def smoothing_check(
    models: Mapping[str, nn.Module],
    inputs: Tensor,
    explainers: Any,
    target: int | Sequence[int] | Tensor | None = None,
    *,
    labels: Tensor | None = None,
    infidelity_radius: float = 0.1,
    sensitivity_radius: float = 0.02,
    n_samples: int = 10,
    sensitivity: bool = True,
    seed: int = 0,
    pad_id: int = 0,
    embedding: str | None = None,
) -> pd.DataFrame:
    """Infidelity and max-sensitivity (Yeh et al. 2019; lower is better) of each explainer on
    each model -- e.g. ``{"original": m, "smoothed": smooth_model(m)}`` -- side by side.

    Images use :func:`~visloupe.core.evaluation.infidelity` (Gaussian perturbation of σ =
    ``infidelity_radius``, normalised) and :func:`~visloupe.core.evaluation.max_sensitivity`;
    text uses :func:`text_infidelity` (tokens moved towards the padding embedding;
    max-sensitivity is not computed for text). ``target`` None explains each model's own
    prediction. Rows: ``model, explainer, metric, mean, std, count``; with ``labels`` each model
    also gets an ``accuracy`` row.
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models: expected a non-empty dict {name: nn.Module}")
    sensitivity = check_bool("sensitivity", sensitivity)
    seed = check_seed(seed)
    text = is_token_ids(inputs)
    x = check_token_ids(inputs, "inputs") if text else check_inputs(
        next(iter(models.values())), inputs)
    if labels is not None:
        labels = torch.as_tensor(labels)
        if labels.dtype in (torch.bool,) or labels.is_floating_point() or \
                tuple(labels.shape) != (x.shape[0],):
            raise ValueError(f"labels: expected {x.shape[0]} integer class indices (one per "
                             f"input), got dtype {labels.dtype} shape {tuple(labels.shape)}")
    fns = resolve_text_explainers(explainers, pad_id=pad_id, embedding=embedding) if text \
        else dict(resolve_explainers(explainers))
    rows = []

    def add(model_name: str, name: str, metric: str, values: Tensor) -> None:
        v = values.double().numpy()
        ok = np.isfinite(v)
        rows.append({"model": model_name, "explainer": name, "metric": metric,
                     "mean": float(v[ok].mean()) if ok.any() else float("nan"),
                     "std": float(v[ok].std(ddof=1)) if ok.sum() > 1 else float("nan"),
                     "count": int(ok.sum())})

    for model_name, model in models.items():
        check_model(model, f"models[{model_name!r}]")
        xm = x.to(model_device(model))
        if labels is not None:
            with eval_mode(model), torch.no_grad():
                logits = model_logits(model, xm)
            if int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]:
                raise ValueError(f"labels: expected class indices in [0, {logits.shape[1] - 1}] "
                                 f"(models[{model_name!r}] has {logits.shape[1]} outputs), got "
                                 f"[{int(labels.min())}, {int(labels.max())}]")
            pred = logits.argmax(dim=1).cpu()
            add(model_name, "", "accuracy", (pred == labels).float())
        for name, fn in fns.items():
            if text:
                with eval_mode(model):
                    t = target
                    scores = fn(model, xm, t)
                add(model_name, name, "infidelity", text_infidelity(
                    model, xm, scores, t, radius=infidelity_radius, n_samples=n_samples,
                    seed=seed, pad_id=pad_id, embedding=embedding))
                continue
            add(model_name, name, "infidelity", infidelity(
                model, xm, fn, target, radius=infidelity_radius, n_samples=n_samples, seed=seed))
            if sensitivity:
                add(model_name, name, "max_sensitivity", max_sensitivity(
                    model, xm, fn, target, radius=sensitivity_radius, n_samples=n_samples,
                    seed=seed))
    return pd.DataFrame(rows)
