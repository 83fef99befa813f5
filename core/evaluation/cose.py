"""COSE: the consistency-sensitivity metric for saliency maps.

Daroya*, Sun*, Maji, "COSE: A Consistency-Sensitivity Metric for Saliency on Image
Classification", ICCV 2023 Workshops (arXiv:2309.10989); semantics of the official code
(cvl-umass/COSE, commit 195757c):

- each test image ``x`` is explained for its *predicted* class ``ŷ``; images the model gets
  wrong (``ŷ != y``) are dropped. Where the data names every correct class of an image
  (``PixelData.accept``, e.g. the built-in photos' ``imagenet_accept``: tabby *and* Egyptian
  cat), "correct" and "unchanged" below mean "in that set"; plain labels are the set ``{y}``;
- every op of the augmentation space (``transforms.TRANSFORMS``) gives pairs: ``ŷ_t`` and the map
  ``S_t`` of ``t(x)`` for ``ŷ_t``, brought back by ``t⁻¹`` and compared with SSIM (masked for
  translations/rotations); signed ops at ``magnitudes_per_transform`` magnitudes per image drawn
  without replacement from the 60 non-zero signed bins;
- model-change pairs (a random initialisation, intermediate checkpoints) compare ``S0`` with the
  map of another model for its own prediction on ``x``;
- consistency = mean SSIM over image pairs with ``ŷ_t = y``; sensitivity = 1 − mean SSIM over
  all pairs whose prediction is not ``y`` (image and model pairs); flat means over pairs;
  ``COSE = sqrt(consistency · sensitivity)`` (the code's geometric mean).

The official pipeline's conventions are the defaults here:

- **maps are scaled per map to [0, 1] before SSIM** (``postprocess="paper"``): min-max for CAM
  methods (pytorch-grad-cam's ``scale_cam_image``), and for gradient methods PAIR saliency's
  ``VisualizeImageGrayscale`` (sum of |.| over channels, clip at the 99th percentile, [0, 1]);
  see ``attribution.postprocess``. ``postprocess=None`` compares raw maps;
- **transformed pixels are 8-bit** when the data is (``quantize=None`` detects it): the code
  transforms uint8 PIL images, so ``transforms.apply_transform(..., quantize=True)`` computes
  as PIL does on uint8 and the model sees pixels on the 1/255 grid;
- the model's dtype is kept (a float64 model gets float64 inputs); SSIM runs in float64.

Work is batched by op across images (one stacked batch per op, chunked by ``batch_size``);
predictions and the reference maps are computed once.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..attribution import Explainer, check_inputs, resolve_explainer, resolve_explainers
from ..attribution.postprocess import Postprocess, resolve_postprocess
from ..checks import check_batch_size, check_options, check_per_model
from ..models.adapter import check_model, eval_mode, model_device, model_dtype, predict
from .ssim import ssim
from .transforms import (
    apply_transform,
    invert_map,
    is_8bit,
    quantize_8bit,
    resolve_transforms,
    sample_magnitudes,
    transform_spec,
    validity_mask,
)

__all__ = [
    "COSEReport",
    "PairView",
    "PixelData",
    "compare_methods",
    "cose",
    "explain_pair",
    "pixel_data",
]

logger = logging.getLogger(__name__)

_PAIR_COLUMNS = ["image", "op", "kind", "magnitude", "label", "prediction",
                 "changed_prediction", "unchanged", "similarity"]


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class PixelData:
    """Images in pixel space ``(N, C, H, W)`` in [0, 1], their labels ``(N,)`` (-1 where an item
    has none; None when no item has one), the dataset indices they came from, and ``normalize``
    mapping pixels to model inputs.
    ``eight_bit``: the pixels are 8-bit levels (``transforms.is_8bit``; None: not known, COSE
    checks the pixels), so COSE quantises transformed pixels as the official code does.
    ``accept``: per image, every class that counts as correct (the label is always one); None:
    the label only."""

    pixels: Tensor
    labels: Tensor | None
    indices: tuple[int, ...]
    normalize: Callable[[Tensor], Tensor] = field(repr=False)
    eight_bit: bool | None = None
    accept: tuple[tuple[int, ...], ...] | None = None

    def accepted(self, predictions: Tensor) -> Tensor:
        """Bool ``(N,)``: prediction ``i`` is a correct class of image ``i`` (its label, or any
        class of ``accept[i]``); never for an unlabelled image (label -1, empty set)."""
        return _accept_matrix(self).to(predictions.device).eq(predictions[:, None]).any(dim=1)


#: the column of accepted classes that :func:`pixel_data` reads when the data has one
ACCEPT_COLUMN = "imagenet_accept"


def _accept_matrix(data: PixelData) -> Tensor:
    """``(N, M)`` long: each image's correct classes, padded with -1 (never a prediction)."""
    if data.labels is None:
        raise ValueError("data: deciding which predictions are correct needs labels")
    if data.accept is None:
        return data.labels[:, None]
    sets = [sorted({int(c) for c in a} | ({int(y)} if y >= 0 else set()))
            for a, y in zip(data.accept, data.labels.tolist(), strict=True)]
    width = max(1, max((len(a) for a in sets), default=0))
    return torch.tensor([a + [-1] * (width - len(a)) for a in sets], dtype=torch.long)


