"""The model adapter: one way to call, place and inspect any user's ``nn.Module``.

Everything in visloupe that runs a model goes through these functions, so a torchvision, timm
or Hugging Face model behaves the same in every capability:

- :func:`as_logits` / :func:`logits`: logits from a tensor, tuple, dict or ``ModelOutput``;
- :func:`eval_mode`: eval mode for the analysis, every module's flag restored afterwards;
- :func:`model_device`, :func:`model_dtype`, :func:`expected_in_channels`, :func:`check_model`;
- :func:`find_module`: a submodule by qualified name (or the module itself), with close names;
- :func:`hooks`: a context manager that removes hook handles also on exceptions;
- :func:`predict`: batched logits under ``no_grad`` in eval mode, on the model's device.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..checks import check_batch_size, check_module

logger = logging.getLogger(__name__)


def as_logits(output: Any) -> Tensor:
    """Return the logits tensor from any common model output.

    Accepts a tensor; a tuple/list (its first tensor element); a dict or a Hugging Face
    ``ModelOutput`` (``.logits`` / ``["logits"]``, else the first tensor value).
    """
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping):  # dicts and HF ModelOutput (an OrderedDict subclass)
        value = output.get("logits", None)
        if isinstance(value, Tensor):
            return value
        for value in output.values():
            if isinstance(value, Tensor):
                return value
        raise TypeError(
            "model output: expected a mapping with a 'logits' tensor (or any tensor value), "
            f"got keys {list(output.keys())} of types {[type(v).__name__ for v in output.values()]}"
        )
    value = getattr(output, "logits", None)
    if isinstance(value, Tensor):
        return value
    if isinstance(output, (tuple, list)):
        for value in output:
            if isinstance(value, Tensor):
                return value
        raise TypeError(
            f"model output: expected a {type(output).__name__} containing a tensor, got element "
            f"types {[type(v).__name__ for v in output]}"
        )
    raise TypeError(
        "model output: expected a Tensor, a tuple/list whose first tensor holds the logits, a "
        f"dict or a Hugging Face ModelOutput with .logits; got {type(output).__name__}"
    )


_SHAPE_WORDS = ("shape", "size", "dimension", "channels")
"""Words of torch's shape errors ("mat1 and mat2 shapes cannot be multiplied", "The size of
tensor a ...", "expected input[1, 1, 8, 8] to have 3 channels", "Kernel size can't be greater
than actual input size")."""


_MODEL_BUGS = ("view size is not compatible", "Error(s) in loading state_dict")
"""Size errors that are bugs in a model's code at any input size: passed on unchanged."""


def logits(model: nn.Module, inputs: Tensor, name: str = "inputs") -> Tensor:
    """Call ``model(inputs)`` and return its logits via ``as_logits`` (no grad handling here);
    shape errors name ``name`` (:func:`run_model`)."""
    return as_logits(run_model(model, inputs, name))


def run_model(model: nn.Module, inputs: Tensor, name: str = "inputs") -> Any:
    """``model(inputs)``. A shape error raised inside the model (inputs of a size or layout it
    was not built for) becomes a ValueError naming ``name`` and the per-item shape, instead of
    a matrix-multiply message from deep inside the network; other errors pass unchanged."""
    try:
        return model(inputs)
    except IndexError as err:  # an embedding lookup of an id past the vocabulary
        if inputs.is_floating_point() or "index out of range" not in str(err):
            raise
        emb = next((m for m in _walk(model) if isinstance(m, nn.Embedding)), None)
        rows = f" ({emb.num_embeddings} rows in the embedding)" if emb is not None else ""
        raise ValueError(f"{name}: token ids must lie in the model's vocabulary{rows}, got ids "
                         f"from {int(inputs.min())} to {int(inputs.max())}") from err
    except RuntimeError as err:
        text = str(err)
        oom = getattr(torch, "OutOfMemoryError", None)
        if (oom is not None and isinstance(err, oom)) or "out of memory" in text \
                or any(bug in text for bug in _MODEL_BUGS) \
                or not any(word in text for word in _SHAPE_WORDS):
            raise
        raise input_size_error(model, inputs.shape[1:], text.strip(), name) from err


def input_size_error(model: nn.Module, item_shape: Sequence[int], cause: str,
                     name: str = "inputs") -> ValueError:
    """The one message for a model that cannot run on items of ``item_shape`` (``cause``:
    torch's own words), naming the caller's argument ``name``."""
    return ValueError(
        f"{name}: {type(model).__name__} cannot run on inputs of shape {tuple(item_shape)} per "
        f"item ({cause}); give it the input size and layout it was built for (its preprocess) "
        "-- if this is that size, the error is inside the model")


