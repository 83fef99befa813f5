"""``explain`` / ``attribute``: one entry point for every registered method, plus the explainer
contract used by the evaluation modules.

The model is analysed in eval mode: every module's ``training`` flag is switched off for the call
and restored afterwards (no copy, no other change; hooks are always removed). Computation runs on
the model's device; results come back on the inputs' device.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..checks import check_batch_size, check_not_preprocess
from ..models.adapter import (
    all_modules,
    check_inputs,
    check_model,
    eval_mode,
    input_size_error,
    logits,
    model_device,
)
from ..models.introspection import DryRunError, LayerProposal, resolve_layer
from .postprocess import (
    REDUCTIONS,
    Postprocess,
    apply_postprocess,
    reduce_channels,
    resolve_postprocess,
    upsample,
)
from .registry import MethodSpec, method_spec

__all__ = [
    "Explainer",
    "LogitsModule",
    "attribute",
    "check_batch_size",
    "check_inputs",
    "explain",
    "explain_predicted",
    "image_seed",
    "resolve_baseline",
    "resolve_explainer",
    "resolve_explainers",
    "resolve_targets",
]

logger = logging.getLogger(__name__)

_EXPLAIN_KWARGS = ("baseline", "layer", "batch_size", "reduce")


class LogitsModule(nn.Module):
    """Wraps a model so that its forward returns logits (``as_logits``) -- what Captum needs.
    Holding the model as a child does not modify it.

    With ``targets`` every forward also checks that the logits are ``(N, K)`` with every target
    below ``K``, so an out-of-range target fails with a clear message at the first forward pass
    inside a method, without an extra forward pass to count the classes."""

    def __init__(self, model: nn.Module, targets: Sequence[int] = ()) -> None:
        super().__init__()
        self.model = model
        self.targets = sorted(set(int(t) for t in targets))

    def forward(self, x: Tensor) -> Tensor:
        out = logits(self.model, x)
        if self.targets:
            k = _num_classes(out)
            if self.targets[-1] >= k:
                raise ValueError(
                    f"target: expected class indices in [0, {k - 1}] (the model has {k} "
                    f"outputs), got {[t for t in self.targets if t >= k]}"
                )
        return out


class PredictedLogit(nn.Module):
    """Wraps a model so that its forward returns the top logit ``(N, 1)`` and records the
    predicted classes in ``predicted``. For a single-pass method, explaining output 0 of this
    wrapper is explaining the predicted class (the gradient of a max is the gradient of the
    arg-max logit), with one forward pass instead of a prediction pass plus a method pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.predicted: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        out = logits(self.model, x)
        _num_classes(out)
        top, index = out.max(dim=1, keepdim=True)
        self.predicted = index[:, 0].detach()
        return top


# --------------------------------------------------------------------------- validation


def _num_classes(out: Tensor) -> int:
    if out.dim() != 2:
        raise ValueError(
            f"model output: expected logits of shape (N, num_classes), got {tuple(out.shape)}"
        )
    return int(out.shape[1])