class _Normalize:
    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        # float64 statistics, cast to the pixels' dtype: float64 pixels stay exact
        self.mean = torch.tensor(list(mean), dtype=torch.float64).view(1, -1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float64).view(1, -1, 1, 1)

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x)) / self.std.to(x)


def _identity(x: Tensor) -> Tensor:
    return x


def pixel_data(
    data: Any,
    preprocess: Callable | None = None,
    *,
    normalize: Callable[[Tensor], Tensor] | None = None,
    indices: Sequence[int] | None = None,
    n_images: int | None = None,
    accept: str | bool | Sequence[Sequence[int]] | None = None,
) -> PixelData:
    """Read ``data`` (anything ``data.as_image_source`` accepts) into pixel space.

    COSE transforms images *before* the model's normalisation. ``preprocess`` with ``size``,
    ``mode``, ``mean`` and ``std`` attributes (``models.pretrained``'s ``ImagePreprocess``) is
    split into a [0, 1] resize and its normalisation; any other callable must return [0, 1]
    pixels and ``normalize`` (default identity) maps them to model inputs. None reads the images
    as stored, in [0, 1]. ``indices`` or the first ``n_images`` items select the images.
    Float pixels keep their dtype; ``eight_bit`` records whether they lie on the 1/255 grid
    (every 8-bit image read through PIL and resized there does).
    ``accept``: the classes that count as correct per image (:attr:`PixelData.accept`): None
    reads the :data:`ACCEPT_COLUMN` column when the data has one, a string names another
    column, a sequence gives one set per selected image, False uses the labels only.
    """
    from ..data import as_image_source
    from ..models.preprocess import ImagePreprocess

    source = as_image_source(data)
    if indices is None:
        total = source.length
        if total is None:
            if n_images is None:
                raise ValueError("n_images: a stream of unknown length needs n_images= or "
                                 "indices=")
            total = n_images
        if n_images is not None:
            if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
                raise ValueError(f"n_images: expected a positive int, got {n_images!r}")
            total = min(total, n_images)
        indices = range(total)
    else:
        if n_images is not None:
            raise ValueError(f"n_images: give n_images or indices, not both (got n_images="
                             f"{n_images!r} and {len(indices)} indices)")
        indices = source.indices(indices)  # ints, in range: the data layer's one check
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        if repeated:
            raise ValueError(f"indices: expected each image once, got repeats {repeated[:5]}")
    indices = tuple(int(i) for i in indices)
    if not indices:
        raise ValueError("indices: expected at least one image")
    pixel_fn: Callable | None = preprocess
    if preprocess is not None and all(hasattr(preprocess, a) for a in
                                      ("size", "mode", "mean", "std")):
        pixel_fn = (preprocess.pixels() if isinstance(preprocess, ImagePreprocess)
                    else ImagePreprocess(preprocess.size, preprocess.mode, 0.0, 1.0))
        if normalize is None:
            normalize = _Normalize(preprocess.mean, preprocess.std)
    elif preprocess is not None and not callable(preprocess):
        raise TypeError(f"preprocess: expected None or a callable PIL.Image -> Tensor (C, H, W), "
                        f"got {type(preprocess).__name__}")
    if normalize is not None and not callable(normalize):
        raise TypeError(f"normalize: expected a callable Tensor -> Tensor, got "
                        f"{type(normalize).__name__}")
    pixels = source.tensors(indices, pixel_fn)
    if not pixels.is_floating_point():
        pixels = pixels.float()
    if pixels.min() < -1e-6 or pixels.max() > 1 + 1e-6:
        raise ValueError(
            f"preprocess: COSE needs pixel-space images in [0, 1], got range "
            f"[{float(pixels.min()):.3g}, {float(pixels.max()):.3g}]; pass a preprocess that "
            "returns [0, 1] pixels and the normalisation as normalize="
        )
    # An unlabelled item (ClassLabel -1, e.g. a photo no ImageNet class describes) gets -1: it
    # never counts as correctly classified, so COSE drops it like a misclassified original.
    values = source.label_values(indices)
    labels: Tensor | None = (None if all(v is None for v in values) else
                             torch.tensor([-1 if v is None else v for v in values]))
    pixels = pixels.clamp(0, 1)
    return PixelData(pixels, labels, indices, normalize or _identity, is_8bit(pixels),
                     _read_accept(source, accept, indices))


