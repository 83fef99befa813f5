"""Learned spatial bias: mean feature maps, filter asymmetry and blind-spot maps.

Alsallakh et al., "Mind the Pad -- CNNs can develop blind spots" (ICLR 2021): averaging feature
maps over many inputs cancels the input-specific structure and leaves the architecture-induced
artifacts (§2); networks trained at sizes with uneven padding learn asymmetric mean 3x3 filters
(Fig. 6b); a small object can be missed at some positions only (the shifted traffic light), which
a stimulus slid over every position reveals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from visloupe.core.data import model_inputs
from visloupe.core.models.adapter import logits as model_logits
from visloupe.core.models.adapter import model_device, model_dtype, run_model

from ._util import call_names, check_model, eval_mode, hooks

__all__ = [
    "BlindSpotMap",
    "MeanFeatureMaps",
    "blind_spot_map",
    "filter_asymmetry",
    "flip_asymmetry",
    "mean_feature_maps",
]


def flip_asymmetry(m: torch.Tensor) -> float:
    """``||M - flip_{H,W}(M)||_F / ||M||_F`` over the last two dims (0 when M is symmetric under
    a 180-degree rotation, 0 for an all-zero M)."""
    m = torch.as_tensor(m).double()
    norm = float(m.norm())
    if norm == 0.0:
        return 0.0
    return float((m - m.flip(-1, -2)).norm()) / norm


# ----------------------------------------------------------------------------- mean feature maps

@dataclass(frozen=True)
class MeanFeatureMaps:
    """Mean activation maps of each hooked layer over ``n_samples`` inputs.

    ``maps[layer]``: ``(H, W)`` mean over samples and channels; ``channel_maps[layer]``:
    ``(C, H, W)`` mean over samples; ``row_profiles``/``col_profiles``: ``(H,)``/``(W,)`` means of
    the layer map along the other axis; ``asymmetry[layer]``: :func:`flip_asymmetry` of the layer
    map; ``channel_asymmetry[layer]``: ``(C,)`` per channel.
    """

    layers: tuple[str, ...]
    maps: dict[str, torch.Tensor] = field(repr=False)
    channel_maps: dict[str, torch.Tensor] = field(repr=False)
    row_profiles: dict[str, torch.Tensor] = field(repr=False)
    col_profiles: dict[str, torch.Tensor] = field(repr=False)
    asymmetry: dict[str, float]
    channel_asymmetry: dict[str, torch.Tensor] = field(repr=False)
    n_samples: int

    def to_dataframe(self) -> pd.DataFrame:
        """One row per layer: ``layer, channels, h, w, asymmetry, channel_asymmetry_mean``,
        and the ratio of the mean border activation to the mean interior one."""
        rows = []
        for name in self.layers:
            c, h, w = self.channel_maps[name].shape
            m = self.maps[name]
            border = torch.cat([m[0], m[-1], m[1:-1, 0], m[1:-1, -1]]) if h > 2 and w > 2 else m
            inner = m[1:-1, 1:-1] if h > 2 and w > 2 else m
            ratio = float(border.mean() / inner.mean()) if float(inner.mean()) != 0 else np.nan
            rows.append({"layer": name, "channels": c, "h": h, "w": w,
                         "asymmetry": self.asymmetry[name],
                         "channel_asymmetry_mean": float(self.channel_asymmetry[name].mean()),
                         "border_to_interior": ratio})
        return pd.DataFrame(rows)


def _default_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Element-wise activations (after the nonlinearity, as the paper hooks them) that emit 4-D
    maps; convolutions when there are none."""
    from .foveation_ops import _ELEMENTWISE, is_elementwise

    acts = {n for n, m in model.named_modules()
            if is_elementwise(m) and not isinstance(m, _ELEMENTWISE)}
    convs = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    seen: list[str] = []
    modules = dict(model.named_modules())
    names = {m: n for n, m in modules.items()}

    def hook(module: nn.Module, args: tuple, output: Any) -> None:
        name = names[module]
        if isinstance(output, torch.Tensor) and output.dim() == 4 and name not in seen:
            seen.append(name)

    handles: list = []
    with hooks(handles), torch.no_grad():
        for n in acts | convs:
            handles.append(modules[n].register_forward_hook(hook))
        run_model(model, x)
    chosen = [n for n in seen if n in acts]
    return chosen or [n for n in seen if n in convs]


