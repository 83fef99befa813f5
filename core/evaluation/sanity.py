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

Conventions (Adebayo et al. and their code ``adebayoj/sanity_checks_saliency``): the cascade
starts at the logits layer and moves towards the input, one more layer per step; a layer is
re-initialised by its own initialiser (here ``reset_parameters()``, torch's default init, seeded
per layer), biases included. BatchNorm running statistics are reset too; their code resets
trainable variables only and keeps the moving statistics. Each randomised model explains the
same target as the trained one (its prediction by default). Similarity measures and their
normalisation: :mod:`.similarity`.

- :func:`randomization_check` -> a ``pandas.DataFrame`` (aggregated, or one row per input);
  :func:`run_randomization` -> :class:`RandomizationResult` with the maps of every step.
- :func:`randomized_models` yields the re-initialised copies; :func:`randomizable_layers` lists
  the default layers, outermost first.
- :func:`input_multiplier_summary`: methods with and without an input multiplier compared at the
  end of the cascade, with the correlation of each map with the input's own structure.

Token-level explainers (``text_explainer``) are part of the explainer contract in
:mod:`visloupe.core.attribution.text`; the re-initialised copies come from model surgery
(:func:`visloupe.core.models.randomized_copies`); ``smoothing_check`` lives in
:mod:`.smoothing` and ``text_infidelity`` in :mod:`.robustness`.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..attribution import (
    Explainer,
    TextExplainer,
    check_inputs,
    check_token_ids,
    embedding_layer,
    is_token_ids,
    method_spec,
    resolve_explainers,
    resolve_targets,
    resolve_text_explainers,
)
from ..checks import check_batch_size, check_bool, check_module, check_progress, check_seed
from ..models.adapter import check_model, eval_mode, model_device, model_dtype
from ..models.adapter import logits as model_logits
from ..models.surgery import RANDOMIZATION_MODES as MODES
from ..models.surgery import has_own_parameters as _has_direct_params
from ..models.surgery import randomized_copies
from .similarity import IMAGE_MEASURES, TEXT_MEASURES, compare_maps, spearman

__all__ = [
    "MODES",
    "RandomizationResult",
    "aggregate_records",
    "input_multiplier_summary",
    "randomizable_layers",
    "randomization_check",
    "randomized_models",
    "run_randomization",
]

logger = logging.getLogger(__name__)

ORIGINAL = "(original)"


def _multiplier_flag(explainer: Any) -> bool | None:
    if isinstance(explainer, TextExplainer):
        return explainer.multiplies_by_input
    if isinstance(explainer, Explainer):
        if explainer.method is not None:
            return method_spec(explainer.method).multiplies_by_input
        return getattr(explainer.fn, "multiplies_by_input", None)
    return getattr(explainer, "multiplies_by_input", None)


def _resolve(explainers: Any, text: bool, pad_id: int, embedding: Any) -> dict[str, Any]:
    """``{name: explainer}``: the image or the text side of the explainer contract."""
    if text:
        return resolve_text_explainers(explainers, pad_id=pad_id, embedding=embedding)
    return dict(resolve_explainers(explainers))


# --------------------------------------------------------------------------- layers


def randomizable_layers(model: nn.Module, inputs: Tensor | None = None) -> list[str]:
    """Names of the leaf modules that own parameters, outermost (closest to the logits) first.

    With ``inputs`` the order is the reverse of the order in which one forward pass calls them;
    modules the pass never calls, or whose outputs never reach the logits (an auxiliary head
    computed and dropped: no gradient path, and noise added to its output changes no logit),
    are left out -- randomising them would change nothing and fake an "explanation unchanged"
    step. Without ``inputs``, the reverse registration order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    leaves = [(n, m) for n, m in model.named_modules()
              if n and _has_direct_params(m) and not any(_has_direct_params(c)
                                                         for c in m.modules() if c is not m)]
    if inputs is None:
        return [n for n, _ in reversed(leaves)]
    order: list[str] = []
    outputs: dict[str, list[Tensor]] = {}
    handles = []
    for name, module in leaves:
        def hook(_m: nn.Module, _i: Any, out: Any, name: str = name) -> None:
            if name not in order:
                order.append(name)
            outputs.setdefault(name, []).extend(_grad_tensors(out))
        handles.append(module.register_forward_hook(hook))
    if isinstance(inputs, Tensor) and inputs.dim() == 4:  # images: the explainers' checks
        inputs = check_inputs(model, inputs)
    x = inputs[:1].to(model_device(model))
    if x.is_floating_point():  # outputs join the graph even if weights are frozen
        x = x.detach().to(model_dtype(model)).requires_grad_(True)
    try:
        with eval_mode(model), torch.enable_grad():
            logits = model_logits(model, x)
            feeding = _feeding_logits(logits, outputs)
    finally:
        for handle in handles:
            handle.remove()
    unused = [n for n, _ in leaves if n not in order]
    if unused:
        logger.info("randomizable_layers: %s never run in the forward pass; left out", unused)
    modules = dict(leaves)
    for name in [n for n in order if n not in feeding]:
        # no gradient path is not proof: a detached probe, an argmax router or a hard mask
        # still changes the logits; drop a layer only if changing its output changes nothing
        if _changes_logits(model, x.detach(), modules[name], logits.detach()):
            feeding.add(name)
    dropped = [n for n in order if n not in feeding]
    if dropped:
        logger.warning("randomizable_layers: %s run but do not reach the logits; left out",
                       dropped)
    return [n for n in reversed(order) if n in feeding]


def _changes_logits(model: nn.Module, x: Tensor, module: nn.Module, logits: Tensor) -> bool:
    """Whether adding seeded noise to ``module``'s (first floating) output changes the logits
    of ``x``; an output without a floating tensor counts as a change (unknown)."""
    seen = {"perturbed": False}

    def perturb(_m: nn.Module, _i: Any, out: Any) -> Any:
        if isinstance(out, Tensor) and out.is_floating_point():
            seen["perturbed"] = True
            gen = torch.Generator().manual_seed(0)
            noise = torch.randn(out.shape, generator=gen, dtype=out.dtype).to(out.device)
            return out + noise * (1.0 + out.detach().abs().mean())
        return None

    handle = module.register_forward_hook(perturb)
    try:
        with eval_mode(model), torch.no_grad():
            changed = model_logits(model, x)
    finally:
        handle.remove()
    return not seen["perturbed"] or not torch.equal(changed, logits)


def _grad_tensors(out: Any) -> list[Tensor]:
    """The tensors in a module's output that are part of the autograd graph."""
    if isinstance(out, Tensor):
        return [out] if out.requires_grad else []
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in _grad_tensors(item)]
    if isinstance(out, Mapping):
        return [t for item in out.values() for t in _grad_tensors(item)]
    return []


