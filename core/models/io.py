"""Save and load models as safetensors weights plus a JSON sidecar (no pickle, no torch.load).

``save_model(model, "dir/name.safetensors", metadata)`` writes ``dir/name.safetensors`` and
``dir/name.json``. The JSON holds ``architecture`` and ``config`` (enough to rebuild a zoo
architecture) plus any user metadata. Both files are written atomically (temporary file in the
same folder, then ``os.replace``) so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..cache import atomic_write
from .architectures import ARCHITECTURES, build_model

__all__ = ["check_weights", "load_model", "metadata_path", "read_metadata", "save_model"]

FORMAT_VERSION = 1


def metadata_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a ``.safetensors`` file."""
    return Path(path).with_suffix(".json")


def _weights_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"path: expected a file name ending in .safetensors, got {str(path)!r}")
    return path


def save_model(
    model: nn.Module, path: str | os.PathLike, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model``'s ``state_dict`` to ``path`` (.safetensors), metadata to the .json sidecar.

    For zoo architectures (``SmallResNet``, ``TinyViT``, ``TextCNN``) the architecture name and
    ``model.config`` are added so ``load_model(path)`` can rebuild the model; other modules can be
    saved too and loaded with ``load_model(path, model=an_instance)``. Returns the weights path.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    path = _weights_path(path)
    meta = dict(metadata or {})
    arch = type(model).__name__
    if arch in ARCHITECTURES and hasattr(model, "config"):
        meta.setdefault("architecture", arch)
        meta.setdefault("config", model.config)
    meta.setdefault("format_version", FORMAT_VERSION)
    meta.setdefault("torch_version", torch.__version__)
    text = json.dumps(meta, indent=2, sort_keys=True)  # fails early on non-JSON metadata
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    atomic_write(metadata_path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def check_weights(path: str | os.PathLike) -> None:
    """Raise ``ValueError`` naming the file unless its safetensors header reads whole (a
    truncated or overwritten file fails here, before anything is loaded)."""
    from safetensors import safe_open

    path = _weights_path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise ValueError(f"path: cannot read weights from {str(path)!r}: {err}") from err


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Read the JSON sidecar of ``path``; ``ValueError`` if it is missing or not a JSON object."""
    meta_file = metadata_path(_weights_path(path))
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ValueError(f"path: no metadata file {str(meta_file)!r} next to the weights") from err
    except json.JSONDecodeError as err:
        raise ValueError(
            f"path: metadata file {str(meta_file)!r} is not valid JSON: {err}"
        ) from err
    if not isinstance(meta, dict):
        raise ValueError(f"path: metadata file {str(meta_file)!r} does not hold a JSON object")
    return meta


def load_model(
    path: str | os.PathLike, model: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Load weights saved by ``save_model``; returns ``(model, metadata)`` with the model in eval().

    Without ``model`` the architecture is rebuilt from the metadata; with ``model`` a deep copy of
    it receives the weights (the argument itself is not modified). Missing, truncated or
    mismatched files raise ``ValueError`` naming the file.
    """
    path = _weights_path(path)
    if not path.is_file():
        raise ValueError(f"path: weights file {str(path)!r} does not exist")
    meta = read_metadata(path)
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"path: cannot read weights from {str(path)!r}: {err}") from err
    if model is None:
        if "architecture" not in meta or "config" not in meta:
            raise ValueError(
                f"path: {str(metadata_path(path))!r} has no 'architecture'/'config'; pass "
                "model= (an instance of the saved architecture) to load the weights into"
            )
        target = build_model(meta["architecture"], meta["config"])
    else:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        target = copy.deepcopy(model)
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"path: weights in {str(path)!r} do not fit the model: {err}") from err
    return target.eval(), meta