def _batches(data: Any, preprocess: Any, max_samples: int, batch_size: int):
    """Input batches ``(n, C, H, W)`` of the first ``max_samples`` items: a float tensor is used
    as it is (``preprocess`` does not apply to it), other data goes through ``preprocess``."""
    pre = None if isinstance(data, torch.Tensor) and data.is_floating_point() else preprocess
    return model_inputs(data, pre, batch_size=batch_size, limit=max_samples)


def mean_feature_maps(
    model: nn.Module,
    data: Any,
    layers: Sequence[str] | None = None,
    *,
    preprocess: Any = None,
    input_size: int | tuple[int, int] | None = None,
    max_samples: int = 512,
    batch_size: int = 64,
) -> MeanFeatureMaps:
    """Per-layer and per-channel mean activation maps of ``model`` over ``data``.

    ``data``: a tensor ``(N, C, H, W)`` or anything ``data.as_image_source`` accepts (with
    ``preprocess``, PIL -> ``(C, H, W)``); at most ``max_samples`` inputs, in ``batch_size``
    chunks. ``input_size`` resizes the inputs bilinearly first (to study another size).
    ``layers``: module names (default: every element-wise activation with a 4-D output, i.e. the
    maps after the nonlinearity; convolutions if the model has no activation modules). A module
    called several times per forward gives ``name``, ``name#2``, .... The model runs in eval mode
    without gradients; hooks are removed. Alsallakh et al., ICLR 2021, §2.
    """
    check_model(model)
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"max_samples: expected a positive int, got {max_samples!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    modules = dict(model.named_modules())
    if layers is not None:
        if isinstance(layers, str):
            layers = [layers]
        missing = [n for n in layers if n not in modules]
        if missing:
            some = [n for n in modules if n][:12]
            raise ValueError(f"layers: {missing} are not modules of the model; some names: {some}")
    device, dtype = model_device(model), model_dtype(model)
    sums: dict[str, torch.Tensor] = {}
    order: list[str] = []
    count = 0
    names = {m: n for n, m in modules.items()}
    with eval_mode(model), torch.no_grad():
        for batch in _batches(data, preprocess, max_samples, batch_size):
            x = batch.to(device=device, dtype=dtype)
            if input_size is not None:
                from ._util import as_hw

                x = F.interpolate(x, size=as_hw(input_size), mode="bilinear",
                                  align_corners=False)
            if layers is None:
                layers = _default_layers(model, x[:1])
                if not layers:
                    raise ValueError("layers: the model has no activation or convolution with a "
                                     "4-D output; pass layers=")
            name_of = call_names(names)

            def hook(module: nn.Module, args: tuple, output: Any, name_of=name_of) -> None:
                key = name_of(module)
                if not isinstance(output, torch.Tensor) or output.dim() != 4:
                    raise ValueError(f"layers: {key!r} returns "
                                     f"{getattr(output, 'shape', type(output).__name__)}, "
                                     "expected a 4-D feature map (N, C, H, W)")
                total = output.double().sum(0)
                if key in sums:
                    sums[key] += total
                else:
                    sums[key] = total
                    order.append(key)

            handles: list = []
            with hooks(handles):
                for n in dict.fromkeys(layers):
                    handles.append(modules[n].register_forward_hook(hook))
                run_model(model, x, "data")
            count += len(x)
    if count == 0:
        raise ValueError("data: expected at least one input, got none")
    channel_maps = {k: (v / count).float().cpu() for k, v in sums.items()}
    maps = {k: v.mean(0) for k, v in channel_maps.items()}
    return MeanFeatureMaps(
        layers=tuple(order), maps=maps, channel_maps=channel_maps,
        row_profiles={k: m.mean(1) for k, m in maps.items()},
        col_profiles={k: m.mean(0) for k, m in maps.items()},
        asymmetry={k: flip_asymmetry(m) for k, m in maps.items()},
        channel_asymmetry={k: torch.tensor([flip_asymmetry(c) for c in v])
                           for k, v in channel_maps.items()},
        n_samples=count,
    )