def resolve_targets(target: Any, n: int, num_classes: int | None = None) -> Tensor:
    """Turn ``target`` (int, sequence, array or tensor) into ``LongTensor (n,)`` of indices
    ``>= 0`` and, when ``num_classes`` is given, ``< num_classes``; None is not handled here (it
    means "predicted class")."""
    if isinstance(target, bool):
        raise TypeError(f"target: expected an int class index, got {target!r}")
    if isinstance(target, (int, np.integer)):
        values = torch.full((n,), int(target), dtype=torch.long)
    else:
        if isinstance(target, np.ndarray):
            target = torch.from_numpy(target)
        elif isinstance(target, Sequence) and not isinstance(target, str):
            if not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool)
                       for t in target):
                raise TypeError(f"target: expected a sequence of ints, got {list(target)!r}")
            target = torch.tensor([int(t) for t in target], dtype=torch.long)
        if not isinstance(target, Tensor):
            raise TypeError(
                f"target: expected None, an int, a sequence of ints or a tensor, got "
                f"{type(target).__name__}"
            )
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(f"target: expected integer class indices, got dtype {target.dtype}")
        if target.dim() > 1:
            raise ValueError(f"target: expected an int or a 1-D sequence of {n} class indices, "
                             f"got shape {tuple(target.shape)}")
        values = target.detach().to("cpu", torch.long).reshape(-1)
        if target.dim() == 0:
            values = values.expand(n)
        elif values.numel() != n:
            raise ValueError(
                f"target: expected one class index per image ({n}), got {values.numel()}"
            )
    if num_classes is None:
        # a Python min over a few ints is cheaper than two tensor ops and a sync
        if values.numel() and min(values.tolist()) < 0:
            raise ValueError(
                f"target: expected non-negative class indices, got "
                f"{sorted(set(values[values < 0].tolist()))}"
            )
        return values
    bad = (values < 0) | (values >= num_classes)
    if bad.any():
        raise ValueError(
            f"target: expected class indices in [0, {num_classes - 1}] (the model has "
            f"{num_classes} outputs), got {sorted(set(values[bad].tolist()))}"
        )
    return values


def resolve_baseline(baseline: Any, x: Tensor) -> Tensor:
    """``(N, C, H, W)`` baseline from None/"zeros", "mean" (per-image channel means), a number,
    or a tensor of shape (C, H, W), (1, C, H, W) or (N, C, H, W)."""
    if baseline is None or (isinstance(baseline, str) and baseline == "zeros"):
        return torch.zeros_like(x)
    if isinstance(baseline, str):
        if baseline == "mean":
            return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()
        raise ValueError(
            f"baseline: expected None, 'zeros', 'mean', a number or a tensor, got {baseline!r}"
        )
    if isinstance(baseline, (int, float, np.floating, np.integer)) and \
            not isinstance(baseline, (bool, np.bool_)):
        if not math.isfinite(float(baseline)):
            raise ValueError(f"baseline: expected a finite number, got {baseline!r}")
        return torch.full_like(x, float(baseline))
    if isinstance(baseline, np.ndarray):
        baseline = torch.from_numpy(baseline)
    if not isinstance(baseline, Tensor):
        raise TypeError(f"baseline: expected None, a string, a number or a tensor, got "
                        f"{type(baseline).__name__}")
    if not baseline.is_floating_point():
        raise TypeError(f"baseline: expected a float tensor, got dtype {baseline.dtype}")
    b = baseline.to(device=x.device, dtype=x.dtype)
    if b.dim() == 3:
        b = b.unsqueeze(0)
    same = b.dim() == 4 and tuple(b.shape[1:]) == tuple(x.shape[1:])
    if not same or b.shape[0] not in (1, x.shape[0]):
        raise ValueError(
            f"baseline: expected shape (C, H, W), (1, C, H, W) or (N, C, H, W) = "
            f"{tuple(x.shape)}, got {tuple(baseline.shape)}"
        )
    if not torch.isfinite(b).all():
        bad = int((~torch.isfinite(b)).sum())
        raise ValueError(f"baseline: expected finite values, got {bad} NaN/inf entries")
    return b.expand_as(x).contiguous()


def image_seed(seed: int, image: Tensor) -> int:
    """A 63-bit noise seed from ``seed`` and one image's content (dtype, shape and value bytes,
    hashed with BLAKE2b): the same image gets the same noise whatever batch, position or device
    it comes in, and different images get independent noise."""
    data = image.detach().to("cpu").contiguous()
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{int(seed)}|{data.dtype}|{tuple(data.shape)}|".encode())
    h.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return int.from_bytes(h.digest(), "little") >> 1


# --------------------------------------------------------------------------- entry points