def _walk(model: nn.Module) -> Iterator[nn.Module]:
    """``model.modules()`` -- the same modules in the same order, each once -- without building
    qualified names (``explain`` walks the tree on every call)."""
    seen: set[int] = set()
    stack = [model]
    while stack:
        module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        yield module
        children = module._modules
        if children:
            stack.extend(reversed([c for c in children.values() if c is not None]))


def all_modules(model: nn.Module) -> list[nn.Module]:
    """``list(model.modules())``, about twice as fast."""
    return list(_walk(model))


def _parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """``model.parameters()`` in the same order, lazily: the first one is found without walking
    the whole tree."""
    seen: set[int] = set()
    for module in _walk(model):
        for param in module._parameters.values():
            if param is not None and id(param) not in seen:
                seen.add(id(param))
                yield param


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a parameter-free model)."""
    for tensor in _parameters(model):
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """Floating dtype of the model's first floating parameter (float32 if none)."""
    for tensor in _parameters(model):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


@contextlib.contextmanager
def eval_mode(model: nn.Module, modules: list[nn.Module] | None = None) -> Iterator[nn.Module]:
    """Put ``model`` (every submodule) in eval mode and restore each module's previous
    ``training`` flag on exit, also on exceptions. Nothing else about the model changes.
    ``modules``: ``all_modules(model)`` when the caller has it already (one walk, not two)."""
    if modules is None:
        modules = all_modules(model)
    training = [module for module in modules if module.training]
    if not training:  # the common case: already in eval mode, nothing to switch or restore
        yield model
        return
    logger.debug("model was in training mode; switched to eval() for the analysis")
    model.eval()
    try:
        yield model
    finally:
        for module in training:
            module.training = True




def expected_in_channels(model: nn.Module) -> int | None:
    """Number of input channels the model expects (config or first Conv2d), or None if unknown."""
    for key in ("num_channels", "in_channels", "in_chans"):
        value = config_value(model, key)
        if isinstance(value, int) and value > 0:
            return value
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None



def config_value(model: nn.Module, key: str) -> Any:
    """``model.config[key]`` (Hugging Face, our built-ins) or None."""
    # A config (Hugging Face, our built-ins) is a plain attribute, so look in the instance dict
    # first: a failed nn.Module.__getattr__ builds an error message, costly on every explain().
    config = model.__dict__.get("config")
    if config is None and hasattr(type(model), "config"):
        config = getattr(model, "config", None)
    if isinstance(config, Mapping):
        return config.get(key)
    return getattr(config, key, None)


def check_model(model: Any, name: str = "model") -> nn.Module:
    """``model`` if it is an ``nn.Module`` whose weights hold data.

    A model on the ``meta`` device (built with ``torch.device("meta")`` or loaded lazily) has
    shapes but no values; running it gives meta tensors, not numbers.
    """
    check_module(model, name)
    if model_device(model).type == "meta":
        raise ValueError(f"{name}: the model's weights are on the 'meta' device (shapes without "
                         "values); load real weights first, e.g. model.to_empty(device='cpu') "
                         "followed by load_state_dict(...)")
    return model


def first_tensor(value: Any) -> Tensor | None:
    """The first tensor in a hook's value: itself, ``.logits``, or the first tensor of a tuple,
    list or dict (None if there is none)."""
    if isinstance(value, Tensor):
        return value
    logits_value = getattr(value, "logits", None)
    if isinstance(logits_value, Tensor):
        return logits_value
    items = value.values() if isinstance(value, Mapping) else value \
        if isinstance(value, (tuple, list)) else ()
    return next((v for v in items if isinstance(v, Tensor)), None)


def find_module(model: nn.Module, layer: str | nn.Module, name: str = "layer"
                ) -> tuple[str, nn.Module]:
    """``(qualified name, submodule)`` for a module name or a submodule of ``model``."""
    if isinstance(layer, str):
        modules = dict(model.named_modules())
        if layer in modules and layer:
            return layer, modules[layer]
        close = difflib.get_close_matches(layer, [n for n in modules if n], n=5, cutoff=0.5)
        hint = f"; close names: {close}" if close else ""
        raise ValueError(f"{name}: no submodule named {layer!r} in {type(model).__name__}{hint}")
    if isinstance(layer, nn.Module):
        found = next((n for n, m in model.named_modules() if m is layer and n), None)
        if found is None:
            raise ValueError(f"{name}: expected a submodule of {type(model).__name__}, got a "
                             f"{type(layer).__name__} that is not inside it")
        return found, layer
    proposal_name = getattr(layer, "name", None)  # a LayerProposal
    if isinstance(proposal_name, str):
        return find_module(model, proposal_name, name)
    raise TypeError(f"{name}: expected a module name (str) or an nn.Module, got "
                    f"{type(layer).__name__}")


