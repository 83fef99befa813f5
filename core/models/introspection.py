"""Duck-typed introspection of users' models: logits, target layers and token layouts.

Works on plain ``nn.Module`` CNNs, timm-style ViTs (``blocks[i].norm1``), torchvision-style ViTs
(``encoder.layers[i].ln_1``), Hugging Face ``ViTForImageClassification``
(``vit.encoder.layer[i].layernorm_before``; ``vit.layers[i]`` in transformers 5) and
channels-last grids (Swin/ConvNeXt-style ``(N, h, w, C)``) without importing timm, torchvision
or transformers: everything is read from the module tree and from one dry forward pass whose
hooks are always removed.

The token grid is *inferred* from the number of tokens and the input size, never assumed to be
14x14 -- the most reported failure of pytorch-grad-cam's ``reshape_transform`` (issues #76, #358).
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .adapter import (
    all_modules,
    config_value,
    eval_mode,
    expected_in_channels,
    first_tensor,
    model_device,
    model_dtype,
)

__all__ = [
    "LayerProposal",
    "TokenLayout",
    "infer_token_layout",
    "layer_output_layout",
    "patch_size_hint",
    "propose_target_layers",
    "resolve_layer",
    "trace_output_shapes",
]

logger = logging.getLogger(__name__)

MAX_PREFIX_TOKENS = 8
"""Largest number of prefix tokens (CLS + distillation + registers) ``infer_token_layout`` tries."""


def _as_pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (value, value)
    if isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    return None


def _patch_embed_conv(model: nn.Module) -> nn.Conv2d | None:
    """The first Conv2d whose kernel equals its stride (a ViT-style patch embedding)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            kernel, stride = tuple(module.kernel_size), tuple(module.stride)
            if kernel == stride and kernel[0] > 1:
                return module
            return None  # the first conv is not a patch embedding: a CNN
    return None


def patch_size_hint(model: nn.Module) -> tuple[int, int] | None:
    """Patch size of a ViT-like model, read from its config or its patch-embedding conv."""
    for value in (
        config_value(model, "patch_size"),
        getattr(model, "patch_size", None),
        getattr(getattr(model, "patch_embed", None), "patch_size", None),
    ):
        pair = _as_pair(value)
        if pair is not None:
            return pair
    conv = _patch_embed_conv(model)
    return tuple(conv.kernel_size) if conv is not None else None  # type: ignore[return-value]


def _image_size_hint(model: nn.Module) -> tuple[int, int] | None:
    for value in (
        config_value(model, "image_size"),
        getattr(model, "image_size", None),
        getattr(model, "img_size", None),
        getattr(getattr(model, "patch_embed", None), "img_size", None),
    ):
        pair = _as_pair(value)
        if pair is not None:
            return pair
    return None


def _channel_count(module: nn.Module) -> int | None:
    """Feature/channel count a module produces, when its type says so."""
    if isinstance(module, nn.LayerNorm):
        return int(module.normalized_shape[-1])
    if isinstance(module, nn.Linear):
        return int(module.out_features)
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return int(module.out_channels)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return int(module.num_features)
    if isinstance(module, nn.GroupNorm):
        return int(module.num_channels)
    children = list(module.children())
    for child in reversed(children):  # a container ends with what it produces
        count = _channel_count(child)
        if count is not None:
            return count
    return None


# --------------------------------------------------------------------------- token layout


@dataclass(frozen=True)
class TokenLayout:
    """How a token tensor maps onto the image grid.

    ``n_prefix`` leading tokens (CLS, distillation, registers) carry no position; the next
    ``grid[0] * grid[1]`` tokens are patches in row-major order. ``channels_last`` marks a
    ``(N, h, w, C)`` map (Swin/ConvNeXt-style) rather than a ``(N, T, D)`` sequence.
    """

    n_prefix: int
    grid: tuple[int, int]
    channels_last: bool = False

    @property
    def n_tokens(self) -> int:
        return self.n_prefix + self.grid[0] * self.grid[1]

    def to_grid(self, tokens: Tensor) -> Tensor:
        """``(N, T, D)`` tokens or an ``(N, h, w, C)`` map -> ``(N, D, h, w)`` (prefix dropped)."""
        h, w = self.grid
        if tokens.dim() == 4:
            if tuple(tokens.shape[1:3]) != (h, w):
                raise ValueError(
                    f"tokens: expected an (N, {h}, {w}, C) map, got {tuple(tokens.shape)}"
                )
            return tokens.permute(0, 3, 1, 2)
        if tokens.dim() != 3 or tokens.shape[1] != self.n_tokens:
            raise ValueError(
                f"tokens: expected (N, {self.n_tokens}, D) = {self.n_prefix} prefix + {h}x{w} "
                f"patch tokens, got {tuple(tokens.shape)}"
            )
        patches = tokens[:, self.n_prefix :, :]
        return patches.reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)