# ----------------------------------------------------------------------------- filter asymmetry

def filter_asymmetry(model: nn.Module) -> pd.DataFrame:
    """Per convolution with k x k kernels (k > 1), how far its kernels are from being symmetric
    under a 180-degree flip.

    Columns: ``name, kernel, stride, kernels`` (how many), ``asymmetry`` (mean over kernels of
    ``||W - flip(W)|| / ||W||``), ``mean_filter_asymmetry`` and ``abs_mean_filter_asymmetry``
    (the same for the mean kernel and the mean absolute kernel, Fig. 6b's "mean 3x3 filter"),
    ``centroid_dy``/``centroid_dx`` (centre of mass of the mean absolute kernel relative to the
    kernel centre, in cells: where the filter leans) and ``mean_filter`` (the ``k x k`` array).
    Alsallakh et al., ICLR 2021.
    """
    check_model(model)
    rows = []
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv2d):
            continue
        kh, kw = m.kernel_size
        if kh == 1 and kw == 1:
            continue
        k = m.weight.detach().double().reshape(-1, kh, kw).cpu()
        norms = k.flatten(1).norm(dim=1)
        keep = norms > 0
        per = ((k - k.flip(-1, -2)).flatten(1).norm(dim=1)[keep] / norms[keep])
        mean_k, abs_k = k.mean(0), k.abs().mean(0)
        ys = torch.arange(kh, dtype=torch.float64) - (kh - 1) / 2
        xs = torch.arange(kw, dtype=torch.float64) - (kw - 1) / 2
        mass = float(abs_k.sum()) or 1.0
        rows.append({
            "name": name, "kernel": (kh, kw), "stride": tuple(m.stride), "kernels": int(len(k)),
            "asymmetry": float(per.mean()) if len(per) else 0.0,
            "mean_filter_asymmetry": flip_asymmetry(mean_k),
            "abs_mean_filter_asymmetry": flip_asymmetry(abs_k),
            "centroid_dy": float((abs_k.sum(1) * ys).sum()) / mass,
            "centroid_dx": float((abs_k.sum(0) * xs).sum()) / mass,
            "mean_filter": mean_k.numpy(),
        })
    if not rows:
        raise ValueError("model: expected at least one convolution with a kernel larger than "
                         "1x1, found none")
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- blind spots

