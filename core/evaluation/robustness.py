"""Infidelity and max-sensitivity of saliency maps (Yeh, Hsieh, Suggala, Inouye, Ravikumar,
"On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019), computed by
``captum.metrics`` for maps ``(N, H, W)`` and any explainer.

What the wrappers take care of (Captum's own conventions, see ``captum/metrics/_core``):

- ``infidelity`` needs attributions of exactly the input shape: a ``(N, H, W)`` map (Grad-CAM,
  a channel-reduced gradient) is expanded over the channels, so ``<Φ, I>`` sums the map times
  the perturbation of every channel. The perturbation function returns ``(I, x - I)`` directly
  (Captum's "not multiplied by inputs" form, right for local maps), drawn from a seeded
  ``torch.Generator``. ``normalize=True`` applies Yeh et al.'s optimal rescaling ``β`` of the
  map, which makes the score independent of the map's scale.
- ``sensitivity_max`` calls the explanation function under ``torch.no_grad()``, first with a
  1-tuple (and iterates over the result) and then with tensors: the wrapper turns gradients back
  on and answers in kind. The target of the perturbed inputs is the target of the clean input.
- The model runs in eval mode through ``models.logits`` (shape errors name the inputs);
  inputs are chunked by ``batch_size``.

Conventions: infidelity is Yeh et al.'s eq. ``E_I[(I^T Φ - (f(x) - f(x - I)))²]`` with the
perturbed input ``x - I``; ``normalize=True`` (our default, Captum's is False) scales ``Φ`` by
``β = E[I^T Φ Δf] / E[(I^T Φ)²]``, as the authors' code ``chihkuanyeh/saliency_evaluation``
does. Max-sensitivity is Captum's ``sensitivity_max``: ``δ`` uniform in the L-inf ball of
radius 0.02 (Captum's default; the Split IG notebook uses 0.05), 10 draws, Frobenius norm, and
divided by ``||Φ(x)||`` (1 where that is 0) -- Yeh et al.'s definition has no such division.

For maps *multiplied by the input* (input x gradient, IG, DeepLIFT) :func:`multiplied_perturbation`
gives Captum's ``multiply_by_inputs`` convention; :func:`text_infidelity` is infidelity for token
scores, perturbing token embeddings towards the padding embedding (Kokhlikyan et al.,
arXiv:2106.07475, apply these metrics to text models).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max
from torch import Tensor, nn

from ..attribution import (
    LogitsModule,
    check_inputs,
    check_token_ids,
    embedding_layer,
    resolve_explainer,
    resolve_targets,
)
from ..checks import check_batch_size, check_bool, check_int, check_positive, check_seed
from ..models.adapter import check_model, eval_mode, model_device
from ..models.adapter import logits as model_logits

__all__ = [
    "infidelity",
    "linf_perturbation",
    "max_sensitivity",
    "multiplied_perturbation",
    "noise_perturbation",
    "text_infidelity",
]


def _check_radius(name: str, value: Any) -> float:
    """A perturbation radius: finite and > 0 (radius 0 scores every map a perfect 0)."""
    return check_positive(name, value)


NORMS = ("fro", "nuc")


def _check_norm(norm: Any) -> str | float:
    if isinstance(norm, str) and norm in NORMS:
        return norm
    if isinstance(norm, (int, float)) and not isinstance(norm, bool) and norm >= 1:
        return float(norm)
    raise ValueError(f"norm: expected 'fro', 'nuc', a number >= 1 or math.inf, got {norm!r}")


def _targets(model: nn.Module, x: Tensor, target: Any, batch_size: int) -> Tensor:
    with torch.no_grad():
        outs = [model_logits(model, x[s:s + batch_size])
                for s in range(0, x.shape[0], batch_size)]
    logits = torch.cat(outs)
    if logits.dim() != 2:
        raise ValueError(f"model output: expected logits (N, num_classes), got "
                         f"{tuple(logits.shape)}")
    if target is None:
        return logits.argmax(dim=1)
    return resolve_targets(target, x.shape[0], logits.shape[1]).to(x.device)


def noise_perturbation(
    kind: str = "gaussian", radius: float = 0.1, seed: int = 0
) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """A Captum infidelity ``perturb_func`` returning ``(I, x - I)``: ``I ~ N(0, radius²)``
    ("gaussian", Yeh et al.'s noisy-baseline perturbation) or uniform in ``[-radius, radius]``
    ("uniform"), from its own seeded generator."""
    if kind not in ("gaussian", "uniform"):
        raise ValueError(f"perturbation: expected 'gaussian', 'uniform' or a callable, got "
                         f"{kind!r}")
    radius = _check_radius("radius", radius)
    generator = torch.Generator().manual_seed(int(seed))

    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        if kind == "gaussian":
            noise = torch.randn(x.shape, generator=generator) * radius
        else:
            noise = (2 * torch.rand(x.shape, generator=generator) - 1) * radius
        noise = noise.to(device=x.device, dtype=x.dtype)
        return noise, x - noise

    return perturb


def _expand_maps(maps: Tensor, x: Tensor) -> Tensor:
    """``(N, H, W)`` / ``(N, 1, H, W)`` / ``(N, C, H, W)`` -> the input's shape."""
    if not isinstance(maps, Tensor):
        raise TypeError(f"attributions: expected a tensor, got {type(maps).__name__}")
    n, c, h, w = x.shape
    a = maps
    if a.dim() == 3:
        a = a[:, None]
    if a.dim() != 4 or a.shape[0] != n or tuple(a.shape[2:]) != (h, w) or a.shape[1] not in (1, c):
        raise ValueError(f"attributions: expected maps (N, H, W), (N, 1, H, W) or (N, C, H, W) "
                         f"for inputs {tuple(x.shape)}, got {tuple(maps.shape)}")
    if not torch.isfinite(a).all():
        raise ValueError("attributions: expected finite values, got NaN/inf")
    return a.expand(n, c, h, w).to(x.dtype).contiguous()


def infidelity(
    model: nn.Module,
    inputs: Tensor,
    explainer: Any,
    target: int | Sequence[int] | Tensor | None = None,
    *,
    perturbation: str | Callable[[Tensor], tuple[Tensor, Tensor]] = "gaussian",
    radius: float = 0.1,
    n_samples: int = 10,
    normalize: bool = True,
    seed: int = 0,
    batch_size: int | None = None,
) -> Tensor:
    """Infidelity per image ``(N,)`` (lower is better):
    ``E_I[(<Φ(x), I> - (f_c(x) - f_c(x - I)))²]`` over ``n_samples`` perturbations.

    Args:
        model: classifier (eval mode, logits via ``as_logits``).
        inputs: model inputs ``(N, C, H, W)``.
        explainer: precomputed maps (a tensor ``(N, H, W)``, ``(N, 1, H, W)`` or the input
            shape) or an explainer (registry name or ``(model, inputs, target) -> (N, H, W)``).
        target: the class ``c`` (None: predicted class).
        perturbation: "gaussian" (``I ~ N(0, radius²)``), "uniform" (``U[-radius, radius]``) or
            a Captum ``perturb_func`` returning ``(I, perturbed inputs)``.
        normalize: rescale the map by Yeh et al.'s optimal ``β`` (Captum's ``normalize``).
        seed: seeds the perturbations.
        batch_size: images per chunk (default: all).
    """
    check_model(model)
    n_samples = check_int("n_samples", n_samples)
    radius = _check_radius("radius", radius)
    normalize = check_bool("normalize", normalize)
    seed = check_seed(seed)
    x_user = check_inputs(model, inputs)
    x = x_user.detach().to(model_device(model))
    bs = check_batch_size(batch_size, x.shape[0])
    perturb = perturbation if callable(perturbation) else noise_perturbation(
        perturbation, radius, seed)
    forward = LogitsModule(model)
    with eval_mode(model):
        t = _targets(model, x, target, bs)
        if isinstance(explainer, Tensor):
            maps = _expand_maps(explainer.detach().to(x.device), x)
        else:
            fn = resolve_explainer(explainer)
            with torch.enable_grad():
                raw = torch.cat([fn(model, x[s:s + bs], t[s:s + bs])
                                 for s in range(0, x.shape[0], bs)])
            maps = _expand_maps(raw.detach().to(x.device), x)
        scores = [
            captum_infidelity(forward, perturb, x[s:s + bs], maps[s:s + bs],
                              target=t[s:s + bs], n_perturb_samples=n_samples,
                              normalize=normalize)
            for s in range(0, x.shape[0], bs)
        ]
    return torch.cat([s.reshape(-1) for s in scores]).to(x_user.device)


def linf_perturbation(seed: int = 0) -> Callable[[Any, float], Tensor]:
    """A Captum ``perturb_func`` drawing uniform noise in the L-inf ball of the given radius (as
    Captum's ``default_perturb_func``) from its own seeded generator, not the global RNG."""
    generator = torch.Generator().manual_seed(int(seed))

    def perturb(inputs: Any, perturb_radius: float = 0.02) -> Tensor:
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype)
        return x + ((2 * noise - 1) * perturb_radius).to(x.device)

    return perturb


