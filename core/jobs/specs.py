"""What a job runs on, named by strings so the same names work on every worker of a cluster.

- data: ``"builtin:<name>"`` (:func:`visloupe.core.data.load_builtin`), a local folder of images
  (read as ``imagefolder``, labels from sub-folder names), or a Hugging Face dataset name or
  local dataset path (``datasets.load_dataset(name, split=..., **data_kwargs)``);
- model: a built-in name (:func:`visloupe.core.models.available_models`) or an importable
  ``"module:factory"`` whose call returns ``(model, preprocess)`` or a model.

Workers rebuild both from these strings (never from pickled objects), so the driver checks them
first and names the argument that is wrong.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from torch import nn

from ..data import ImageSource, as_image_source, builtin_names, load_builtin
from ..data.source import open_dataset

__all__ = ["DataSpec", "LoadedData", "ModelSpec", "Preprocess"]

Preprocess = Callable[[Any], torch.Tensor]
BUILTIN = "builtin:"


@dataclass(frozen=True)
class LoadedData:
    """A data spec opened: the Hugging Face ``dataset``, its :class:`ImageSource` ``source``
    (the columns chosen) and the rows a job covers (``rows``: ``0 .. n - 1``)."""

    dataset: datasets.Dataset
    source: ImageSource
    rows: int

    def fingerprint(self) -> str:
        """The data's key over the job's rows (:meth:`ImageSource.fingerprint`)."""
        return self.source.fingerprint(range(self.rows))


@dataclass(frozen=True)
class DataSpec:
    """A data set named by a string (see the module docstring), one split and its columns."""

    spec: str
    split: str | None = "test"
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    image_column: str | None = None
    label_column: str | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.spec, str) or not self.spec.strip():
            raise TypeError(f"data: expected a string ('builtin:<name>', a Hugging Face dataset "
                            f"name or a folder), got {self.spec!r}")
        if self.split is not None and not isinstance(self.split, str):
            raise TypeError(f"split: expected a split name or None, got {self.split!r}")
        if not isinstance(self.kwargs, Mapping):
            raise TypeError(f"data_kwargs: expected a dict, got {type(self.kwargs).__name__}")
        for name in ("image_column", "label_column"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name}: expected a column name or None, got {value!r}")

    @property
    def kind(self) -> str:
        """``"builtin"``, ``"folder"`` or ``"huggingface"``."""
        if self.spec.startswith(BUILTIN):
            return "builtin"
        return "folder" if Path(self.spec).expanduser().is_dir() else "huggingface"

    def to_dict(self) -> dict[str, Any]:
        """The plain description workers receive and the manifest records."""
        return {"spec": self.spec, "split": self.split, "kwargs": dict(self.kwargs),
                "image_column": self.image_column, "label_column": self.label_column,
                "limit": self.limit}

    def _dataset(self) -> datasets.Dataset:
        kind = self.kind
        if kind == "builtin":
            name = self.spec[len(BUILTIN):]
            if name not in builtin_names():
                raise ValueError(f"data: expected a built-in among {builtin_names()} after "
                                 f"'builtin:', got {self.spec!r}")
            try:
                return load_builtin(name, split=self.split or "test", **dict(self.kwargs))
            except (TypeError, ValueError) as err:
                raise type(err)(f"data: {self.spec!r}: {err}") from err
        if kind == "huggingface" and self.spec.startswith(("/", ".", "~")):
            raise ValueError(f"data: folder {self.spec!r} does not exist")
        if kind == "folder":
            if self.kwargs:
                raise ValueError(f"data_kwargs: a folder is read as it is; got {dict(self.kwargs)}")
            return open_dataset(str(Path(self.spec).expanduser()), self.split, "data")
        try:
            loaded = datasets.load_dataset(self.spec, split=self.split, **dict(self.kwargs))
        except (FileNotFoundError, ValueError, ConnectionError, OSError) as err:
            raise ValueError(f"data: cannot load {self.spec!r} (split={self.split!r}) with "
                             f"datasets.load_dataset: {type(err).__name__}: {err}") from err
        return open_dataset(loaded, self.split, "data")

    def load(self) -> LoadedData:
        """Open the data; errors name ``data``, ``split``, ``image_column`` or ``label_column``."""
        ds = self._dataset()
        if not isinstance(ds, datasets.Dataset):
            raise TypeError(f"data: {self.spec!r} opened as {type(ds).__name__}; jobs need a "
                            "datasets.Dataset with random access (not a stream)")
        source = as_image_source(ds, self.image_column, self.label_column)
        n = len(source)
        rows = n if self.limit is None else min(n, self.limit)
        return LoadedData(ds, source, rows)


@dataclass(frozen=True)
class ModelSpec:
    """A model named by a string: a built-in name or ``"module:factory"``."""

    spec: str

    def __post_init__(self) -> None:
        if not isinstance(self.spec, str) or not self.spec.strip():
            raise TypeError(f"model: expected a built-in name or 'module:factory', got "
                            f"{self.spec!r}")

    def load(self) -> tuple[nn.Module, Preprocess | None]:
        """``(model, preprocess)``; the model in eval mode."""
        from ..models import available_models, pretrained

        if ":" not in self.spec:
            names = list(available_models())
            if self.spec not in names:
                raise ValueError(f"model: expected a built-in name among {names} or an "
                                 f"importable 'module:factory', got {self.spec!r}")
            model, preprocess = pretrained(self.spec)
        else:
            model, preprocess = _call_factory(self.spec)
        return model.eval(), preprocess


def _call_factory(spec: str) -> tuple[nn.Module, Preprocess | None]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model: expected 'module:factory', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"model: cannot import module {module_name!r} of {spec!r} ({err}); it "
                         "must be importable where the job runs (on a cluster: on every worker, "
                         "e.g. installed or shipped with the runtime_env)") from err
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"model: module {module_name!r} has no attribute {attr!r} "
                             f"(from {spec!r})")
        target = getattr(target, part)
    if isinstance(target, nn.Module):
        return target, None
    if not callable(target):
        raise TypeError(f"model: {spec!r} is a {type(target).__name__}, not a factory")
    if inspect.signature(target).parameters and any(
            p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY,
                                                                p.POSITIONAL_OR_KEYWORD)
            for p in inspect.signature(target).parameters.values()):
        raise TypeError(f"model: factory {spec!r} must be callable without arguments")
    made = target()
    preprocess: Preprocess | None = None
    if isinstance(made, tuple) and len(made) == 2:
        made, preprocess = made
    if not isinstance(made, nn.Module):
        raise TypeError(f"model: factory {spec!r} returned {type(made).__name__}; expected a "
                        "torch.nn.Module or (model, preprocess)")
    if preprocess is not None and not callable(preprocess):
        raise TypeError(f"model: factory {spec!r} returned a preprocess of type "
                        f"{type(preprocess).__name__}; expected a callable PIL.Image -> Tensor")
    return made, preprocess


def environment_path() -> str:
    """The driver's import path as a ``PYTHONPATH`` value, so that a local Ray cluster's workers
    import what the driver imports (``module:factory`` models next to a script or a test)."""
    return os.pathsep.join(p for p in dict.fromkeys(os.path.abspath(p) for p in
                                                    sys.path if p)
                           if os.path.isdir(p))