def _grid_candidates(n: int, input_hw: tuple[int, int]) -> list[tuple[int, tuple[int, int]]]:
    """Grids (h, w) with h * w = n, scored (lower is better) by how well a patch size explains
    them: 0 = one square patch size divides the input exactly, 1 = a square patch size with floor
    division (conv patch embedding on a non-multiple size), 2 + aspect error otherwise."""
    H, W = input_hw
    out: list[tuple[int, tuple[int, int]]] = []
    for h in range(1, n + 1):
        if n % h:
            continue
        w = n // h
        if h > H or w > W:
            continue
        score: float | None = None
        if H % h == 0 and W % w == 0 and H // h == W // w:
            score = 0
        else:
            for p in range(1, min(H, W) + 1):
                if H // p == h and W // p == w:
                    score = 1
                    break
        if score is None:
            aspect = abs(math.log((h / w) / (H / W)))
            if aspect < 0.15:
                score = 2 + aspect
        if score is not None:
            out.append((score, (h, w)))  # type: ignore[arg-type]
    return out


def infer_token_layout(
    n_tokens: int,
    input_hw: Sequence[int],
    patch_size: int | Sequence[int] | None = None,
    *,
    n_prefix: int | None = None,
) -> TokenLayout:
    """Infer ``TokenLayout`` for ``n_tokens`` tokens produced from an ``input_hw`` image.

    With ``patch_size`` the grid is ``(H // ph, W // pw)`` and the prefix is what is left over.
    Without it, every ``n_prefix`` in ``0..8`` is tried and the grid whose cells are square
    patches dividing the input (then patches with floor division, then the closest aspect ratio)
    wins; ties go to fewer prefix tokens and grids larger than 1x1. Nothing assumes 14x14.
    """
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 1:
        raise ValueError(f"n_tokens: expected a positive int, got {n_tokens!r}")
    if len(input_hw) != 2 or min(int(v) for v in input_hw) < 1:
        raise ValueError(f"input_hw: expected (H, W) positive ints, got {input_hw!r}")
    H, W = int(input_hw[0]), int(input_hw[1])
    if patch_size is not None:
        ph, pw = _as_pair(patch_size) or _as_pair(tuple(int(v) for v in patch_size))  # type: ignore[arg-type]
        grid = (H // ph, W // pw)
        prefix = n_tokens - grid[0] * grid[1]
        if not 0 <= prefix <= MAX_PREFIX_TOKENS or (n_prefix is not None and prefix != n_prefix):
            raise ValueError(
                f"n_tokens: {n_tokens} tokens do not fit a {grid[0]}x{grid[1]} patch grid "
                f"(input {H}x{W}, patch {ph}x{pw}) plus 0..{MAX_PREFIX_TOKENS} prefix tokens"
            )
        return TokenLayout(prefix, grid)
    prefixes = [n_prefix] if n_prefix is not None else range(0, MAX_PREFIX_TOKENS + 1)
    best: tuple[float, int, int, tuple[int, int]] | None = None
    for prefix in prefixes:
        m = n_tokens - prefix
        if m < 1:
            continue
        for score, grid in _grid_candidates(m, (H, W)):
            key = (score, int(grid == (1, 1)), prefix, grid)
            if best is None or key[:3] < best[:3]:
                best = (key[0], key[1], prefix, grid)
    if best is None:
        raise ValueError(
            f"n_tokens: cannot lay out {n_tokens} tokens on a grid matching a {H}x{W} input with "
            f"0..{MAX_PREFIX_TOKENS} prefix tokens; pass patch_size= or pick another layer"
        )
    return TokenLayout(best[2], best[3])


# --------------------------------------------------------------------------- dry forward pass


_TRACE_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[Any, dict[str, tuple]]] = (
    weakref.WeakKeyDictionary()
)