def attribute(
    model: nn.Module,
    inputs: Tensor,
    target: int | Sequence[int] | Tensor | None = None,
    method: str | MethodSpec = "integrated_gradients",
    *,
    baseline: Any = None,
    layer: str | nn.Module | LayerProposal | None = None,
    batch_size: int | None = None,
    **params: Any,
) -> Tensor:
    """Full-shape attributions of ``model`` for ``inputs`` ``(N, C, H, W)``.

    Returns ``(N, C, H, W)`` for per-pixel-per-channel methods, or ``(N, 1, H, W)`` for methods
    whose map is shared by all channels (occlusion, feature ablation, Grad-CAM family), always at
    the input resolution, on the inputs' device. ``target=None`` explains the predicted class.
    ``baseline``: None/"zeros", "mean", a number or a tensor. ``layer`` (Grad-CAM family only): a
    module name, a module, a ``LayerProposal``, or None for the best ``propose_target_layers``.
    ``params`` are the method's parameters (see ``method_spec(method).params``).
    """
    return _attribute(model, inputs, target, method, baseline=baseline, layer=layer,
                      batch_size=batch_size, **params)[0]


def _attribute(
    model: nn.Module,
    inputs: Tensor,
    target: int | Sequence[int] | Tensor | None,
    method: str | MethodSpec,
    *,
    baseline: Any = None,
    layer: str | nn.Module | LayerProposal | None = None,
    batch_size: int | None = None,
    **params: Any,
) -> tuple[Tensor, Tensor]:
    """``attribute`` plus the target classes it explained, ``LongTensor (N,)`` on the CPU."""
    spec = method_spec(method)
    check_model(model)
    resolved = spec.resolve_params(params)
    batch_size = check_batch_size(batch_size)
    x_user = check_inputs(model, inputs)
    out_device = x_user.device
    device = model_device(model)
    x = x_user.detach().to(device)
    # single-pass methods never evaluate a baseline: skip building one they would ignore
    base = None if baseline is None and spec.single_pass else resolve_baseline(baseline, x)
    if layer is not None and not spec.needs_layer:
        raise ValueError(
            f"layer: method {spec.name!r} attributes to the input and takes no layer; layer= "
            f"applies to {[m for m in _layer_methods()]}"
        )
    seed = resolved.pop("seed", 0) if spec.stochastic else None
    n, hw = x.shape[0], (x.shape[2], x.shape[3])
    chunk = batch_size or n
    targets = None
    if target is not None:  # the class count is checked by the wrapper's first forward
        targets = resolve_targets(target, n)
    # predicted-class targets of a single-pass method come from the method's own forward pass
    one_pass = targets is None and spec.single_pass
    forward: LogitsModule | PredictedLogit = (
        PredictedLogit(model) if one_pass
        else LogitsModule(model, targets.tolist() if targets is not None else ()))
    forward.training = False  # the wrapper itself holds no layers
    outputs, explained = [], []
    modules = all_modules(model)
    if spec.caveat is not None:
        message = spec.caveat(modules)
        if message:
            warnings.warn(message, UserWarning, stacklevel=3)
    with eval_mode(model, modules), torch.enable_grad():
        try:
            target_layer = (resolve_layer(model, layer, x.shape[1:], modules)
                            if spec.needs_layer else None)
        except DryRunError as err:  # the shape came from inputs, not from an input_shape=
            cause = err.__cause__
            raise input_size_error(model, x.shape[1:],
                                   f"{type(cause).__name__}: {cause}") from cause
        for start in range(0, n, chunk):
            xc = x[start:start + chunk]
            bc = None if base is None else base[start:start + chunk]
            if one_pass:
                tc = torch.zeros(xc.shape[0], dtype=torch.long, device=device)
            elif targets is None:
                with torch.no_grad():
                    out = forward(xc)
                _num_classes(out)
                tc = out.argmax(dim=1)
            else:
                tc = targets[start:start + chunk].to(device)
            extra: dict[str, Any] = {}
            if spec.stochastic:
                extra["seeds"] = tuple(image_seed(seed, image) for image in xc)
            attr = spec.fn(forward, xc, tc, baseline=bc, layer=target_layer, **resolved, **extra)
            attr = _check_output(spec, attr, xc).detach()  # frees Captum's graph now
            if tuple(attr.shape[-2:]) != hw:
                attr = upsample(attr, hw)
            outputs.append(attr.to(out_device))
            explained.append((forward.predicted if one_pass else tc).cpu())
    if len(outputs) == 1:
        return outputs[0], explained[0]
    return torch.cat(outputs), torch.cat(explained)