def _read_accept(source: Any, accept: Any, indices: tuple[int, ...]
                 ) -> tuple[tuple[int, ...], ...] | None:
    if accept is None or accept is False:
        values = None if accept is False else source.column_values(ACCEPT_COLUMN, indices)
    elif isinstance(accept, str):
        values = source.column_values(accept, indices)
        if values is None:
            raise ValueError(f"accept: the data has no column {accept!r}")
    elif accept is True or not isinstance(accept, Sequence):
        raise TypeError(f"accept: expected None, False, a column name or one class set per "
                        f"image, got {accept!r}")
    else:
        values = list(accept)
        if len(values) != len(indices):
            raise ValueError(f"accept: expected one class set per image ({len(indices)}), got "
                             f"{len(values)}")
    if values is None:
        return None
    try:
        return tuple(tuple(int(c) for c in v) for v in values)
    except (TypeError, ValueError) as err:
        raise TypeError("accept: expected a collection of class ids per image") from err


# --------------------------------------------------------------------------- report


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


@dataclass(frozen=True)
class COSEReport:
    """COSE of one explainer on one model.

    ``consistency`` (and its ``geometric_`` / ``photometric_`` parts), ``sensitivity`` and
    ``cose`` are flat means over pairs (NaN when a side has no pairs, with a warning);
    ``sensitivity`` is 1 − mean SSIM and SSIM lies in [-1, 1], so it lies in [0, 2] (above 1
    when changed maps anti-correlate with the original's); ``cose`` is the geometric mean
    ``sqrt(consistency * sensitivity)`` as in the official code (a negative consistency is
    clipped at 0 so that the root stays real);
    ``n_consistency`` / ``n_sensitivity`` count the pairs behind them (``n_model_pairs`` of the
    sensitivity pairs are model changes). ``n_images`` originals were evaluated after
    ``n_dropped`` misclassified ones were removed. ``pairs``: one row per pair with columns
    image (dataset index), op, kind ("geometric" | "photometric" | "model"), magnitude (NaN for
    unsigned ops and models), label, prediction (original), changed_prediction (after the
    change), unchanged (prediction still the label, or in ``PixelData.accept``), similarity
    (SSIM). ``postprocess``: how
    the maps were scaled before SSIM ("minmax", "pair_grayscale", "none" or "callable");
    ``quantized``: transformed pixels were rounded to 8 bits as PIL does.
    """

    explainer: str
    consistency: float
    geometric_consistency: float
    photometric_consistency: float
    sensitivity: float
    cose: float
    n_images: int
    n_dropped: int
    n_consistency: int
    n_sensitivity: int
    n_model_pairs: int
    pairs: pd.DataFrame = field(repr=False, compare=False)
    postprocess: str = "none"
    quantized: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The scalar fields (no per-pair table)."""
        return {k: getattr(self, k) for k in (
            "explainer", "consistency", "geometric_consistency", "photometric_consistency",
            "sensitivity", "cose", "n_images", "n_dropped", "n_consistency", "n_sensitivity",
            "n_model_pairs", "postprocess", "quantized")}

    def to_dataframe(self) -> pd.DataFrame:
        """A copy of the per-pair table."""
        return self.pairs.copy()

    def by_transform(self) -> pd.DataFrame:
        """Per op: pair counts, mean similarity of unchanged pairs (consistency) and
        1 − mean similarity of changed pairs (sensitivity)."""
        rows = []
        for op, group in self.pairs.groupby("op", sort=False):
            same = group[group.unchanged]
            diff = group[~group.unchanged]
            rows.append({"op": op, "kind": group.kind.iloc[0], "pairs": len(group),
                         "unchanged": len(same), "changed": len(diff),
                         "consistency": same.similarity.mean() if len(same) else float("nan"),
                         "sensitivity": 1 - diff.similarity.mean() if len(diff)
                         else float("nan")})
        return pd.DataFrame(rows)

    @classmethod
    def from_pairs(cls, explainer: str, pairs: pd.DataFrame, n_images: int,
                   n_dropped: int, *, postprocess: str = "none",
                   quantized: bool = False) -> COSEReport:
        """Aggregate a per-pair table (columns as ``pairs``) with the paper's rules."""
        valid = pairs[np.isfinite(pairs.similarity.to_numpy(dtype=float))]
        image_pairs = valid[valid.kind != "model"]
        cons = image_pairs[image_pairs.unchanged]
        sens = valid[~valid.unchanged]
        c = _mean(cons.similarity.to_numpy(dtype=float))
        s = 1.0 - _mean(sens.similarity.to_numpy(dtype=float)) if len(sens) else float("nan")
        if not len(cons) or not len(sens):
            side = "consistency" if not len(cons) else "sensitivity"
            warnings.warn(f"COSE of {explainer!r}: no pairs for {side} ({len(cons)} "
                          f"consistency, {len(sens)} sensitivity pairs); the result is NaN",
                          RuntimeWarning, stacklevel=3)
        score = math.sqrt(max(c, 0.0) * max(s, 0.0)) if np.isfinite(c) and np.isfinite(s) \
            else float("nan")
        geo = cons[cons.kind == "geometric"].similarity.to_numpy(dtype=float)
        pho = cons[cons.kind == "photometric"].similarity.to_numpy(dtype=float)
        return cls(explainer=explainer, consistency=c, geometric_consistency=_mean(geo),
                   photometric_consistency=_mean(pho), sensitivity=s, cose=score,
                   n_images=n_images, n_dropped=n_dropped, n_consistency=len(cons),
                   n_sensitivity=len(sens), n_model_pairs=int((sens.kind == "model").sum()),
                   pairs=pairs, postprocess=postprocess, quantized=quantized)