def _normalise_input_shape(model: nn.Module, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    if input_shape is None:
        hw = _image_size_hint(model) or (224, 224)
        return (expected_in_channels(model) or 3, *hw)
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 4:
        shape = shape[1:]
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape: expected (C, H, W) or (N, C, H, W), got {input_shape!r}")
    return shape


def module_ids(model: nn.Module) -> tuple[int, ...]:
    """Identities of the model's modules in order: a cheap key that changes when a submodule is
    added, removed or replaced (caches of shapes and layer proposals use it)."""
    return tuple(map(id, all_modules(model)))


class DryRunError(ValueError):
    """The model could not run on zeros of the input shape given (the cause is chained)."""


def trace_output_shapes(
    model: nn.Module, input_shape: Sequence[int] | None = None
) -> dict[str, tuple[tuple[int, ...], int]]:
    """Run one dry forward pass on zeros of ``input_shape`` ``(C, H, W)`` in eval mode and return
    ``{module name: (output shape, number of calls)}`` in completion order (cached per model and
    shape; every hook is removed, also on errors)."""
    shape = _normalise_input_shape(model, input_shape)
    signature = (shape, module_ids(model))
    cached = _TRACE_CACHE.get(model, {}).get(signature)
    if cached is not None:
        return cached
    record: dict[str, tuple[tuple[int, ...], int]] = {}

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            tensor = first_tensor(output)
            calls = record.pop(name, ((), 0))[1] + 1
            record[name] = (tuple(tensor.shape) if tensor is not None else (), calls)

        return hook

    handles = []
    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(make_hook(name)))
        x = torch.zeros((1, *shape), device=model_device(model), dtype=model_dtype(model))
        with eval_mode(model), torch.no_grad():
            model(x)
    except Exception as error:  # noqa: BLE001 - re-raised with context
        raise DryRunError(
            f"input_shape: a dry forward pass on zeros of shape {(1, *shape)} failed "
            f"({type(error).__name__}: {error}); pass the input shape the model expects"
        ) from error
    finally:
        for handle in handles:
            handle.remove()
    _TRACE_CACHE.setdefault(model, {})[signature] = record
    return record


def _fits(grid: Sequence[int], input_hw: Sequence[int]) -> bool:
    """Whether an (h, w) grid has the input's aspect ratio (within 15 %) and is no larger."""
    h, w = int(grid[0]), int(grid[1])
    H, W = int(input_hw[0]), int(input_hw[1])
    return h <= H and w <= W and abs(math.log((h / w) / (H / W))) < 0.15


def layer_output_layout(
    module: nn.Module,
    output_shape: Sequence[int],
    input_hw: Sequence[int],
    patch_size: int | Sequence[int] | None = None,
) -> tuple[Literal["conv", "tokens"], TokenLayout | None] | None:
    """Classify a layer output: ``("conv", None)`` for ``(N, C, h, w)``, ``("tokens", layout)`` for
    ``(N, T, D)`` sequences and ``(N, h, w, C)`` channels-last maps, ``None`` if not spatial."""
    shape = tuple(output_shape)
    if len(shape) == 4:
        channels = _channel_count(module)
        last = TokenLayout(0, (shape[1], shape[2]), channels_last=True)
        if channels is not None and shape[-1] == channels and shape[1] != channels:
            return "tokens", last
        if channels is None and _fits(shape[1:3], input_hw) and not _fits(shape[2:4], input_hw):
            return "tokens", last  # e.g. an activation module on a channels-last grid
        return "conv", None
    if len(shape) == 3:
        try:
            layout = infer_token_layout(shape[1], tuple(input_hw), patch_size)
        except ValueError:
            try:  # patch size hint may belong to another stage (e.g. Swin merges patches)
                layout = infer_token_layout(shape[1], tuple(input_hw))
            except ValueError:
                return None
        return "tokens", layout
    return None


# --------------------------------------------------------------------------- proposals


@dataclass(frozen=True)
class LayerProposal:
    """A Grad-CAM target layer: its qualified ``name``, the ``module``, its ``kind``
    (``"conv"`` for ``(N, C, h, w)`` maps, ``"tokens"`` for token sequences or channels-last
    grids), why it was chosen, and for token layers the ``layout`` at the traced input size."""

    name: str
    module: nn.Module
    kind: Literal["conv", "tokens"]
    reason: str
    layout: TokenLayout | None = None
    output_shape: tuple[int, ...] = ()


_NORM_HINTS = (
    ("norm1", "timm-style blocks[-1].norm1"),
    ("ln_1", "torchvision-style encoder.layers[-1].ln_1"),
    ("layernorm_before", "Hugging Face ViT layer[-1].layernorm_before"),
)


def _first_norm(block: nn.Module) -> tuple[str, nn.Module] | None:
    for suffix, _ in _NORM_HINTS:
        child = getattr(block, suffix, None)
        if isinstance(child, nn.Module):
            return suffix, child
    for name, module in block.named_modules():
        if name and (isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower()):
            return name, module
    return None