@dataclass(frozen=True)
class BlindSpotMap:
    """Target score with the stimulus pasted at each position.

    ``scores[i, j]``: the score with the stimulus's top-left corner at ``(rows[i], cols[j])``;
    ``score``: ``"probability"`` or ``"logit"``; ``stimulus_size``: ``(h, w)``.
    """

    scores: torch.Tensor
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    target: int
    score: str
    stimulus_size: tuple[int, int]

    @property
    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Stimulus centre coordinates (rows, cols) of the score grid."""
        h, w = self.stimulus_size
        return (np.asarray(self.rows) + (h - 1) / 2, np.asarray(self.cols) + (w - 1) / 2)

    def summary(self) -> dict[str, float]:
        """min, max, mean, and the share of positions scoring under half the maximum."""
        s = self.scores.double()
        top = float(s.max())
        return {"min": float(s.min()), "max": top, "mean": float(s.mean()),
                "blind_fraction": float((s < 0.5 * top).double().mean()) if top > 0 else 0.0}

    def to_dataframe(self) -> pd.DataFrame:
        """Long table: ``row, col, score``."""
        rr, cc = np.meshgrid(self.rows, self.cols, indexing="ij")
        return pd.DataFrame({"row": rr.ravel(), "col": cc.ravel(),
                             "score": self.scores.numpy().ravel()})


def _as_chw(t: Any, arg: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{arg}: expected a tensor (C, H, W), got {type(t).__name__}")
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3:
        raise ValueError(f"{arg}: expected a tensor (C, H, W), got shape {tuple(t.shape)}")
    return t


def blind_spot_map(
    model: nn.Module,
    stimulus: torch.Tensor,
    background: torch.Tensor,
    target: int,
    stride: int = 1,
    *,
    mask: torch.Tensor | None = None,
    score: str = "probability",
    batch_size: int = 256,
) -> BlindSpotMap:
    """Slide ``stimulus (C, h, w)`` over ``background (C, H, W)`` and record the ``target`` score.

    At every top-left position ``(y, x)`` on a grid with step ``stride`` the stimulus replaces the
    background (blended by ``mask (h, w)`` in [0, 1] if given) and the model's softmax probability
    (``score="probability"``) or logit for class ``target`` is recorded. Positions where the score
    collapses are blind spots (the shifted traffic light of Alsallakh et al., ICLR 2021). Eval
    mode, no gradients, batched.
    """
    check_model(model)
    stimulus, background = _as_chw(stimulus, "stimulus"), _as_chw(background, "background")
    if stimulus.shape[0] != background.shape[0]:
        raise ValueError(f"stimulus: expected {background.shape[0]} channels like background, "
                         f"got {stimulus.shape[0]}")
    (c, h, w), (_, big_h, big_w) = stimulus.shape, background.shape
    if h > big_h or w > big_w:
        raise ValueError(f"stimulus: expected it to fit in the background {big_h}x{big_w}, got "
                         f"{h}x{w}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride: expected a positive int, got {stride!r}")
    if score not in ("probability", "logit"):
        raise ValueError(f"score: expected 'probability' or 'logit', got {score!r}")
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or target < 0:
        raise ValueError(f"target: expected a class index (int >= 0), got {target!r}")
    alpha = torch.ones(h, w) if mask is None else torch.as_tensor(mask, dtype=torch.float32)
    if alpha.shape != (h, w):
        raise ValueError(f"mask: expected shape ({h}, {w}), got {tuple(alpha.shape)}")
    device, dtype = model_device(model), model_dtype(model)
    bg = background.to(device, dtype)
    stim, alpha = stimulus.to(device, dtype), alpha.to(device, dtype)
    rows = tuple(range(0, big_h - h + 1, stride))
    cols = tuple(range(0, big_w - w + 1, stride))
    positions = [(y, x) for y in rows for x in cols]
    out = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(positions), batch_size):
            chunk = positions[start:start + batch_size]
            batch = bg.expand(len(chunk), c, big_h, big_w).clone()
            for i, (y, x) in enumerate(chunk):
                region = batch[i, :, y:y + h, x:x + w]
                batch[i, :, y:y + h, x:x + w] = alpha * stim + (1 - alpha) * region
            logits = model_logits(model, batch)
            if logits.dim() != 2:
                raise ValueError("model: expected logits (N, num_classes) as output, got shape "
                                 f"{tuple(logits.shape)}")
            if score == "probability" and logits.shape[1] < 2:
                raise ValueError("score: the model outputs one logit, whose softmax is always 1; "
                                 "pass score='logit' (or return one score per class)")
            if int(target) >= logits.shape[1]:
                raise ValueError(f"target: expected a class index below {logits.shape[1]}, got "
                                 f"{target}")
            values = logits.softmax(1) if score == "probability" else logits
            out.append(values[:, int(target)].cpu())
    scores = torch.cat(out).reshape(len(rows), len(cols))
    return BlindSpotMap(scores, rows, cols, int(target), score, (h, w))