# --------------------------------------------------------------------------- helpers


def _predict(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """Predicted classes (CPU) of model inputs ``x`` (:func:`visloupe.core.models.predict`)."""
    return predict(model, x, batch_size=batch_size).argmax(dim=1).cpu()


def _explain(explainer: Explainer, name: str, model: nn.Module, x: Tensor,
             target: Tensor | None, batch_size: int) -> tuple[Tensor, Tensor]:
    """Maps ``(N, H, W)`` float64 on the CPU and the classes they explain; ``target=None``
    explains the predicted classes (one forward pass per batch for single-pass methods). The
    explainer gets the inputs in the model's device and dtype."""
    device, dtype = model_device(model), model_dtype(model)
    out, explained = [], []
    for start in range(0, x.shape[0], batch_size):
        xc = x[start:start + batch_size].to(device, dtype)
        if target is None:
            maps, tc = explainer.explain_predicted(model, xc)
        else:
            tc = target[start:start + batch_size].to(device)
            maps = explainer(model, xc, tc)
        if isinstance(maps, Tensor) and maps.dim() == 4 and maps.shape[1] == 1:
            maps = maps[:, 0]
        expected = (xc.shape[0], xc.shape[2], xc.shape[3])
        if not isinstance(maps, Tensor) or tuple(maps.shape) != expected:
            got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
            raise ValueError(f"explainer {name!r}: expected maps (N, H, W) = {expected} (the "
                             f"images' size), got {got}")
        maps = maps.detach().to("cpu", torch.float64)
        if not torch.isfinite(maps).all():
            raise ValueError(f"explainer {name!r}: returned NaN/inf values")
        out.append(maps)
        explained.append(tc.cpu())
    return torch.cat(out), torch.cat(explained)


def _resolve_alt_models(alt_models: Any) -> dict[str, nn.Module]:
    if alt_models is None:
        return {}
    if isinstance(alt_models, nn.Module):
        return {"alt": alt_models}
    items = alt_models.items() if isinstance(alt_models, Mapping) else \
        ((f"model{i}", m) for i, m in enumerate(alt_models))
    out = {}
    for name, m in items:
        check_model(m, f"alt_models[{name!r}]")
        out[str(name)] = m
    return out


def _with_postprocess(explainer: Explainer, postprocess: Postprocess) -> Explainer:
    """``explainer`` scaling its maps by ``postprocess`` unless it sets its own."""
    return explainer if explainer.postprocess is not None else \
        explainer.with_postprocess(postprocess)


def _postprocess_name(explainer: Explainer) -> str:
    how = resolve_postprocess(explainer.postprocess, explainer.kind)
    return "none" if how is None else "callable" if callable(how) else str(how)


def _resolve_quantize(quantize: bool | None, data: PixelData) -> bool:
    """``quantize`` checked; None: whether ``data`` is 8-bit."""
    if quantize is None:
        return bool(data.eight_bit) if data.eight_bit is not None else is_8bit(data.pixels)
    if not isinstance(quantize, bool):
        raise TypeError(f"quantize: expected None or a bool, got {quantize!r}")
    return quantize


def _empty_pairs() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
        _PAIR_COLUMNS, ["int64", "object", "object", "float64", "int64", "int64", "int64",
                        "bool", "float64"], strict=True)})