def _token_block_proposals(
    model: nn.Module, trace: Mapping[str, tuple[tuple[int, ...], int]], shape: tuple[int, ...],
    patch: tuple[int, int] | None,
) -> list[LayerProposal]:
    """The first norm of the last transformer block: in every ModuleList/Sequential whose children
    all output 3-D token tensors, take the last child and its first LayerNorm."""
    proposals: list[LayerProposal] = []
    order = {name: i for i, name in enumerate(trace)}
    candidates: list[tuple[int, str, nn.Module]] = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)) or len(module) == 0:
            continue
        children = [(f"{name}.{key}" if name else key, child)
                    for key, child in module.named_children()]
        shapes = [trace.get(child_name, ((), 0))[0] for child_name, _ in children]
        if all(len(s) == 3 for s in shapes):
            last_name, last = children[-1]
            candidates.append((order.get(last_name, -1), last_name, last))
    for _, block_name, block in sorted(candidates, reverse=True):
        found = _first_norm(block)
        if found is None:
            continue
        suffix, norm = found
        name = f"{block_name}.{suffix}"
        out_shape, calls = trace.get(name, ((), 0))
        if calls != 1:
            continue
        layout = layer_output_layout(norm, out_shape, shape[1:], patch)
        if layout is None or layout[0] != "tokens":
            continue
        style = next((text for hint, text in _NORM_HINTS if hint == suffix), "last block's norm")
        proposals.append(LayerProposal(
            name, norm, "tokens",
            f"first norm of the last transformer block ({style}); its output keeps one token "
            "per patch and still receives gradient from the class token",
            layout[1], out_shape,
        ))
    return proposals


def propose_target_layers(
    model: nn.Module, input_shape: Sequence[int] | None = None, *, limit: int = 8
) -> list[LayerProposal]:
    """Propose Grad-CAM target layers, best first.

    ViT-like models: the last transformer block's first norm (timm ``blocks[-1].norm1``,
    torchvision ``encoder.layers[-1].ln_1``, HF ``vit.encoder.layer[-1].layernorm_before``
    (``vit.layers`` in transformers 5), or any list of token blocks), with its inferred
    ``TokenLayout``. Then every module (called once) producing a spatial map --
    ``(N, C, h, w)`` with ``h, w > 1`` or a channels-last ``(N, h, w, C)`` -- from the last to
    earlier ones. Shapes come from one dry forward pass on
    zeros of ``input_shape`` (``(C, H, W)``; guessed from the model's config or 224x224 if None).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    shape = _normalise_input_shape(model, input_shape)
    trace = trace_output_shapes(model, shape)
    modules = dict(model.named_modules())
    patch = patch_size_hint(model)
    proposals = _token_block_proposals(model, trace, shape, patch)
    seen = {p.name for p in proposals}
    # (N, heads, T, T) attention maps are not images: skip 4-D outputs whose last two sizes
    # equal a token count seen in a 3-D output
    token_counts = {s[1] for s, _ in trace.values() if len(s) == 3}
    shared: list[str] = []  # spatial layers later than the first proposal, skipped as shared
    for name in reversed(list(trace)):
        out_shape, calls = trace[name]
        if name in seen or len(out_shape) != 4:
            continue
        if calls != 1:
            if not proposals and calls > 1 and min(out_shape[2:]) > 1:
                shared.append(f"{name} ({calls} calls)")
            continue
        if out_shape[2] == out_shape[3] and out_shape[2] in token_counts:
            continue
        module = modules[name]
        layout = layer_output_layout(module, out_shape, shape[1:], patch)
        if layout is None:
            continue
        kind, token_layout = layout
        grid = token_layout.grid if token_layout is not None else tuple(out_shape[2:])
        if min(grid) <= 1:
            continue
        if kind == "conv":
            reason = f"last module with a spatial {out_shape[1]}x{grid[0]}x{grid[1]} map"
        else:
            reason = f"channels-last {grid[0]}x{grid[1]}x{out_shape[-1]} map (Swin/ConvNeXt-style)"
        if proposals:
            reason = reason.replace("last module", "module", 1)
        elif shared:
            reason += (f"; later spatial layers run more than once per forward pass (shared "
                       f"weights) and are skipped, their activations being ambiguous: "
                       f"{', '.join(shared[:4])}{' ...' if len(shared) > 4 else ''}")
            logger.info("propose_target_layers: skipping shared layers %s; proposing %s",
                        shared, name)
        proposals.append(LayerProposal(name, module, kind, reason, token_layout, out_shape))
        seen.add(name)
        if len(proposals) >= limit:
            break
    return proposals


def resolve_layer(
    model: nn.Module,
    layer: str | nn.Module | LayerProposal | None,
    input_shape: Sequence[int],
    modules: list[nn.Module] | None = None,
) -> LayerProposal:
    """Turn ``layer`` (a qualified name, a submodule, a proposal, or None = best proposal) into
    a ``LayerProposal`` for inputs of shape ``(C, H, W)``; clear errors for unknown names,
    foreign modules and layers without a spatial layout. ``modules``: ``all_modules(model)``
    when the caller has it already."""
    if isinstance(layer, LayerProposal):
        return layer
    shape = _normalise_input_shape(model, input_shape)
    if modules is None:
        modules = all_modules(model)
    # Layouts depend only on the architecture and the input shape: cache them per model, so a
    # widget or a metric calling explain() in a loop pays the dry forward pass and the layer
    # search once (the identities of its modules invalidate the entry when it is edited).
    if not isinstance(layer, (str, nn.Module, type(None))):
        raise TypeError(
            "layer: expected a module name, an nn.Module, a LayerProposal or None, got "
            f"{type(layer).__name__}"
        )
    key = (shape, tuple(map(id, modules)),
           layer if isinstance(layer, (str, type(None))) else id(layer))
    per_model = _LAYER_CACHE.setdefault(model, {})
    cached = per_model.get(key)
    if cached is not None and _still_in_place(model, cached) and (
        cached.module is layer or not isinstance(layer, nn.Module)
    ):
        return cached
    per_model[key] = proposal = _resolve_layer(model, layer, shape)
    return proposal


_LAYER_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[Any, LayerProposal]] = (
    weakref.WeakKeyDictionary()
)


def _still_in_place(model: nn.Module, proposal: LayerProposal) -> bool:
    """Whether the cached proposal's module is still the one at its name in the model."""
    try:
        return model.get_submodule(proposal.name) is proposal.module
    except AttributeError:
        return False