@contextlib.contextmanager
def hooks(handles: list | None = None) -> Iterator[list]:
    """Collect hook handles in the yielded list; all are removed on exit, also on exceptions."""
    handles = [] if handles is None else handles
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()
        handles.clear()


_CHANNEL_HINTS = {1: "grayscale: repeat it, x.expand(-1, 3, -1, -1)",
                  4: "RGBA: drop the alpha channel, x[:, :3]"}


def check_inputs(model: nn.Module, inputs: Any, name: str = "inputs") -> Tensor:
    """Validate images for ``model``: a float ``(N, C, H, W)`` tensor (numpy arrays accepted) with
    the channel count the model expects and no NaN/inf. Returns it cast to the model's dtype.
    ``model`` itself must be an ``nn.Module`` with real (not ``meta``) weights."""
    check_model(model)
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(inputs)
    if not isinstance(inputs, Tensor):
        raise TypeError(f"{name}: expected a float tensor (N, C, H, W), got "
                        f"{type(inputs).__name__}")
    if not inputs.is_floating_point():
        raise TypeError(
            f"{name}: expected a float tensor, got dtype {inputs.dtype}; integer images must be "
            "preprocessed first (e.g. the model's preprocess, or x.float() / 255 and normalise)"
        )
    if inputs.dim() != 4:
        hint = " (add the batch dimension: x.unsqueeze(0))" if inputs.dim() == 3 else ""
        raise ValueError(
            f"{name}: expected a batch of images (N, C, H, W), got shape "
            f"{tuple(inputs.shape)}{hint}"
        )
    if inputs.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one image, got an empty batch")
    channels = expected_in_channels(model)
    if channels is not None and inputs.shape[1] != channels:
        if int(inputs.shape[-1]) == channels:  # channels-last, e.g. numpy (N, H, W, C) images
            hint = "channels-last (N, H, W, C)? move them first: x.permute(0, 3, 1, 2)"
        else:
            hint = _CHANNEL_HINTS.get(int(inputs.shape[1])) if channels == 3 else None
        raise ValueError(
            f"{name}: {type(model).__name__} expects {channels} input channel(s), got "
            f"{inputs.shape[1]} (shape {tuple(inputs.shape)})" + (f"; {hint}" if hint else "")
        )
    # One reduction is cheaper than an element-wise mask; NaN/inf anywhere makes the sum
    # non-finite (a finite sum proves there are none), and only then is the mask computed.
    if not math.isfinite(inputs.sum().item()) and not torch.isfinite(inputs).all():
        bad = int((~torch.isfinite(inputs)).sum())
        raise ValueError(f"{name}: expected finite values, got {bad} NaN/inf entries")
    return inputs.to(dtype=model_dtype(model))


def predict(model: nn.Module, inputs: Tensor, *, batch_size: int | None = None) -> Tensor:
    """Logits ``(N, K)`` of ``inputs`` in batches of ``batch_size`` (None: one batch), in eval
    mode and without gradients, on the model's device (floating inputs in the model's dtype,
    which the model needs to run); returned on the inputs' device."""
    check_model(model)
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(inputs)
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs: expected a tensor (N, ...), got {type(inputs).__name__}")
    if inputs.dim() == 0 or inputs.shape[0] == 0:
        raise ValueError(f"inputs: expected a non-empty batch (N, ...), got shape "
                         f"{tuple(inputs.shape)}")
    image_like = inputs.dim() == 4 or (inputs.dim() == 3 and inputs.is_floating_point()
                                       and expected_in_channels(model) is not None)
    if image_like:  # images: the same checks (and messages) as every explainer's
        inputs = check_inputs(model, inputs)
    elif inputs.is_floating_point() and not torch.isfinite(inputs).all():
        raise ValueError("inputs: expected finite values, got NaN/inf entries")
    bs = check_batch_size(batch_size, max(1, inputs.shape[0]))
    device = model_device(model)
    dtype = model_dtype(model) if inputs.is_floating_point() else None
    out = []
    with eval_mode(model), torch.no_grad():
        for s in range(0, inputs.shape[0], bs):
            batch = logits(model, inputs[s:s + bs].to(device, dtype)).detach()
            if batch.dim() != 2:
                raise ValueError(f"model output: expected logits (N, num_classes), got shape "
                                 f"{tuple(batch.shape)}")
            out.append(batch)
    return torch.cat(out).to(inputs.device)