def _layer_methods() -> list[str]:
    from .registry import METHODS

    return [name for name, spec in METHODS.items() if spec.needs_layer]


def _check_output(spec: MethodSpec, attr: Any, x: Tensor) -> Tensor:
    if isinstance(attr, tuple) and len(attr) == 1:
        attr = attr[0]
    if not isinstance(attr, Tensor) or attr.dim() != 4 or attr.shape[0] != x.shape[0] or (
        attr.shape[1] not in (1, x.shape[1])
    ):
        got = tuple(attr.shape) if isinstance(attr, Tensor) else type(attr).__name__
        raise ValueError(
            f"method {spec.name!r}: expected attributions (n, C, H, W) or (n, 1, h, w) for "
            f"inputs {tuple(x.shape)}, got {got}"
        )
    # integer attributions take the inputs' dtype (the model's): never a silent float32
    return attr if attr.is_floating_point() else attr.to(x.dtype)


def _check_reduce(reduce: Any) -> None:
    if reduce is not None and reduce not in REDUCTIONS:
        raise ValueError(f"reduce: expected one of {list(REDUCTIONS)} or None, got {reduce!r}")


def _to_maps(attr: Tensor, reduce: str | None, postprocess: Postprocess,
             kind: str | None) -> Tensor:
    """Attributions ``(N, C, H, W)`` -> maps ``(N, H, W)``: reduced over channels (None: the
    PAIR recipe's sum of |.| for ``"pair_grayscale"``, else the signed sum), then scaled."""
    how = resolve_postprocess(postprocess, kind)
    if reduce is None:
        reduce = "abs_sum" if how == "pair_grayscale" else "sum"
    return apply_postprocess(reduce_channels(attr, reduce), how)


def explain(
    model: nn.Module,
    inputs: Tensor,
    target: int | Sequence[int] | Tensor | None = None,
    method: str | MethodSpec = "integrated_gradients",
    *,
    baseline: Any = None,
    layer: str | nn.Module | LayerProposal | None = None,
    batch_size: int | None = None,
    reduce: str | None = None,
    postprocess: Postprocess = None,
    **params: Any,
) -> Tensor:
    """Saliency maps ``(N, H, W)`` at the input resolution, in the model's dtype.

    ``attribute(...)`` reduced over channels with ``reduce`` (``"sum" | "abs_sum" | "max_abs" |
    "l2"``, see ``reduce_channels``; None: ``"sum"``, or ``"abs_sum"`` under the PAIR recipe),
    then scaled per map by ``postprocess`` (see ``postprocess.resolve_postprocess``):

    - None / ``"none"`` (default): the raw maps;
    - ``"minmax"``: min-max into [0, 1] (pytorch-grad-cam's CAM scaling);
    - ``"pair_grayscale"``: PAIR saliency's ``VisualizeImageGrayscale`` (sum of |.| over
      channels, clip at the 99th percentile, [0, 1]);
    - ``"paper"``: the convention of COSE's official code (Daroya, Sun, Maji, "COSE: A
      Consistency-Sensitivity Metric for Saliency on Image Classification", ICCV-W 2023,
      arXiv:2309.10989): min-max for CAM methods, the PAIR recipe for gradient methods (the
      method's ``MethodSpec.map_kind``), min-max for perturbation maps;
    - a callable ``(N, H, W) -> (N, H, W)`` applied after the reduction.
    """
    _check_reduce(reduce)
    kind = method_spec(method).map_kind
    resolve_postprocess(postprocess, kind)  # bad values fail before any model pass
    attr = attribute(model, inputs, target, method, baseline=baseline, layer=layer,
                     batch_size=batch_size, **params)
    return _to_maps(attr, reduce, postprocess, kind)