def _resolve_layer(
    model: nn.Module, layer: str | nn.Module | None, shape: tuple[int, ...]
) -> LayerProposal:
    if layer is None:
        proposals = propose_target_layers(model, shape)
        if not proposals:
            shared = [n for n, (out, calls) in trace_output_shapes(model, shape).items()
                      if calls > 1 and len(out) == 4 and min(out[2:]) > 1]
            if shared:
                raise ValueError(
                    f"layer: every module of {type(model).__name__} producing a spatial map is "
                    f"called more than once per forward pass ({shared[:5]}): a shared module "
                    "has one output per call, so Grad-CAM cannot tell which to use -- give each "
                    "use its own module, pass layer= a module called once, or use a gradient "
                    "method"
                )
            raise ValueError(
                f"layer: {type(model).__name__} has no module producing a spatial map "
                f"((N, C, h, w) with h, w > 1, a token grid or a channels-last grid) for inputs of "
                f"shape {shape}; Grad-CAM needs one -- use a gradient method instead"
            )
        return proposals[0]
    modules = dict(model.named_modules())
    if isinstance(layer, str):
        if layer not in modules or not layer:
            import difflib

            close = difflib.get_close_matches(layer, [n for n in modules if n], n=5, cutoff=0.5)
            hint = f"; close names: {close}" if close else ""
            raise ValueError(
                f"layer: no submodule named {layer!r} in {type(model).__name__}{hint}"
            )
        name, module = layer, modules[layer]
    elif isinstance(layer, nn.Module):
        name = next((n for n, m in modules.items() if m is layer and n), None)
        if name is None:
            raise ValueError(
                f"layer: expected a submodule of {type(model).__name__}, got a "
                f"{type(layer).__name__} that is not part of the model"
            )
        module = layer
    trace = trace_output_shapes(model, shape)
    out_shape, calls = trace.get(name, ((), 0))
    if calls == 0:
        raise ValueError(f"layer: module {name!r} is not called in the forward pass")
    if calls > 1:
        raise ValueError(
            f"layer: module {name!r} is called {calls} times per forward pass (a shared module); "
            "pick a module used once"
        )
    layout = layer_output_layout(module, out_shape, shape[1:], patch_size_hint(model))
    if layout is None:
        raise ValueError(
            f"layer: {name!r} outputs shape {out_shape}, expected a spatial map (N, C, h, w), a "
            "token sequence (N, T, D) or a channels-last grid (N, h, w, C)"
        )
    kind, token_layout = layout
    return LayerProposal(name, module, kind, "chosen by the caller", token_layout, out_shape)
