"""The one disk cache of visloupe: where it lives, how files are written, and what a key means.

- :func:`cache_root`: ``cache_dir`` if given, else ``$VISLOUPE_CACHE``, else the platform's user
  cache folder. Built-in weights, embeddings and predictions all live below it.
- :func:`atomic_write`: a file appears whole or not at all (temporary file, then ``os.replace``).
- :func:`save_array` / :func:`load_array`: ``.npy`` plus a JSON sidecar, no pickle.
- :func:`model_fingerprint`, :func:`preprocess_fingerprint`, :func:`digest`: cache keys.

**A cache key describes behaviour, not identity.** Two models get the same
:func:`model_fingerprint` only if all of these agree:

1. *architecture*: the module tree -- every submodule's qualified name and class (module and
   qualname) and a digest of the class's ``forward`` bytecode, so an edited class is a new key;
2. *configuration*: each module's ``extra_repr()`` (kernel, stride, **padding mode**, ``eps``,
   ``inplace``, pooling sizes ...) and its public plain attributes (names without a leading
   underscore holding ints, floats, strings, bools, tuples of those, ``None``: e.g. a Softplus
   ``beta``, a LogSumExp temperature, a flag read by a custom ``forward``), so swapping
   ``padding_mode`` or an activation changes the key even though no weight changes (keep
   bookkeeping a ``forward`` updates, such as a call counter, in a private attribute);
3. *hooks*: the forward and forward-pre hooks registered on each module (by the hook function's
   qualified name and bytecode), because a hook can rewrite activations;
4. *weights*: every parameter and buffer (persistent or not) -- names, shapes, dtypes, bytes.

A preprocess's key (:func:`preprocess_fingerprint`) combines a stable description of the callable
(its ``repr`` when that has no memory address, else its code, defaults and closure values) with
the **output it gives on a probe image** (the data's own first image), so a preprocess whose
settings changed in place (a new ``mean``) no longer hits the old entry. A callable with no
stable description, or one that gives different outputs on two calls (random augmentation), has
no key (``None``): callers then skip the disk cache rather than risk a false hit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "atomic_write",
    "cache_folder",
    "cache_root",
    "digest",
    "load_array",
    "model_fingerprint",
    "preprocess_fingerprint",
    "save_array",
]

logger = logging.getLogger(__name__)

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_PLAIN = (int, float, str, bool, type(None))


def _user_cache_dir() -> Path:
    """The platform's user cache folder for visloupe (no platformdirs dependency)."""
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local"))
        return base / "visloupe" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "visloupe"
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "visloupe"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else ``$VISLOUPE_CACHE``, else the user cache dir."""
    if cache_dir is not None:
        if not isinstance(cache_dir, str | os.PathLike):
            raise TypeError(f"cache_dir: expected a path or None, got {type(cache_dir).__name__}")
        return Path(cache_dir).expanduser()
    env = os.environ.get("VISLOUPE_CACHE")
    return Path(env).expanduser() if env else _user_cache_dir()


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cache_folder(cache: bool | str | os.PathLike, kind: str) -> Path | None:
    """Where results of ``kind`` (e.g. "embeddings") are cached: None for ``cache=False``,
    ``cache_root()/kind`` for True, or the folder given."""
    if cache is False:
        return None
    if cache is True:
        return cache_root() / kind
    if isinstance(cache, (str, os.PathLike)):
        return Path(cache).expanduser()
    raise TypeError(f"cache: expected True, False or a folder path, got {type(cache).__name__}")


def save_array(path: Path, arr: np.ndarray, meta: dict[str, Any]) -> None:
    """Write ``arr`` as ``path`` (.npy) and ``meta`` beside it (.json), each atomically. A
    read-only cache logs a warning instead of failing the analysis."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)

        atomic_write(path, write)
        atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(
            json.dumps(meta, indent=2, sort_keys=True, default=str), encoding="utf-8"))
    except OSError as err:
        logger.warning("could not write the cache file %s: %s", path, err)