def explain_predicted(
    model: nn.Module,
    inputs: Tensor,
    method: str | MethodSpec = "integrated_gradients",
    *,
    reduce: str | None = None,
    postprocess: Postprocess = None,
    **kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """Maps ``(N, H, W)`` of the predicted classes and those classes ``LongTensor (N,)`` (CPU).

    Same as ``explain(model, inputs, None, method, ...)`` (``reduce`` and ``postprocess`` as
    there) plus the predictions; for single-pass methods (``method_spec(m).single_pass``:
    gradients, Grad-CAM family) the prediction and the map come from one forward pass, which is
    what makes COSE's many predicted-class maps cheap.
    """
    if "target" in kwargs:
        raise TypeError("target: explain_predicted explains each image's predicted class and "
                        "takes no target; use explain(model, inputs, target, method)")
    _check_reduce(reduce)
    kind = method_spec(method).map_kind
    resolve_postprocess(postprocess, kind)
    attr, predicted = _attribute(model, inputs, None, method, **kwargs)
    return _to_maps(attr, reduce, postprocess, kind), predicted


# --------------------------------------------------------------------------- explainer contract


@dataclass(frozen=True)
class Explainer:
    """A callable ``(model, inputs, target) -> Tensor (N, H, W)``: a registry method with fixed
    keyword arguments, or a user callable whose output shape is checked. ``key`` is hashable
    (for caches).

    ``postprocess`` scales every map it returns (the values of ``explain``'s ``postprocess=``):
    None means *not set*: calls return raw maps, and COSE / ``compare_methods`` apply their own
    ``postprocess=`` (the paper's convention by default); ``"none"`` keeps raw maps there too.
    ``kind`` (``postprocess.MAP_KINDS``) is the registry method's ``map_kind``, or a callable's
    ``map_kind`` attribute (None if it has none: ``"paper"`` then scales by min-max).
    """

    name: str
    method: str | None
    kwargs: tuple[tuple[str, Any], ...] = ()
    fn: Callable[..., Tensor] | None = field(default=None, compare=False)
    postprocess: Postprocess = None

    @property
    def key(self) -> tuple:
        pp = self.postprocess
        return (self.name, self.method, tuple((k, repr(v)) for k, v in self.kwargs),
                id(self.fn) if self.fn is not None else None,
                id(pp) if callable(pp) else pp)

    @property
    def kind(self) -> str | None:
        if self.method is not None:
            return method_spec(self.method).map_kind
        return getattr(self.fn, "map_kind", None)

    def with_postprocess(self, postprocess: Postprocess) -> Explainer:
        """A copy with ``postprocess`` (validated now)."""
        resolve_postprocess(postprocess, self.kind)
        return dataclasses.replace(self, postprocess=postprocess)

    def __call__(self, model: nn.Module, inputs: Tensor, target: Any = None) -> Tensor:
        kwargs = dict(self.kwargs)
        if self.fn is None:
            return explain(model, inputs, target, self.method, postprocess=self.postprocess,
                           **kwargs)
        maps = self._check(self.fn(model, inputs, target, **kwargs), inputs)
        return apply_postprocess(maps, self.postprocess, self.kind)

    def explain_predicted(self, model: nn.Module, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Maps of the predicted classes and those classes (CPU): one forward pass for
        single-pass registry methods; a prediction pass, then the call, otherwise."""
        if self.fn is None:
            return explain_predicted(model, inputs, self.method, postprocess=self.postprocess,
                                     **dict(self.kwargs))
        with eval_mode(model), torch.no_grad():
            out = logits(model, inputs)
            _num_classes(out)
        predicted = out.argmax(dim=1)
        return self(model, inputs, predicted), predicted.cpu()

    def _check(self, maps: Any, inputs: Tensor) -> Tensor:
        if isinstance(maps, Tensor) and maps.dim() == 4 and maps.shape[1] == 1:
            maps = maps[:, 0]
        n, h, w = inputs.shape[0], inputs.shape[-2], inputs.shape[-1]
        if not isinstance(maps, Tensor) or tuple(maps.shape) != (n, h, w):
            got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
            raise ValueError(
                f"explainer {self.name!r}: expected maps of shape (N, H, W) = {(n, h, w)}, "
                f"got {got}"
            )
        return maps


def resolve_explainer(explainer: Any, *, name: str | None = None, **defaults: Any) -> Explainer:
    """Turn a registry name, a ``(name, {params})`` pair, an ``Explainer`` or any callable
    ``(model, inputs, target, **defaults) -> (N, H, W)`` into an ``Explainer``. For registry
    names ``defaults`` are ``explain`` keywords (``baseline``, ``layer``, ``batch_size``,
    ``reduce``) and method parameters, validated now. ``postprocess=`` (any explainer) sets the
    ``Explainer.postprocess`` that scales its maps."""
    if "postprocess" in defaults:
        postprocess = defaults.pop("postprocess")
        return resolve_explainer(explainer, name=name, **defaults).with_postprocess(postprocess)
    if isinstance(explainer, Explainer):
        if defaults:
            merged = {**dict(explainer.kwargs), **defaults}
            return Explainer(name or explainer.name, explainer.method,
                             tuple(merged.items()), explainer.fn, explainer.postprocess)
        return explainer
    if isinstance(explainer, tuple) and len(explainer) == 2 and isinstance(explainer[1], Mapping):
        return resolve_explainer(explainer[0], name=name, **{**defaults, **explainer[1]})
    if isinstance(explainer, (str, MethodSpec)):
        spec = method_spec(explainer)
        params = {k: v for k, v in defaults.items() if k not in _EXPLAIN_KWARGS}
        spec.resolve_params(params)  # fail early on unknown/bad parameters
        _check_reduce(defaults.get("reduce"))
        return Explainer(name or spec.name, spec.name, tuple(defaults.items()))
    if callable(explainer):
        check_not_preprocess("explainer", explainer)
        label = name or getattr(explainer, "__name__", type(explainer).__name__)
        return Explainer(label, None, tuple(defaults.items()), explainer)
    raise TypeError(
        "explainer: expected a registry method name, a (name, params) pair or a callable "
        f"(model, inputs, target) -> (N, H, W), got {type(explainer).__name__}"
    )


def resolve_explainers(explainers: Any, **defaults: Any) -> dict[str, Explainer]:
    """``{display name: Explainer}`` from one explainer, a list of them, or a dict
    ``{display name: explainer}``; repeated names get a numeric suffix."""
    if isinstance(explainers, Mapping):
        items = [(str(k), resolve_explainer(v, name=str(k), **defaults))
                 for k, v in explainers.items()]
    elif isinstance(explainers, (list, tuple)) and not (
        isinstance(explainers, tuple) and len(explainers) == 2
        and isinstance(explainers[1], Mapping)
    ):
        items = [(e.name, e) for e in (resolve_explainer(v, **defaults) for v in explainers)]
    else:
        one = resolve_explainer(explainers, **defaults)
        items = [(one.name, one)]
    if not items:
        raise ValueError("explainers: expected at least one explainer, got none")
    out: dict[str, Explainer] = {}
    for label, value in items:
        key, k = label, 2
        while key in out:
            key, k = f"{label} ({k})", k + 1
        out[key] = value
    return out