# --------------------------------------------------------------------------- cose


def cose(
    model: nn.Module,
    data: Any,
    explainer: Any,
    *,
    transforms: str | Sequence[str] | None = None,
    magnitudes_per_transform: int = 6,
    alt_models: Mapping[str, nn.Module] | Sequence[nn.Module] | None = (),
    seed: int = 0,
    batch_size: int | None = None,
    preprocess: Callable | None = None,
    normalize: Callable[[Tensor], Tensor] | None = None,
    n_images: int | None = None,
    indices: Sequence[int] | None = None,
    win_size: int = 5,
    postprocess: Postprocess = "paper",
    quantize: bool | None = None,
) -> COSEReport:
    """COSE of ``explainer`` on ``model`` over ``data`` (Daroya, Sun, Maji, "COSE: A
    Consistency-Sensitivity Metric for Saliency on Image Classification", ICCV-W 2023,
    arXiv:2309.10989).

    The paper's official code compares maps scaled per map to [0, 1]: min-max for CAMs
    (pytorch-grad-cam), PAIR saliency's ``VisualizeImageGrayscale`` for gradient methods (sum
    of |.| over channels, 99th-percentile clip, [0, 1]). That is the default here
    (``postprocess="paper"``), and SSIM of maps that differ by a positive scale and an offset is
    then 1. Its transforms act on uint8 PIL images; ``quantize`` follows that for 8-bit data.

    Args:
        model: the classifier (analysed in eval mode; not modified).
        data: anything ``data.as_image_source`` accepts, with labels, or a ``PixelData``
            (an ``imagenet_accept`` column is read as the correct classes, see
            :func:`pixel_data`'s ``accept``).
        explainer: a registry method name, ``(name, params)`` or a callable
            ``(model, inputs, target) -> (N, H, W)``.
        transforms: op names (default all of ``transforms.TRANSFORMS``), or "geometric" /
            "photometric".
        magnitudes_per_transform: magnitudes per signed op and image (paper: 6).
        alt_models: model-change pairs, e.g. ``{"random": ..., "epoch1": ...}`` from
            ``models.checkpoints`` without ``"final"``; they feed the sensitivity side only.
        seed: seeds the magnitude draws (a ``torch.Generator``, no global RNG).
        batch_size: images per forward/explanation call (default 256).
        preprocess, normalize, n_images, indices: how ``data`` becomes pixels, see
            :func:`pixel_data`.
        win_size: SSIM window (paper: 5).
        postprocess: how every map (original, transformed, other models) is scaled before
            SSIM: ``"paper"`` (default: min-max for CAM methods, ``"pair_grayscale"`` for
            gradient methods, by ``MethodSpec.map_kind``; min-max for perturbation maps and for
            callables without a ``map_kind`` attribute), ``"minmax"``, ``"pair_grayscale"``,
            None / ``"none"`` (raw maps, as before this option) or a callable
            ``(N, H, W) -> (N, H, W)``. An ``Explainer`` that sets its own ``postprocess``
            keeps it.
        quantize: round transformed pixels to 8 bits as PIL does on uint8 images (the
            official code's pipeline); None (default): when the data is 8-bit
            (``PixelData.eight_bit``, else the pixels lie on the 1/255 grid). True also rounds
            the originals.

    Returns:
        a :class:`COSEReport` (its ``postprocess`` and ``quantized`` say what was applied).
    """
    check_model(model)
    bs = check_batch_size(batch_size, 256)
    ops = resolve_transforms(transforms)
    explain_fn = _with_postprocess(resolve_explainer(explainer), postprocess)
    name = explain_fn.name
    alts = _resolve_alt_models(alt_models)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    pd_ = data if isinstance(data, PixelData) else pixel_data(
        data, preprocess, normalize=normalize, indices=indices, n_images=n_images)
    if pd_.labels is None:
        raise ValueError("data: COSE needs labels (it drops misclassified originals); pass "
                         "labelled data")
    quant = _resolve_quantize(quantize, pd_)
    norm = pd_.normalize
    check_inputs(model, norm(pd_.pixels))  # channels, finite values: before any forward pass
    generator = torch.Generator().manual_seed(seed)
    # transforms run in the wider of the pixels' and the model's dtype (never narrowed)
    pixels = pd_.pixels.to(torch.promote_types(pd_.pixels.dtype, model_dtype(model)))
    if quant:  # a no-op on 8-bit pixels; forced quantisation rounds the originals too
        pixels = quantize_8bit(pixels)

    with eval_mode(model):
        scores = predict(model, norm(pixels), batch_size=bs)
        pred = scores.argmax(dim=1).cpu()
        _check_label_range(pd_, int(scores.shape[1]))
        correct = pd_.accepted(pred)
        keep = correct.nonzero().flatten()
        n_dropped = int(pixels.shape[0] - keep.numel())
        if keep.numel() == 0:
            warnings.warn(f"COSE of {name!r}: the model misclassifies every original image; "
                          "no pairs, the result is NaN", RuntimeWarning, stacklevel=2)
            return _nan_report(name, n_dropped, _postprocess_name(explain_fn), quant)
        x = pixels[keep]
        y = pd_.labels[keep]
        y_hat = pred[keep].cpu()
        kept = dataclasses.replace(pd_, labels=y, accept=None if pd_.accept is None else tuple(
            pd_.accept[i] for i in keep.tolist()))
        accept_k = _accept_matrix(kept)  # (n, M): the correct classes of each kept image
        image_ids = torch.tensor(pd_.indices)[keep]
        n, _, h, w = x.shape
        s0, _ = _explain(explain_fn, name, model, norm(x), y_hat, bs)
        frames: list[pd.DataFrame] = []
        for op in ops:
            spec = transform_spec(op)
            k = magnitudes_per_transform if spec.signed else 1
            mags = sample_magnitudes(op, n, k, size=(h, w), generator=generator).reshape(-1)
            src = torch.arange(n).repeat_interleave(k)
            sims, preds = [], []
            for start in range(0, src.numel(), bs):
                idx = src[start:start + bs]
                m = mags[start:start + bs]
                m_arg = m if spec.signed else None
                xt = apply_transform(op, x[idx], m_arg, quantize=quant)
                xt_in = norm(xt)
                st, pt = _explain(explain_fn, name, model, xt_in, None, bs)
                back = invert_map(op, st, m_arg)
                valid = validity_mask(op, back.shape, m_arg) if spec.masked else None
                sims.append(ssim(s0[idx], back, win_size, valid))
                preds.append(pt)
            pt_all = torch.cat(preds)
            frames.append(pd.DataFrame({
                "image": image_ids[src].numpy(), "op": op, "kind": spec.kind,
                "magnitude": mags.numpy(), "label": y[src].numpy(),
                "prediction": y_hat[src].numpy(), "changed_prediction": pt_all.numpy(),
                "unchanged": (accept_k[src] == pt_all.cpu()[:, None]).any(dim=1).numpy(),
                "similarity": torch.cat(sims).numpy()}))
    xin = norm(x)
    for alt_name, alt in alts.items():
        with eval_mode(alt):
            sa, pa = _explain(explain_fn, name, alt, xin, None, bs)
        frames.append(pd.DataFrame({
            "image": image_ids.numpy(), "op": alt_name, "kind": "model",
            "magnitude": np.full(n, np.nan), "label": y.numpy(), "prediction": y_hat.numpy(),
            "changed_prediction": pa.numpy(),
            "unchanged": (accept_k == pa.cpu()[:, None]).any(dim=1).numpy(),
            "similarity": ssim(s0, sa, win_size).numpy()}))
    pairs = pd.concat(frames, ignore_index=True) if frames else _empty_pairs()
    bad = int((~np.isfinite(pairs.similarity.to_numpy(dtype=float))).sum())
    if bad:
        logger.warning("COSE of %r: %d pair(s) had an empty validity mask and are left out",
                       name, bad)
    return COSEReport.from_pairs(name, pairs, n, n_dropped,
                                 postprocess=_postprocess_name(explain_fn), quantized=quant)