def load_array(path: Path, rows: int) -> np.ndarray | None:
    """The array stored at ``path`` if it is readable and has ``rows`` rows, else None."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        logger.warning("cache file %s unreadable (%s); recomputing", path, err)
        return None
    if arr.ndim < 1 or arr.shape[0] != rows:
        logger.warning("cache file %s has shape %s, expected %d rows; recomputing",
                       path, arr.shape, rows)
        return None
    return arr


def digest(*parts: Any) -> str:
    """A short hex key of ``parts`` (JSON-encoded, keys sorted)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def _code_digest(fn: Any) -> str:
    code = getattr(fn, "__code__", None)
    if code is None:
        return type(fn).__qualname__
    return hashlib.blake2b(code.co_code + repr(code.co_consts).encode(),
                           digest_size=8).hexdigest()


def _plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    return isinstance(value, (tuple, list)) and all(isinstance(v, _PLAIN) for v in value)


def _module_config(module: nn.Module) -> str:
    """Class, forward code, extra_repr, plain attributes and hooks of one module (not children)."""
    cls = type(module)
    attrs = sorted((k, repr(v)) for k, v in vars(module).items()
                   if not k.startswith("_") and k != "training" and _plain(v))
    hooks = [(kind, getattr(h, "__qualname__", type(h).__qualname__), _code_digest(h))
             for kind in ("_forward_pre_hooks", "_forward_hooks")
             for h in getattr(module, kind, {}).values()]
    return repr((f"{cls.__module__}.{cls.__qualname__}", _code_digest(cls.forward),
                 module.extra_repr(), attrs, hooks))


def model_fingerprint(model: nn.Module) -> str:
    """A key of what ``model`` computes: architecture, module configuration, hooks and weights
    (see the module docstring for the exact rule)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    h = hashlib.blake2b(digest_size=16)
    for name, module in model.named_modules(remove_duplicate=False):
        h.update(repr((name, _module_config(module))).encode())
    tensors = [*model.named_parameters(remove_duplicate=False),
               *model.named_buffers(remove_duplicate=False)]
    for name, tensor in tensors:
        t = tensor.detach()
        h.update(repr((name, tuple(t.shape), str(t.dtype), str(t.device.type))).encode())
        if t.numel() and t.device.type != "meta":
            t = t.cpu().contiguous()
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _callable_description(fn: Any) -> str | None:
    """A session-independent description of a callable, or None if there is none."""
    text = repr(fn)
    if not _ADDRESS.search(text):
        return f"{type(fn).__qualname__}:{text}"
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    parts = [fn.__module__, fn.__qualname__, code.co_code.hex(), repr(code.co_consts),
             repr(getattr(fn, "__defaults__", None))]
    for cell in getattr(fn, "__closure__", None) or ():
        parts.append(repr(cell.cell_contents))
    key = "|".join(parts)
    return None if _ADDRESS.search(key) else key


def _output_digest(out: Any) -> str | None:
    if not isinstance(out, torch.Tensor):
        return None
    t = out.detach().cpu().contiguous()
    return hashlib.blake2b(repr((tuple(t.shape), str(t.dtype))).encode()
                           + t.reshape(-1).view(torch.uint8).numpy().tobytes(),
                           digest_size=16).hexdigest()


def preprocess_fingerprint(preprocess: Callable[[Any], torch.Tensor] | None,
                           probe: Any = None) -> str | None:
    """A key of what ``preprocess`` does, or None when it cannot be keyed safely.

    ``None`` (the default preprocess) is ``"default"``. Otherwise the key joins a stable
    description of the callable with the digest of ``preprocess(probe)`` computed twice (a
    preprocess that is not deterministic has no key); ``probe`` is an input it accepts (the
    data's first image). A failing probe call raises as the preprocess itself would.
    """
    if preprocess is None:
        return "default"
    described = _callable_description(preprocess)
    if described is None:
        return None
    if probe is None:
        return described
    first, second = _output_digest(preprocess(probe)), _output_digest(preprocess(probe))
    if first is None or first != second:
        return None
    return f"{described}|probe:{first}"
