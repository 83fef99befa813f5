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

import torch
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients
from torch import Tensor, nn

from ..models.adapter import as_logits, eval_mode, model_device
from .explain import LogitsModule, resolve_targets

__all__ = ["TEXT_METHODS", "TokenAttributions", "to_html", "token_attributions"]

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


def _check_token_ids(token_ids: Any) -> Tensor:
    if not isinstance(token_ids, Tensor):
        try:
            token_ids = torch.as_tensor(token_ids)
        except (TypeError, ValueError) as err:
            raise TypeError(
                "token_ids: expected an integer tensor (N, T) or equal-length lists of ints, "
                f"got {type(token_ids).__name__}"
            ) from err
    if token_ids.is_floating_point() or token_ids.dtype == torch.bool or token_ids.is_complex():
        raise TypeError(f"token_ids: expected integer token ids, got dtype {token_ids.dtype}")
    if token_ids.dim() == 1:
        token_ids = token_ids.unsqueeze(0)
    if token_ids.dim() != 2 or token_ids.shape[0] == 0 or token_ids.shape[1] == 0:
        raise ValueError(f"token_ids: expected shape (N, T) with N, T > 0, got "
                         f"{tuple(token_ids.shape)}")
    return token_ids.long()


def _embedding_layer(model: nn.Module, embedding: Any) -> nn.Module:
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
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if method not in TEXT_METHODS:
        raise ValueError(f"method: expected one of {list(TEXT_METHODS)}, got {method!r}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 2:
        raise ValueError(f"n_steps: expected an int >= 2, got {n_steps!r}")
    if isinstance(pad_id, bool) or not isinstance(pad_id, int):
        raise TypeError(f"pad_id: expected an int token id, got {pad_id!r}")
    layer = _embedding_layer(model, embedding)
    ids_user = _check_token_ids(token_ids)
    device = model_device(model)
    ids = ids_user.to(device)
    baseline = torch.full_like(ids, pad_id)
    mask = ids != pad_id
    forward = LogitsModule(model)
    with eval_mode(model):
        with torch.no_grad():
            logits = as_logits(model(ids))
            base_logits = as_logits(model(baseline))
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