def _nan_report(name: str, n_dropped: int, postprocess: str, quantized: bool) -> COSEReport:
    nan = float("nan")
    return COSEReport(name, nan, nan, nan, nan, nan, 0, n_dropped, 0, 0, 0, _empty_pairs(),
                      postprocess=postprocess, quantized=quantized)


def _check_label_range(data: PixelData, n_classes: int) -> None:
    """Labels the model cannot output can never be "correctly classified": all of them out of
    range is an error (the data's labels are not the model's class indices), some a warning."""
    accept = _accept_matrix(data)
    labelled = (accept >= 0).any(dim=1)
    possible = ((accept >= 0) & (accept < n_classes)).any(dim=1)
    impossible = int((labelled & ~possible).sum())
    if not impossible:
        return
    top = int(accept.max())
    if impossible == int(labelled.sum()):
        raise ValueError(
            f"data: every label is outside the model's {n_classes} outputs (labels up to "
            f"{top}); COSE keeps the correctly classified images, so the labels must be the "
            "model's class indices (e.g. ImageNet indices for an ImageNet model: map the data "
            "set's classes to them, or pass data whose labels the model predicts)")
    warnings.warn(f"data: {impossible} of {int(labelled.sum())} labels are outside the model's "
                  f"{n_classes} outputs (labels up to {top}); those images count as "
                  "misclassified", RuntimeWarning, stacklevel=3)