def max_sensitivity(
    model: nn.Module,
    inputs: Tensor,
    explainer: Any,
    target: int | Sequence[int] | Tensor | None = None,
    *,
    radius: float = 0.02,
    n_samples: int = 10,
    norm: str | float = "fro",
    seed: int = 0,
    batch_size: int | None = None,
) -> Tensor:
    """Max-sensitivity per image ``(N,)`` (lower is more robust):
    ``max_δ ||Φ(x + δ) - Φ(x)|| / ||Φ(x)||`` over ``n_samples`` draws of ``δ`` uniform in the
    L∞ ball of ``radius`` (Captum's ``sensitivity_max`` with a seeded perturbation). The target
    of the perturbed inputs is fixed to ``target`` (None: the clean prediction).
    """
    check_model(model)
    n_samples = check_int("n_samples", n_samples)
    radius = _check_radius("radius", radius)
    norm = _check_norm(norm)
    seed = check_seed(seed)
    fn = resolve_explainer(explainer)
    x_user = check_inputs(model, inputs)
    x = x_user.detach().to(model_device(model))
    bs = check_batch_size(batch_size, x.shape[0])
    perturb = linf_perturbation(seed)

    def explanation(inp: Any, target: Tensor) -> Tensor | tuple[Tensor]:
        batch = inp[0] if isinstance(inp, tuple) else inp
        if target.numel() == 1 and batch.shape[0] > 1:
            # Captum expands a target over the perturbed copies only when it has more than one
            # element; a chunk of one image gets a 1-element target for all its copies.
            target = target.reshape(1).expand(batch.shape[0])
        with torch.enable_grad():
            maps = fn(model, batch, target)
        if not torch.isfinite(maps).all():
            raise ValueError(f"explainer {fn.name!r}: returned NaN/inf values")
        maps = maps.detach()
        return (maps,) if isinstance(inp, tuple) else maps

    with eval_mode(model):
        t = _targets(model, x, target, bs)
        scores = [
            sensitivity_max(explanation, x[s:s + bs], perturb_func=perturb,
                            perturb_radius=radius, n_perturb_samples=n_samples, norm_ord=norm,
                            target=t[s:s + bs])
            for s in range(0, x.shape[0], bs)
        ]
    return torch.cat([s.reshape(-1) for s in scores]).to(x_user.device)


# --------------------------------------------------------------------------- input multiplier, text


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
    check_model(model)
    n_samples = check_int("n_samples", n_samples)
    radius = _check_radius("radius", radius)
    seed = check_seed(seed)
    ids = check_token_ids(token_ids).to(model_device(model))
    s = torch.as_tensor(scores).to(ids.device).float()
    if tuple(s.shape) != tuple(ids.shape):
        raise ValueError(f"scores: expected shape {tuple(ids.shape)}, got {tuple(s.shape)}")
    layer = embedding_layer(model, embedding)
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
    radius = _check_radius("radius", radius)
    generator = torch.Generator().manual_seed(int(seed))

    def perturb(inputs: Any) -> tuple[Tensor, Tensor]:
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        noise = (torch.randn(x.shape, generator=generator) * radius).to(x)
        diff = x - torch.as_tensor(baseline).to(x)
        scaled = torch.where(diff != 0, noise / torch.where(diff != 0, diff, torch.ones_like(diff)),
                             torch.zeros_like(noise))
        return scaled, x - noise

    return perturb
