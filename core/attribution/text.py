"""Token attributions for text classifiers, at the embedding layer, rendered as HTML highlights.

Token ids are discrete, so gradients are taken with respect to the embedding layer's output
(Captum's ``LayerIntegratedGradients``; Sundararajan et al., ICML 2017) and summed over the
embedding dimension to give one score per token. The baseline is the all-padding sequence, i.e.
the pad token's embedding at every position -- the zero vector for an ``nn.Embedding`` built with
``padding_idx`` (as the built-in text CNN is). Padding positions get a score of exactly 0 and are
left out of the normalisation. The sanity-check study this supports is Kokhlikyan et al.,
"Investigating sanity checks for saliency maps with image and text classification"
(arXiv:2106.07475).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients
from torch import Tensor, nn

from ..checks import check_int
from ..models.adapter import check_model, eval_mode, model_device
from ..models.adapter import logits as model_logits
from .explain import LogitsModule, resolve_targets

__all__ = [
    "TEXT_EXPLAINERS",
    "TEXT_METHODS",
    "TextExplainer",
    "TokenAttributions",
    "check_token_ids",
    "embedding_layer",
    "is_token_ids",
    "resolve_text_explainers",
    "text_explainer",
    "to_html",
    "token_attributions",
]

logger = logging.getLogger(__name__)

TEXT_METHODS = ("integrated_gradients", "input_x_gradient")

POSITIVE_RGB = (0, 150, 60)   # green: evidence for the target (Captum's text convention)
NEGATIVE_RGB = (210, 30, 30)  # red: evidence against it


@dataclass(frozen=True, eq=False)
class TokenAttributions:
    """Per-token scores of a batch of sequences.

    ``token_ids`` / ``scores`` / ``normalized`` / ``mask`` are ``(N, T)``; ``scores`` are summed
    over the embedding dimension (IG: they sum to ``input_output - baseline_output`` up to the
    quadrature error); ``normalized`` divides by the largest ``|score|`` among the sequence's
    non-padding tokens (``mask``); padding scores are exactly 0. ``tokens`` are the token strings
    (padding included, so positions line up).
    """

    token_ids: Tensor
    tokens: list[list[str]]
    scores: Tensor
    normalized: Tensor
    mask: Tensor
    target: Tensor
    input_output: Tensor
    baseline_output: Tensor
    method: str

    def to_html(self, index: int = 0) -> str:
        """HTML highlights of sequence ``index`` without its padding tokens."""
        if not 0 <= index < self.scores.shape[0]:
            raise IndexError(f"index: expected 0 <= index < {self.scores.shape[0]}, got {index}")
        keep = self.mask[index].tolist()
        tokens = [t for t, k in zip(self.tokens[index], keep, strict=True) if k]
        scores = self.scores[index][self.mask[index]]
        return to_html(tokens, scores)


def is_token_ids(inputs: Any) -> bool:
    """Whether ``inputs`` are token ids (an integer tensor or array), not images."""
    if isinstance(inputs, np.ndarray):
        return bool(np.issubdtype(inputs.dtype, np.integer))
    return isinstance(inputs, Tensor) and not inputs.is_floating_point() and \
        not inputs.is_complex() and inputs.dtype != torch.bool


def check_token_ids(token_ids: Any, name: str = "token_ids") -> Tensor:
    """``LongTensor (N, T)`` from integer ids ``(N, T)`` / ``(T,)`` (tensor, array or
    equal-length lists), else a TypeError/ValueError naming ``name``."""
    if not isinstance(token_ids, Tensor):
        try:
            token_ids = torch.as_tensor(token_ids)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{name}: expected an integer tensor (N, T) or equal-length lists of ints, "
                f"got {type(token_ids).__name__}"
            ) from err
    if token_ids.is_floating_point() or token_ids.dtype == torch.bool or token_ids.is_complex():
        raise TypeError(f"{name}: expected integer token ids, got dtype {token_ids.dtype}")
    if token_ids.dim() == 1:
        token_ids = token_ids.unsqueeze(0)
    if token_ids.dim() != 2 or token_ids.shape[0] == 0 or token_ids.shape[1] == 0:
        raise ValueError(f"{name}: expected token ids of shape (N, T) with N, T > 0, got "
                         f"{tuple(token_ids.shape)}")
    return token_ids.long()


def embedding_layer(model: nn.Module, embedding: Any = None) -> nn.Module:
    """The token-embedding module: ``embedding`` (a module of ``model`` or its qualified name)
    or, by default, ``model.embedding``."""
    if embedding is None:
        layer = getattr(model, "embedding", None)
        if not isinstance(layer, nn.Module):
            raise ValueError(
                "embedding: the model has no `embedding` module; pass embedding= (a module or "
                "its qualified name, e.g. 'encoder.embed_tokens')"
            )
        return layer
    if isinstance(embedding, str):
        try:
            return model.get_submodule(embedding)
        except AttributeError:
            names = [n for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
            raise ValueError(
                f"embedding: no module named {embedding!r}; embedding layers: {names}"
            ) from None
    if isinstance(embedding, nn.Module):
        if not any(m is embedding for m in model.modules()):
            raise ValueError("embedding: the given module is not part of the model")
        return embedding
    raise TypeError(
        f"embedding: expected None, a module or a module name, got {type(embedding).__name__}"
    )


def _token_strings(ids: Tensor, vocab: Any) -> list[list[str]]:
    rows = ids.tolist()
    if vocab is None:
        return [[str(i) for i in row] for row in rows]
    if isinstance(vocab, Mapping):
        return [[str(vocab.get(i, i)) for i in row] for row in rows]
    if isinstance(vocab, Sequence) and not isinstance(vocab, str):
        return [[str(vocab[i]) if 0 <= i < len(vocab) else str(i) for i in row] for row in rows]
    if callable(vocab):
        return [[str(vocab(i)) for i in row] for row in rows]
    raise TypeError(
        f"vocab: expected None, a list, a dict or a callable id -> str, got {type(vocab).__name__}"
    )


def token_attributions(
    model: nn.Module,
    token_ids: Tensor | Sequence[Sequence[int]],
    target: int | Sequence[int] | Tensor | None = None,
    method: str = "integrated_gradients",
    *,
    embedding: nn.Module | str | None = None,
    pad_id: int = 0,
    n_steps: int = 50,
    vocab: Sequence[str] | Mapping[int, str] | Callable[[int], str] | None = None,
    batch_size: int | None = None,
) -> TokenAttributions:
    """Token scores ``(N, T)`` for ``model(token_ids) -> logits`` at its embedding layer.

    Args:
        token_ids: ``LongTensor (N, T)`` (or ``(T,)``), padded with ``pad_id``.
        target: class per sequence; None -> the predicted class.
        method: ``"integrated_gradients"`` (Captum ``LayerIntegratedGradients`` from the
            all-``pad_id`` baseline, Gauss-Legendre with ``n_steps``) or ``"input_x_gradient"``
            (embedding x its gradient, ``LayerGradientXActivation``).
        embedding: the embedding module or its name; default ``model.embedding``.
        vocab: id -> token string (list, dict or callable) for ``tokens``; default ``str(id)``.
        batch_size: IG path points per forward pass (Captum's ``internal_batch_size``).
    """
    if method not in TEXT_METHODS:
        raise ValueError(f"method: expected one of {list(TEXT_METHODS)}, got {method!r}")
    check_int("n_steps", n_steps, 2)
    if isinstance(pad_id, bool) or not isinstance(pad_id, int):
        raise TypeError(f"pad_id: expected an int token id, got {pad_id!r}")
    check_model(model)
    layer = embedding_layer(model, embedding)
    ids_user = check_token_ids(token_ids)
    device = model_device(model)
    ids = ids_user.to(device)
    baseline = torch.full_like(ids, pad_id)
    mask = ids != pad_id
    forward = LogitsModule(model)
    with eval_mode(model):
        with torch.no_grad():
            logits = model_logits(model, ids)
            base_logits = model_logits(model, baseline, "baseline")
        if logits.dim() != 2:
            raise ValueError(f"model output: expected logits (N, num_classes), got "
                             f"{tuple(logits.shape)}")
        if target is None:
            target_t = logits.argmax(dim=1)
        else:
            target_t = resolve_targets(target, ids.shape[0], logits.shape[1]).to(device)
        with torch.enable_grad():
            if method == "integrated_gradients":
                attr = LayerIntegratedGradients(forward, layer).attribute(
                    ids, baselines=baseline, target=target_t, n_steps=n_steps,
                    internal_batch_size=batch_size,
                )
            else:
                attr = LayerGradientXActivation(forward, layer).attribute(ids, target=target_t)
    if isinstance(attr, tuple):
        attr = attr[0]
    if attr.dim() != 3 or attr.shape[:2] != ids.shape:
        raise ValueError(
            f"embedding: expected the layer's output to be (N, T, D) = {tuple(ids.shape)} + (D,), "
            f"got {tuple(attr.shape)}; pass the token embedding layer as embedding="
        )
    scores = attr.detach().sum(dim=2)
    scores = torch.where(mask, scores, torch.zeros_like(scores))
    peak = scores.abs().amax(dim=1, keepdim=True)
    normalized = torch.where(peak > 0, scores / peak.clamp(min=torch.finfo(scores.dtype).tiny),
                             torch.zeros_like(scores))
    rows = torch.arange(ids.shape[0], device=device)
    out = ids_user.device
    return TokenAttributions(
        token_ids=ids_user, tokens=_token_strings(ids_user, vocab), scores=scores.to(out),
        normalized=normalized.to(out), mask=mask.to(out), target=target_t.to(out),
        input_output=logits[rows, target_t].to(out),
        baseline_output=base_logits[rows, target_t].to(out), method=method,
    )


def to_html(tokens: Sequence[str], scores: Sequence[float] | Tensor,
            max_abs: float | None = None) -> str:
    """Tokens as highlighted ``<span>``s: green for positive, red for negative scores, opacity
    ``|score| / max_abs`` (default: the largest ``|score|``). Tokens are HTML-escaped; each span's
    ``title`` shows the score."""
    values = [float(s) for s in (scores.tolist() if isinstance(scores, Tensor) else scores)]
    if len(values) != len(tokens):
        raise ValueError(f"scores: expected one score per token ({len(tokens)}), got "
                         f"{len(values)}")
    if max_abs is None:
        max_abs = max((abs(v) for v in values), default=0.0)
    if not max_abs >= 0:
        raise ValueError(f"max_abs: expected a number >= 0, got {max_abs!r}")
    spans = []
    for token, value in zip(tokens, values, strict=True):
        alpha = min(abs(value) / max_abs, 1.0) if max_abs > 0 else 0.0
        r, g, b = POSITIVE_RGB if value >= 0 else NEGATIVE_RGB
        spans.append(
            f'<span class="visloupe-token" title="{value:.4g}" '
            f'style="background-color: rgba({r}, {g}, {b}, {alpha:.3f}); padding: 0 2px; '
            f'margin: 0 1px; border-radius: 3px">{html.escape(str(token))}</span>'
        )
    return '<div class="visloupe-tokens" style="line-height: 1.9">' + " ".join(spans) + "</div>"


# --------------------------------------------------------------------------- explainers

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
    check_int("n_steps", n_steps, 2)
    return TextExplainer(name or method, method, embedding, int(pad_id), n_steps)


def _token_gradient(model: nn.Module, token_ids: Tensor, target: Any, embedding: Any,
                    pad_id: int) -> Tensor:
    """Σ_d ∂f_target/∂e_{t,d} at the embedding output, padding set to 0."""
    check_model(model)
    layer = embedding_layer(model, embedding)
    ids = token_ids.to(model_device(model))
    captured: dict[str, Tensor] = {}

    def hook(_module: nn.Module, _inp: Any, out: Tensor) -> Tensor:
        out = out.detach().requires_grad_(True)
        captured["e"] = out
        return out

    handle = layer.register_forward_hook(hook)
    try:
        with eval_mode(model), torch.enable_grad():
            logits = model_logits(model, ids)
            t = logits.argmax(dim=1) if target is None else resolve_targets(
                target, ids.shape[0], logits.shape[1]).to(logits.device)
            picked = logits.gather(1, t.view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(picked, captured["e"])
    finally:
        handle.remove()
    scores = grad.sum(dim=-1)
    return torch.where(ids != pad_id, scores, torch.zeros_like(scores)).detach().to(
        token_ids.device)


def resolve_text_explainers(explainers: Any, *, pad_id: int = 0,
                            embedding: Any = None) -> dict[str, Any]:
    """``{display name: explainer}`` for token-id models -- the text side of the explainer
    contract (``resolve_explainers`` is the image side): names from ``TEXT_EXPLAINERS``,
    :class:`TextExplainer` objects or callables ``(model, token_ids, target) -> (N, T)``, alone,
    in a list or in a dict ``{display name: explainer}``; repeated names get a suffix."""
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