# --------------------------------------------------------------------------- one pair


@dataclass(frozen=True)
class PairView:
    """Everything the explorer shows for one image and one transformation: pixel images
    ``(C, H, W)``, maps ``(H, W)``, the validity mask, predictions and the SSIM."""

    image: Tensor
    transformed: Tensor
    map: Tensor
    transformed_map: Tensor
    map_back: Tensor
    valid: Tensor
    prediction: int
    transformed_prediction: int
    similarity: float

    @property
    def prediction_changed(self) -> bool:
        return self.prediction != self.transformed_prediction


def explain_pair(
    model: nn.Module,
    pixels: Tensor,
    explainer: Any,
    op: str,
    magnitude: float | None = None,
    *,
    normalize: Callable[[Tensor], Tensor] | None = None,
    win_size: int = 5,
    reference_map: Tensor | None = None,
    postprocess: Postprocess = "paper",
    quantize: bool | None = None,
) -> PairView:
    """One COSE image pair for a single pixel-space image ``(C, H, W)``: the map of the
    original for its prediction, the transformed image and its map for its own prediction,
    that map brought back, the validity mask and their SSIM. ``reference_map`` reuses a
    cached map of the original (as this function returned it). ``postprocess`` and
    ``quantize`` as in :func:`cose` (None: quantise when the image is 8-bit), so the pair is
    the row ``cose`` computes."""
    fn = _with_postprocess(resolve_explainer(explainer), postprocess)
    norm = normalize or _identity
    if not isinstance(pixels, Tensor) or pixels.dim() != 3 or not pixels.is_floating_point():
        raise ValueError(f"pixels: expected one float image (C, H, W), got "
                         f"{tuple(pixels.shape) if isinstance(pixels, Tensor) else pixels!r}")
    spec = transform_spec(op)
    if spec.signed and magnitude is None:
        raise ValueError(f"magnitude: {op} needs a magnitude")
    m = torch.tensor([float(magnitude)]) if spec.signed else None
    x = pixels[None].to(torch.promote_types(pixels.dtype, model_dtype(model)))
    quant = is_8bit(x) if quantize is None else quantize
    if not isinstance(quant, bool):
        raise TypeError(f"quantize: expected None or a bool, got {quantize!r}")
    if quant:
        x = quantize_8bit(x)
    check_inputs(model, norm(x), "pixels")
    with eval_mode(model):
        if reference_map is None:
            s0, p0 = _explain(fn, fn.name, model, norm(x), None, 1)
        else:
            s0, p0 = reference_map[None].double(), _predict(model, norm(x), 1)
        xt = apply_transform(op, x, m, quantize=quant)
        st, pt = _explain(fn, fn.name, model, norm(xt), None, 1)
    back = invert_map(op, st, m)
    valid = validity_mask(op, back.shape, m)
    sim = ssim(s0, back, win_size, valid if spec.masked else None)
    return PairView(x[0], xt[0], s0[0], st[0], back[0], valid[0], int(p0), int(pt),
                    float(sim[0]))


# --------------------------------------------------------------------------- comparison


