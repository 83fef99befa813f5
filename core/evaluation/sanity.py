"""Model-parameter randomisation sanity checks for saliency on images and text.

Adebayo et al., "Sanity Checks for Saliency Maps" (NeurIPS 2018): if a map barely changes when
the model's weights are re-initialised, it does not explain the model. *Cascading* randomisation
re-initialises layers from the logits down, cumulatively; *independent* randomisation
re-initialises one layer at a time. Kokhlikyan et al., "Investigating sanity checks for saliency
maps with image and text classification" (arXiv:2106.07475) repeat the test on text models and
find that methods with an *input multiplier* (input x gradient, integrated gradients, DeepLIFT)
keep the input's structure -- pixel intensities, token-embedding norms -- so their maps stay
similar under absolute-value rank correlation whatever the weights, and that conclusions drawn
for images do not transfer unchanged to text.

- :func:`randomization_check` -> a ``pandas.DataFrame`` (aggregated, or one row per input);
  :func:`run_randomization` -> :class:`RandomizationResult` with the maps of every step.
- :func:`randomized_models` yields the re-initialised copies; :func:`randomizable_layers` lists
  the default layers, outermost first.
- :func:`input_multiplier_summary`: methods with and without an input multiplier compared at the
  end of the cascade, with the correlation of each map with the input's own structure.
- :func:`text_explainer`: token-level explainers for token-id models (gradient at the embedding
  output, input x gradient, integrated gradients from the all-padding baseline).
- :func:`smoothing_check`: infidelity and max-sensitivity of several models (e.g. the original
  and :func:`~visloupe.core.evaluation.smooth_model`'s copy) side by side.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import logging
import math
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..attribution import (
    Explainer,
    LogitsModule,
    check_inputs,
    method_spec,
    resolve_explainers,
    resolve_targets,
)
from ..attribution.text import _embedding_layer, token_attributions
from ..models.adapter import as_logits, eval_mode, model_device
from .similarity import IMAGE_MEASURES, TEXT_MEASURES, compare_maps, spearman

__all__ = [
    "MODES",
    "TEXT_EXPLAINERS",
    "RandomizationResult",
    "TextExplainer",
    "input_multiplier_summary",
    "multiplied_perturbation",
    "randomizable_layers",
    "randomization_check",
    "randomized_models",
    "reinitialize",
    "run_randomization",
    "smoothing_check",
    "text_explainer",
    "text_infidelity",
]

logger = logging.getLogger(__name__)

MODES = ("cascading", "independent")
ORIGINAL = "(original)"


# --------------------------------------------------------------------------- text explainers

TEXT_EXPLAINERS = {
    "saliency": False,
    "input_x_gradient": True,
    "integrated_gradients": True,
}
"""Token-level methods and whether each carries an input multiplier."""


@dataclass(frozen=True)
class TextExplainer:
    """A token-level explainer ``(model, token_ids (N, T), target) -> scores (N, T)``.

    Scores are taken at the embedding layer's output and summed over the embedding dimension:
    ``"saliency"`` sums the gradient ``∂f/∂e_t`` (no input multiplier), ``"input_x_gradient"``
    sums ``e_t ⊙ ∂f/∂e_t`` and ``"integrated_gradients"`` runs Captum's
    ``LayerIntegratedGradients`` from the all-``pad_id`` baseline (both via
    :func:`~visloupe.core.attribution.token_attributions`). Padding positions score 0.
    """

    name: str
    method: str
    embedding: str | None = None
    pad_id: int = 0
    n_steps: int = 32

    @property
    def multiplies_by_input(self) -> bool:
        return TEXT_EXPLAINERS[self.method]

    def __call__(self, model: nn.Module, token_ids: Tensor, target: Any = None) -> Tensor:
        if self.method == "saliency":
            return _token_gradient(model, token_ids, target, self.embedding, self.pad_id)
        return token_attributions(model, token_ids, target, self.method,
                                  embedding=self.embedding, pad_id=self.pad_id,
                                  n_steps=self.n_steps).scores


def text_explainer(method: str, *, name: str | None = None, embedding: str | None = None,
                   pad_id: int = 0, n_steps: int = 32) -> TextExplainer:
    """A :class:`TextExplainer` for ``method`` (one of ``TEXT_EXPLAINERS``)."""
    if method not in TEXT_EXPLAINERS:
        raise ValueError(f"explainers: text methods are {list(TEXT_EXPLAINERS)}, got {method!r}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 2:
        raise ValueError(f"n_steps: expected an int >= 2, got {n_steps!r}")
    return TextExplainer(name or method, method, embedding, int(pad_id), n_steps)


def _token_gradient(model: nn.Module, token_ids: Tensor, target: Any, embedding: Any,
                    pad_id: int) -> Tensor:
    """Σ_d ∂f_target/∂e_{t,d} at the embedding output, padding set to 0."""
    layer = _embedding_layer(model, embedding)
    ids = token_ids.to(model_device(model))
    captured: dict[str, Tensor] = {}

    def hook(_module: nn.Module, _inp: Any, out: Tensor) -> Tensor:
        out = out.detach().requires_grad_(True)
        captured["e"] = out
        return out

    handle = layer.register_forward_hook(hook)
    try:
        with eval_mode(model), torch.enable_grad():
            logits = as_logits(model(ids))
            t = logits.argmax(dim=1) if target is None else resolve_targets(
                target, ids.shape[0], logits.shape[1]).to(logits.device)
            picked = logits.gather(1, t.view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(picked, captured["e"])
    finally:
        handle.remove()
    scores = grad.sum(dim=-1)
    return torch.where(ids != pad_id, scores, torch.zeros_like(scores)).detach().to(
        token_ids.device)


def _is_token_ids(inputs: Any) -> bool:
    if isinstance(inputs, np.ndarray):
        return np.issubdtype(inputs.dtype, np.integer)
    return isinstance(inputs, Tensor) and not inputs.is_floating_point() and \
        not inputs.is_complex() and inputs.dtype != torch.bool


def _check_token_ids(inputs: Any) -> Tensor:
    ids = torch.as_tensor(inputs)
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"inputs: expected token ids (N, T) with N, T > 0, got shape "
                         f"{tuple(ids.shape)}")
    return ids.long()


def _multiplier_flag(explainer: Any) -> bool | None:
    if isinstance(explainer, TextExplainer):
        return explainer.multiplies_by_input
    if isinstance(explainer, Explainer):
        if explainer.method is not None:
            return method_spec(explainer.method).multiplies_by_input
        return getattr(explainer.fn, "multiplies_by_input", None)
    return getattr(explainer, "multiplies_by_input", None)


def _resolve(explainers: Any, text: bool, pad_id: int, embedding: Any) -> dict[str, Any]:
    """``{name: callable}`` for images (the explainer contract) or text (TextExplainer or a
    callable ``(model, ids, target) -> (N, T)``)."""
    if not text:
        return dict(resolve_explainers(explainers))
    if isinstance(explainers, (str, TextExplainer)) or callable(explainers):
        explainers = [explainers]
    items = list(explainers.items()) if isinstance(explainers, Mapping) else \
        [(None, e) for e in explainers]
    if not items:
        raise ValueError("explainers: expected at least one explainer, got none")
    out: dict[str, Any] = {}
    for key, value in items:
        if isinstance(value, str):
            value = text_explainer(value, name=key, embedding=embedding, pad_id=pad_id)
        elif not callable(value):
            raise TypeError(f"explainers: expected a text method name {list(TEXT_EXPLAINERS)} "
                            f"or a callable (model, token_ids, target) -> (N, T), got "
                            f"{type(value).__name__}")
        label = str(key) if key is not None else getattr(
            value, "name", getattr(value, "__name__", type(value).__name__))
        name, k = label, 2
        while name in out:
            name, k = f"{label} ({k})", k + 1
        out[name] = value
    return out


# --------------------------------------------------------------------------- layers


def _has_direct_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def randomizable_layers(model: nn.Module, inputs: Tensor | None = None) -> list[str]:
    """Names of the leaf modules that own parameters, outermost (closest to the logits) first.

    With ``inputs`` the order is the reverse of the order in which one forward pass calls them
    (modules the pass never calls are left out); without, the reverse registration order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    leaves = [(n, m) for n, m in model.named_modules()
              if n and _has_direct_params(m) and not any(_has_direct_params(c)
                                                         for c in m.modules() if c is not m)]
    if inputs is None:
        return [n for n, _ in reversed(leaves)]
    order: list[str] = []
    handles = []
    for name, module in leaves:
        def hook(_m: nn.Module, _i: Any, _o: Any, name: str = name) -> None:
            if name not in order:
                order.append(name)
        handles.append(module.register_forward_hook(hook))
    try:
        with eval_mode(model), torch.no_grad():
            model(inputs[:1].to(model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
    unused = [n for n, _ in leaves if n not in order]
    if unused:
        logger.info("randomizable_layers: %s never run in the forward pass; left out", unused)
    return list(reversed(order))


def _resolve_layers(model: nn.Module, layers: Any, inputs: Tensor | None) -> list[str]:
    if layers is None:
        names = randomizable_layers(model, inputs)
        if not names:
            raise ValueError("layers: the model has no module with parameters to randomise")
        return names
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    modules = dict(model.named_modules())
    out: list[str] = []
    for layer in layers:
        if isinstance(layer, nn.Module):
            found = [n for n, m in modules.items() if m is layer]
            if not found:
                raise ValueError("layers: a given module is not part of the model")
            layer = found[0]
        if not isinstance(layer, str):
            raise TypeError(f"layers: expected module names (str) or modules, got "
                            f"{type(layer).__name__}")
        if layer not in modules or layer == "":
            close = difflib.get_close_matches(layer, [n for n in modules if n], n=3, cutoff=0.5)
            hint = f" (did you mean {close}?)" if close else ""
            raise ValueError(f"layers: the model has no module named {layer!r}{hint}")
        module = modules[layer]
        if not any(True for _ in module.parameters()):
            raise ValueError(f"layers: module {layer!r} ({type(module).__name__}) has no "
                             "parameters to re-initialise")
        for sub_name, sub in module.named_modules():
            if _has_direct_params(sub) and not callable(getattr(sub, "reset_parameters", None)):
                where = f"{layer}.{sub_name}" if sub_name else layer
                raise ValueError(f"layers: module {where!r} ({type(sub).__name__}) has "
                                 "parameters but no reset_parameters() to re-initialise them")
        if layer in out:
            raise ValueError(f"layers: {layer!r} is listed twice")
        for other in out:
            if layer.startswith(other + ".") or other.startswith(layer + "."):
                raise ValueError(f"layers: {layer!r} and {other!r} overlap (one contains the "
                                 "other)")
        out.append(layer)
    if not out:
        raise ValueError("layers: expected at least one layer, got none")
    return out


def _layer_seed(seed: int, name: str) -> int:
    return zlib.crc32(f"{int(seed)}:{name}".encode()) & 0x7FFFFFFF


def reinitialize(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module`` in place: every submodule that owns parameters calls its own
    ``reset_parameters()`` (BatchNorm also resets its running statistics), with the global RNG
    seeded by ``seed`` inside ``torch.random.fork_rng``, so the caller's RNG state is untouched
    and the same seed gives the same weights."""
    devices = sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(int(seed))
        for sub in module.modules():
            if _has_direct_params(sub):
                sub.reset_parameters()


def randomized_models(
    model: nn.Module,
    layers: Sequence[str] | None = None,
    mode: str = "cascading",
    seed: int = 0,
    inputs: Tensor | None = None,
) -> Iterator[tuple[int, str, nn.Module]]:
    """Yield ``(step, layer, model copy)``: step 0 is an unchanged copy of ``model``; in
    ``"cascading"`` mode step k has ``layers[:k]`` re-initialised (outermost first, as listed),
    in ``"independent"`` mode only ``layers[k - 1]``. Each layer's weights come from
    :func:`reinitialize` with a seed derived from ``(seed, layer name)``, so a layer gets the
    same new weights in both modes. ``model`` itself is never changed; copies are in eval mode.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {list(MODES)}, got {mode!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    names = _resolve_layers(model, layers, inputs)
    work = copy.deepcopy(model).eval()
    yield 0, ORIGINAL, copy.deepcopy(work)
    for k, name in enumerate(names, start=1):
        if mode == "independent":
            work = copy.deepcopy(model).eval()
        reinitialize(work.get_submodule(name), _layer_seed(seed, name))
        yield k, name, copy.deepcopy(work) if mode == "cascading" else work


# --------------------------------------------------------------------------- the check


@dataclass(frozen=True, eq=False)
class RandomizationResult:
    """Everything a randomisation run produced.

    ``maps[explainer]`` is ``(S + 1, N, H, W)`` for images or ``(S + 1, N, T)`` for text (step 0
    = the trained model; NaN where the explainer failed); ``mask`` ``(N, T)`` marks non-padding
    tokens (None for images); ``structure`` is each input's own pattern -- ``Σ_c |x_c|`` per
    pixel, or the token embedding norm ``‖e_t‖`` of the trained model -- that an input
    multiplier imprints on a map; ``records`` holds one row per input, step, explainer and
    measure (see :meth:`to_dataframe`).
    """

    mode: str
    modality: str
    layers: tuple[str, ...]
    explainers: tuple[str, ...]
    multiplies_by_input: dict[str, bool | None]
    measures: tuple[str, ...]
    maps: dict[str, Tensor] = field(repr=False)
    mask: Tensor | None = field(repr=False)
    structure: Tensor | None = field(repr=False)
    targets: Tensor = field(repr=False)
    errors: dict[tuple[int, str], str] = field(repr=False)
    records: pd.DataFrame = field(repr=False)

    @property
    def steps(self) -> list[str]:
        """Step labels: ``"(original)"`` then the layer randomised at each step."""
        return [ORIGINAL, *self.layers]

    def to_dataframe(self, aggregate: bool = True) -> pd.DataFrame:
        """``aggregate=True``: one row per (step, explainer, measure) with ``similarity`` = mean
        over the inputs where it is defined, ``std`` (sample std, ddof=1), ``count`` (inputs
        with a value), ``n_nan`` and ``reason`` (why values are NaN, with counts).
        ``aggregate=False``: one row per input (``input`` column) with its ``reason``."""
        if not aggregate:
            return self.records.copy()
        return _aggregate(self.records)


def _aggregate(records: pd.DataFrame) -> pd.DataFrame:
    keys = ["mode", "step", "layer", "explainer", "multiplies_by_input", "measure"]
    rows = []
    for key, group in records.groupby(keys, sort=False, dropna=False):
        values = group["similarity"].to_numpy(dtype=np.float64)
        ok = np.isfinite(values)
        reasons = group.loc[~ok, "reason"].value_counts()
        rows.append({
            **dict(zip(keys, key, strict=True)),
            "similarity": float(values[ok].mean()) if ok.any() else float("nan"),
            "std": float(values[ok].std(ddof=1)) if ok.sum() > 1 else float("nan"),
            "count": int(ok.sum()),
            "n_nan": int((~ok).sum()),
            "reason": "; ".join(f"{r} (x{c})" for r, c in reasons.items()),
        })
    return pd.DataFrame(rows)


def _check_measures(measures: Any, text: bool) -> tuple[str, ...]:
    allowed = TEXT_MEASURES if text else IMAGE_MEASURES
    if measures is None:
        return tuple(allowed)
    if isinstance(measures, str):
        measures = [measures]
    out = tuple(measures)
    bad = [m for m in out if m not in allowed]
    if bad or not out:
        extra = " (SSIM and HOG compare images; text has rank correlations only)" if text else ""
        raise ValueError(f"measures: expected names from {list(allowed)}{extra}, got {bad or out}")
    return out


def _explain_batched(fn: Any, model: nn.Module, x: Tensor, target: Tensor,
                     batch_size: int | None) -> Tensor:
    bs = batch_size or x.shape[0]
    parts = []
    for s in range(0, x.shape[0], bs):
        out = fn(model, x[s:s + bs], target[s:s + bs])
        if not isinstance(out, Tensor):
            raise TypeError(f"explainer: expected a tensor, got {type(out).__name__}")
        parts.append(out.detach().float().cpu())
    return torch.cat(parts)


def _structure(model: nn.Module, x: Tensor, text: bool, embedding: Any) -> Tensor | None:
    if not text:
        return x.detach().abs().sum(dim=1).float().cpu()
    try:
        layer = _embedding_layer(model, embedding)
        with torch.no_grad():
            emb = layer(x.to(model_device(model)))
        return emb.norm(dim=-1).float().cpu()
    except Exception as err:  # noqa: BLE001 - the structure is an optional diagnostic
        logger.info("no token-embedding norms for the input-structure diagnostic: %s", err)
        return None


def run_randomization(
    model: nn.Module,
    inputs: Tensor,
    explainers: Any,
    mode: str = "cascading",
    layers: Sequence[str] | None = None,
    target: int | Sequence[int] | Tensor | None = None,
    seed: int = 0,
    measures: Sequence[str] | None = None,
    *,
    pad_id: int = 0,
    embedding: str | None = None,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RandomizationResult:
    """Run the model-parameter randomisation test and keep every map.

    Args:
        model: classifier returning logits; analysed in eval mode and never changed (each step
            works on a deep copy).
        inputs: images ``(N, C, H, W)`` float, or token ids ``(N, T)`` int for text models (with
            an embedding layer, ``model.embedding`` or ``embedding=``; ``pad_id`` positions are
            excluded from every similarity).
        explainers: images: registry names, callables ``(model, x, target) -> (N, H, W)`` or a
            dict of them (see ``resolve_explainers``); text: names from ``TEXT_EXPLAINERS``,
            :func:`text_explainer` objects or callables ``(model, ids, target) -> (N, T)``.
        mode: ``"cascading"`` (cumulative, from the logits down) or ``"independent"``.
        layers: module names, outermost first; default :func:`randomizable_layers`. A container
            (e.g. a residual block) re-initialises all its parameterised submodules at once.
        target: the class explained at every step; None -> the trained model's prediction.
        seed: seeds the re-initialisation (see :func:`randomized_models`).
        measures: images ``("spearman_abs", "spearman", "ssim", "hog")``, text
            ``("spearman_abs", "spearman")`` (the defaults).
        batch_size: inputs per explainer call.
        progress: ``callable(done, total)`` after each step.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {list(MODES)}, got {mode!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"batch_size: expected None or a positive int, got {batch_size!r}")
    text = _is_token_ids(inputs)
    x = _check_token_ids(inputs) if text else check_inputs(model, inputs)
    x = x.detach().to(model_device(model))
    names = _check_measures(measures, text)
    fns = _resolve(explainers, text, pad_id, embedding)
    flags = {name: _multiplier_flag(fn) for name, fn in fns.items()}
    layer_names = _resolve_layers(model, layers, x)
    mask = (x != pad_id).cpu() if text else None
    with eval_mode(model), torch.no_grad():
        logits = as_logits(model(x))
    if logits.dim() != 2:
        raise ValueError(f"model output: expected logits (N, num_classes), got "
                         f"{tuple(logits.shape)}")
    targets = logits.argmax(dim=1) if target is None else resolve_targets(
        target, x.shape[0], logits.shape[1]).to(x.device)
    structure = _structure(model, x, text, embedding)
    maps: dict[str, list[Tensor]] = {name: [] for name in fns}
    errors: dict[tuple[int, str], str] = {}
    total = len(layer_names) + 1
    for step, _layer, step_model in randomized_models(model, layer_names, mode, seed):
        for name, fn in fns.items():
            try:
                m = _explain_batched(fn, step_model, x, targets, batch_size)
            except Exception as err:  # noqa: BLE001 - recorded as NaN with its reason
                if step == 0:
                    raise
                logger.warning("explainer %r failed at step %d: %s", name, step, err)
                errors[(step, name)] = f"explainer failed: {type(err).__name__}: {err}"
                m = torch.full_like(maps[name][0], float("nan"))
            if step == 0:
                expected = tuple(x.shape) if text else (x.shape[0], *x.shape[2:])
                if tuple(m.shape) != expected:
                    raise ValueError(f"explainer {name!r}: expected maps of shape {expected}, "
                                     f"got {tuple(m.shape)}")
            maps[name].append(m)
        if progress is not None:
            progress(step + 1, total)
    stacked = {name: torch.stack(v) for name, v in maps.items()}
    records = _records(stacked, layer_names, mode, flags, names, mask, errors)
    return RandomizationResult(
        mode=mode, modality="text" if text else "image", layers=tuple(layer_names),
        explainers=tuple(fns), multiplies_by_input=flags, measures=names, maps=stacked,
        mask=mask, structure=structure, targets=targets.cpu(), errors=errors, records=records)


def _records(maps: dict[str, Tensor], layers: Sequence[str], mode: str,
             flags: Mapping[str, bool | None], measures: Sequence[str], mask: Tensor | None,
             errors: Mapping[tuple[int, str], str]) -> pd.DataFrame:
    frames = []
    steps = [ORIGINAL, *layers]
    for name, stack in maps.items():
        ref = stack[0].numpy()
        n = ref.shape[0]
        for step, layer in enumerate(steps):
            cur = stack[step].numpy()
            for measure in measures:
                values, reasons = compare_maps(ref, cur, measure,
                                               None if mask is None else mask.numpy())
                if (step, name) in errors:
                    reasons = [errors[(step, name)]] * n
                frames.append(pd.DataFrame({
                    "mode": mode, "step": step, "layer": layer, "explainer": name,
                    "multiplies_by_input": flags[name], "measure": measure,
                    "input": np.arange(n), "similarity": values, "reason": reasons,
                }))
    return pd.concat(frames, ignore_index=True)


def randomization_check(
    model: nn.Module,
    inputs: Tensor,
    explainers: Any,
    mode: str = "cascading",
    layers: Sequence[str] | None = None,
    target: int | Sequence[int] | Tensor | None = None,
    seed: int = 0,
    measures: Sequence[str] | None = None,
    *,
    aggregate: bool = True,
    **kwargs: Any,
) -> pd.DataFrame:
    """Similarity between each explainer's map on the trained model and on the randomised
    models (Adebayo et al. 2018), as a table.

    Columns: ``mode, step, layer, explainer, multiplies_by_input, measure, similarity`` and,
    aggregated (default), ``std, count, n_nan, reason`` -- the mean and sample std over the
    inputs where the similarity is defined, how many there are, how many are NaN and why
    (non-finite map, constant map, all padding, explainer failed on the randomised model);
    with ``aggregate=False`` one row per input (``input``, ``similarity``, ``reason``).
    ``step`` 0 / ``layer`` ``"(original)"`` is the trained model (similarity 1); step k names the
    layer re-initialised at that step. Arguments as in :func:`run_randomization` (``pad_id``,
    ``embedding``, ``batch_size``, ``progress`` pass through ``kwargs``).
    """
    result = run_randomization(model, inputs, explainers, mode, layers, target, seed, measures,
                               **kwargs)
    return result.to_dataframe(aggregate=aggregate)


# --------------------------------------------------------------------------- input multiplier


def input_multiplier_summary(
    result: RandomizationResult,
    measure: str = "spearman_abs",
    step: int = -1,
) -> pd.DataFrame:
    """Compare methods with and without an input multiplier at one step of the cascade
    (default: the last, fully randomised for the default layers).

    One row per explainer: ``multiplies_by_input``, ``similarity`` (mean ``measure`` between the
    trained and the randomised map) with ``std`` and ``count``, ``mean_over_steps`` (mean over
    steps 1..S, an area under the cascade curve), and ``input_structure`` / ``structure_std``:
    the mean Spearman correlation of ``|map|`` at that step with the input's own structure
    (``Σ_c |x_c|`` per pixel; ``‖e_t‖`` per non-padding token) -- high values mean the map shows
    the input, whatever the weights (Kokhlikyan et al., arXiv:2106.07475).
    """
    if not isinstance(result, RandomizationResult):
        raise TypeError(f"result: expected a RandomizationResult (run_randomization), got "
                        f"{type(result).__name__}")
    if measure not in result.measures:
        raise ValueError(f"measure: expected one of {list(result.measures)}, got {measure!r}")
    n_steps = len(result.layers)
    k = step if step >= 0 else n_steps + 1 + step
    if not 0 <= k <= n_steps:
        raise ValueError(f"step: expected an index in [-{n_steps + 1}, {n_steps}], got {step}")
    table = result.records[result.records.measure == measure]
    rows = []
    for name in result.explainers:
        part = table[table.explainer == name]
        at = part[part.step == k].similarity.to_numpy(dtype=np.float64)
        ok = np.isfinite(at)
        later = part[part.step >= 1].groupby("step").similarity.mean()
        row = {
            "explainer": name, "multiplies_by_input": result.multiplies_by_input[name],
            "step": k, "layer": result.steps[k],
            "similarity": float(at[ok].mean()) if ok.any() else float("nan"),
            "std": float(at[ok].std(ddof=1)) if ok.sum() > 1 else float("nan"),
            "count": int(ok.sum()),
            "mean_over_steps": float(later.mean()) if len(later) else float("nan"),
        }
        if result.structure is not None:
            corr, _ = spearman(result.maps[name][k].numpy(), result.structure.numpy(),
                               absolute=True,
                               mask=None if result.mask is None else result.mask.numpy())
            good = np.isfinite(corr)
            row["input_structure"] = float(corr[good].mean()) if good.any() else float("nan")
            row["structure_std"] = float(corr[good].std(ddof=1)) if good.sum() > 1 \
                else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- smoothing metrics


@contextlib.contextmanager
def _replace_output(layer: nn.Module, value: Tensor) -> Iterator[None]:
    handle = layer.register_forward_hook(lambda _m, _i, _o: value)
    try:
        yield
    finally:
        handle.remove()


def text_infidelity(
    model: nn.Module,
    token_ids: Tensor,
    scores: Tensor,
    target: int | Sequence[int] | Tensor | None = None,
    *,
    radius: float = 0.1,
    n_samples: int = 10,
    normalize: bool = True,
    seed: int = 0,
    pad_id: int = 0,
    embedding: str | None = None,
) -> Tensor:
    """Infidelity (Yeh et al., NeurIPS 2019) of token scores ``(N, T)``, lower is better:
    ``E_ε[(Σ_t s_t ε_t - (f(e) - f(e - ε ⊙ (e - b))))²]`` with ``ε_t ~ N(0, radius²)`` per
    non-padding token, ``e`` the token embeddings and ``b`` the padding token's embedding.

    Each token's embedding moves a random fraction ``ε_t`` towards the padding baseline, and the
    score is read as that token's attribution relative to the baseline -- Captum's
    ``multiply_by_inputs`` convention (``I / (x - b)``) at the token level, the one under which
    IG and input x gradient are exact to first order. ``normalize`` rescales the scores by Yeh et
    al.'s optimal β (so only their pattern matters, not their scale). Returns ``(N,)``."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples: expected an int >= 1, got {n_samples!r}")
    if not radius >= 0 or not math.isfinite(radius):
        raise ValueError(f"radius: expected a finite number >= 0, got {radius!r}")
    ids = _check_token_ids(token_ids).to(model_device(model))
    s = torch.as_tensor(scores).to(ids.device).float()
    if tuple(s.shape) != tuple(ids.shape):
        raise ValueError(f"scores: expected shape {tuple(ids.shape)}, got {tuple(s.shape)}")
    layer = _embedding_layer(model, embedding)
    mask = (ids != pad_id).float()
    gen = torch.Generator().manual_seed(int(seed))
    forward = LogitsModule(model)
    with eval_mode(model), torch.no_grad():
        emb = layer(ids)
        base = layer(torch.full_like(ids, pad_id))
        logits = forward(ids)
        t = logits.argmax(dim=1) if target is None else resolve_targets(
            target, ids.shape[0], logits.shape[1]).to(ids.device)
        f0 = logits.gather(1, t.view(-1, 1))[:, 0]
        dots, deltas = [], []
        for _ in range(n_samples):
            eps = torch.randn(ids.shape, generator=gen).to(emb) * radius * mask
            with _replace_output(layer, emb - eps[..., None] * (emb - base)):
                f1 = forward(ids).gather(1, t.view(-1, 1))[:, 0]
            dots.append((s * eps).sum(dim=1))
            deltas.append(f0 - f1)
    dot, delta = torch.stack(dots), torch.stack(deltas)  # (samples, N)
    if normalize:
        denom = (dot * dot).mean(dim=0)
        beta = torch.where(denom > 0, (dot * delta).mean(dim=0) / denom.clamp_min(1e-30),
                           torch.zeros_like(denom))
        dot = dot * beta
    return ((dot - delta) ** 2).mean(dim=0).cpu()


def multiplied_perturbation(
    radius: float = 0.1, seed: int = 0, baseline: float | Tensor = 0.0
) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """An infidelity ``perturb_func`` for maps *multiplied by the input* (input x gradient, IG,
    DeepLIFT): draws ``I ~ N(0, radius²)`` and returns ``(I / (x - b), x - I)`` (0 where
    ``x = b``), Captum's ``multiply_by_inputs=True`` convention, so that
    ``<x ⊙ g, I / x> = <g, I>`` (brief §3). Pass full ``(N, C, H, W)`` attributions with it."""
    if not radius >= 0 or not math.isfinite(radius):
        raise ValueError(f"radius: expected a finite number >= 0, got {radius!r}")
    generator = torch.Generator().manual_seed(int(seed))

    def perturb(inputs: Any) -> tuple[Tensor, Tensor]:
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        noise = (torch.randn(x.shape, generator=generator) * radius).to(x)
        diff = x - torch.as_tensor(baseline).to(x)
        scaled = torch.where(diff != 0, noise / torch.where(diff != 0, diff, torch.ones_like(diff)),
                             torch.zeros_like(noise))
        return scaled, x - noise

    return perturb


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
    from .robustness import infidelity, max_sensitivity

    if not isinstance(models, Mapping) or not models:
        raise TypeError("models: expected a non-empty dict {name: nn.Module}")
    text = _is_token_ids(inputs)
    x = _check_token_ids(inputs) if text else inputs
    fns = _resolve(explainers, text, pad_id, embedding)
    rows = []

    def add(model_name: str, name: str, metric: str, values: Tensor) -> None:
        v = values.double().numpy()
        ok = np.isfinite(v)
        rows.append({"model": model_name, "explainer": name, "metric": metric,
                     "mean": float(v[ok].mean()) if ok.any() else float("nan"),
                     "std": float(v[ok].std(ddof=1)) if ok.sum() > 1 else float("nan"),
                     "count": int(ok.sum())})

    for model_name, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"models[{model_name!r}]: expected a torch.nn.Module, got "
                            f"{type(model).__name__}")
        xm = x.to(model_device(model))
        if labels is not None:
            with eval_mode(model), torch.no_grad():
                pred = as_logits(model(xm)).argmax(dim=1).cpu()
            add(model_name, "", "accuracy", (pred == torch.as_tensor(labels)).float())
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