def _feeding_logits(logits: Tensor, outputs: Mapping[str, list[Tensor]]) -> set[str]:
    """Names whose outputs the logits depend on (autograd reaches them). A module whose output
    is outside the graph (integer inputs, no parameters needing grad) is kept: unknown."""
    names = [n for n, ts in outputs.items() if ts]
    keep = {n for n, ts in outputs.items() if not ts}
    if not names or not logits.requires_grad:
        return keep | set(names)
    flat = [t for n in names for t in outputs[n]]
    grads = torch.autograd.grad(logits.sum(), flat, allow_unused=True)
    k = 0
    for n in names:
        m = len(outputs[n])
        if any(g is not None for g in grads[k:k + m]):
            keep.add(n)
        k += m
    return keep


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


def randomized_models(
    model: nn.Module,
    layers: Sequence[str] | None = None,
    mode: str = "cascading",
    *,
    seed: int = 0,
    inputs: Tensor | None = None,
) -> Iterator[tuple[int, str, nn.Module]]:
    """Yield ``(step, layer, model copy)``: step 0 is an unchanged copy of ``model``; in
    ``"cascading"`` mode step k has ``layers[:k]`` re-initialised (outermost first, as listed),
    in ``"independent"`` mode only ``layers[k - 1]``. ``layers`` are checked and defaulted here
    (:func:`randomizable_layers`); the copies come from
    :func:`visloupe.core.models.randomized_copies` (each layer seeded by ``(seed, layer name)``,
    so it gets the same new weights in both modes). ``model`` itself is never changed; copies
    are in eval mode.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {list(MODES)}, got {mode!r}")
    check_module(model)
    names = _resolve_layers(model, layers, inputs)
    yield from randomized_copies(model, names, mode, seed=seed)


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
        return aggregate_records(self.records)


def aggregate_records(records: pd.DataFrame) -> pd.DataFrame:
    """Per-input records (``RandomizationResult.to_dataframe(aggregate=False)``, possibly
    concatenated over several runs on disjoint inputs, e.g. the shards of a job) aggregated as
    :meth:`RandomizationResult.to_dataframe` does: mean, std, count, n_nan, reason."""
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
        out = out.detach().cpu()  # at least float32; float64 maps stay float64
        parts.append(out.to(torch.promote_types(out.dtype, torch.float32)))
    return torch.cat(parts)


def _structure(model: nn.Module, x: Tensor, text: bool, embedding: Any) -> Tensor | None:
    if not text:
        return x.detach().abs().sum(dim=1).float().cpu()
    try:
        layer = embedding_layer(model, embedding)
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
    *,
    mode: str = "cascading",
    layers: Sequence[str] | None = None,
    target: int | Sequence[int] | Tensor | None = None,
    seed: int = 0,
    measures: Sequence[str] | None = None,
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
    check_model(model)
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {list(MODES)}, got {mode!r}")
    seed = check_seed(seed)
    batch_size = check_batch_size(batch_size)
    check_progress(progress)  # before the work, not after it
    text = is_token_ids(inputs)
    x = check_token_ids(inputs, "inputs") if text else check_inputs(model, inputs)
    x = x.detach().to(model_device(model))
    names = _check_measures(measures, text)
    fns = _resolve(explainers, text, pad_id, embedding)
    flags = {name: _multiplier_flag(fn) for name, fn in fns.items()}
    layer_names = _resolve_layers(model, layers, x)
    mask = (x != pad_id).cpu() if text else None
    with eval_mode(model), torch.no_grad():
        logits = model_logits(model, x)
    if logits.dim() != 2:
        raise ValueError(f"model output: expected logits (N, num_classes), got "
                         f"{tuple(logits.shape)}")
    targets = logits.argmax(dim=1) if target is None else resolve_targets(
        target, x.shape[0], logits.shape[1]).to(x.device)
    structure = _structure(model, x, text, embedding)
    maps: dict[str, list[Tensor]] = {name: [] for name in fns}
    errors: dict[tuple[int, str], str] = {}
    total = len(layer_names) + 1
    for step, _layer, step_model in randomized_models(model, layer_names, mode, seed=seed):
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
    layer re-initialised at that step. The other keyword arguments are
    :func:`run_randomization`'s (``mode``, ``layers``, ``target``, ``seed``, ``measures``,
    ``pad_id``, ``embedding``, ``batch_size``, ``progress``), passed through.
    """
    aggregate = check_bool("aggregate", aggregate)
    result = run_randomization(model, inputs, explainers, **kwargs)
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