def compare_methods(
    models: nn.Module | Mapping[str, nn.Module],
    data: Any,
    explainers: Any,
    *,
    metrics: Sequence[str] = ("cose", "infidelity", "max_sensitivity"),
    preprocess: Callable | Mapping[str, Callable] | None = None,
    alt_models: Mapping[str, Any] | None = None,
    n_images: int | None = None,
    magnitudes_per_transform: int = 6,
    transforms: str | Sequence[str] | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    infidelity_kwargs: Mapping[str, Any] | None = None,
    max_sensitivity_kwargs: Mapping[str, Any] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    postprocess: Postprocess = "paper",
    quantize: bool | None = None,
) -> pd.DataFrame:
    """The paper's Table 1 shape: one row per (method, model) with consistency (geometric,
    photometric), sensitivity, COSE and pair counts, plus the mean infidelity and
    max-sensitivity (Yeh et al., NeurIPS 2019) over the correctly classified images.

    COSE follows the official code of Daroya, Sun, Maji (ICCV-W 2023, arXiv:2309.10989): maps
    scaled per map to [0, 1] before SSIM (``postprocess="paper"``: min-max for CAM methods,
    PAIR's ``VisualizeImageGrayscale`` for gradient methods; None compares raw maps) and 8-bit
    transformed pixels for 8-bit data (``quantize``); see :func:`cose`, whose columns
    ``postprocess`` and ``quantized`` the table carries. Infidelity and max-sensitivity measure
    the explainers' own maps (raw unless an explainer sets its ``postprocess``): both depend on
    the maps' scale, which the paper's scaling would change.

    ``preprocess`` and ``alt_models`` may be dicts keyed by model name (``alt_models[name]`` is
    that model's ``{name: nn.Module}`` of model-change pairs). ``progress(done, total, label)``
    is called after each (method, model).
    """
    from .robustness import infidelity, max_sensitivity

    allowed = {"cose", "infidelity", "max_sensitivity"}
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    if not metrics or set(metrics) - allowed:
        raise ValueError(f"metrics: expected a non-empty subset of {sorted(allowed)}, got "
                         f"{list(metrics)}")
    for name, kwargs, fn in (("infidelity_kwargs", infidelity_kwargs, infidelity),
                             ("max_sensitivity_kwargs", max_sensitivity_kwargs,
                              max_sensitivity)):
        check_options(name, kwargs, fn)
    models_d = {"model": models} if isinstance(models, nn.Module) else dict(models)
    if not models_d:
        raise ValueError("models: expected a model or a non-empty dict of models")
    if alt_models is not None and not isinstance(alt_models, Mapping):
        raise TypeError(f"alt_models: expected a dict keyed by model name, got "
                        f"{type(alt_models).__name__}")
    unknown = sorted(set(alt_models or {}) - set(models_d))
    if unknown:  # e.g. {"random": model} where {model_name: {"random": model}} was meant
        raise ValueError(f"alt_models: expected keys among the model names {list(models_d)} "
                         f"(each mapping to that model's {{name: changed model}}), got "
                         f"{unknown}")
    pres = check_per_model("preprocess", preprocess, models_d)
    methods = resolve_explainers(explainers)
    rows = []
    total, done = len(models_d) * len(methods), 0
    for model_name, model in models_d.items():
        pre = pres[model_name]
        alts = (alt_models or {}).get(model_name, {})
        pdata = data if isinstance(data, PixelData) else pixel_data(data, pre,
                                                                   n_images=n_images)
        for method_name, fn in methods.items():
            if hasattr(fn.fn, "reset"):
                fn.fn.reset()
            row: dict[str, Any] = {"method": method_name, "model": model_name}
            if "cose" in metrics:
                report = cose(model, pdata, fn, transforms=transforms,
                              magnitudes_per_transform=magnitudes_per_transform,
                              alt_models=alts, seed=seed, batch_size=batch_size,
                              postprocess=postprocess, quantize=quantize)
                row.update({k: v for k, v in report.to_dict().items() if k != "explainer"})
            if {"infidelity", "max_sensitivity"} & set(metrics):
                xin = pdata.normalize(pdata.pixels)
                with eval_mode(model):
                    pred = _predict(model, xin, check_batch_size(batch_size, 256))
                correct = pdata.accepted(pred) if pdata.labels is not None else \
                    torch.ones_like(pred, dtype=torch.bool)
                xs, ts = xin[correct], pred[correct]
                if "infidelity" in metrics:
                    row["infidelity"] = float(infidelity(
                        model, xs, fn, ts, seed=seed, batch_size=batch_size,
                        **dict(infidelity_kwargs or {})).mean()) if len(xs) else float("nan")
                if "max_sensitivity" in metrics:
                    row["max_sensitivity"] = float(max_sensitivity(
                        model, xs, fn, ts, seed=seed, batch_size=batch_size,
                        **dict(max_sensitivity_kwargs or {})).mean()) if len(xs) \
                        else float("nan")
            rows.append(row)
            done += 1
            if progress is not None:
                progress(done, total, f"{method_name} / {model_name}")
    return pd.DataFrame(rows)
