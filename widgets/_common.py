"""Plumbing shared by the explorers: argument normalisation, errors shown in the widget,
predictions, PNG export of a rendered view and widget-tree clean-up. Nothing here draws."""

from __future__ import annotations

import functools
import html
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from visloupe.core.checks import (  # noqa: F401 - the shared checks, used by the explorers
    check_bool,
    check_int,
)
from visloupe.core.data import HIGH_BIT_MODES, to_rgb

from . import render
from .style import BAD, TEXT_S

logger = logging.getLogger("visloupe.widgets")

Preprocess = Callable[[Image.Image], torch.Tensor]


def resolve_models(models: Any) -> dict[str, nn.Module]:
    """One ``nn.Module`` -> ``{"model": m}``; a mapping name -> module is checked and copied."""
    if isinstance(models, nn.Module):
        return {"model": models}
    if isinstance(models, Mapping) and models:
        out: dict[str, nn.Module] = {}
        for name, model in models.items():
            if not isinstance(model, nn.Module):
                raise TypeError(
                    f"models[{name!r}]: expected a torch.nn.Module, got {type(model).__name__}"
                )
            out[str(name)] = model
        return out
    raise TypeError(
        "models: expected a torch.nn.Module or a non-empty dict {name: nn.Module}, got "
        f"{type(models).__name__}{' (empty)' if isinstance(models, Mapping) else ''}"
    )


def default_preprocess(model: nn.Module) -> Preprocess:
    """PIL -> float tensor in [0, 1], grayscale when the model's first conv takes one channel
    (else RGB), at the image's own size. Used when the caller passes no ``preprocess``."""
    from visloupe.core.models.adapter import expected_in_channels

    channels = expected_in_channels(model) or 3
    mode = "L" if channels == 1 else "RGB"

    def preprocess(image: Image.Image) -> torch.Tensor:
        if image.mode in HIGH_BIT_MODES:  # PIL's convert clips 16-bit/float values
            image = to_rgb(image)
        arr = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
        if arr.ndim == 2:
            arr = arr[None]
        else:
            arr = arr.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(arr))

    preprocess.mode = mode  # type: ignore[attr-defined]
    return preprocess


def resolve_preprocess(preprocess: Any, models: Mapping[str, nn.Module]) -> dict[str, Preprocess]:
    """One callable for every model, a dict name -> callable, or None (``default_preprocess``)."""
    if preprocess is None:
        return {name: default_preprocess(model) for name, model in models.items()}
    if callable(preprocess) and not isinstance(preprocess, Mapping):
        return {name: preprocess for name in models}
    if isinstance(preprocess, Mapping):
        missing = [name for name in models if name not in preprocess]
        out = {}
        for name, model in models.items():
            fn = preprocess.get(name)
            if fn is not None and not callable(fn):
                raise TypeError(
                    f"preprocess[{name!r}]: expected a callable PIL.Image -> Tensor, got "
                    f"{type(fn).__name__}"
                )
            out[name] = fn if fn is not None else default_preprocess(model)
        if missing:
            logger.info("no preprocess for %s: using the default [0, 1] tensor", missing)
        return out
    raise TypeError(
        "preprocess: expected None, a callable PIL.Image -> Tensor (C, H, W) or a dict "
        f"{{model name: callable}}, got {type(preprocess).__name__}"
    )


def preprocess_image(preprocess: Preprocess, image: Image.Image, name: str) -> torch.Tensor:
    """``preprocess(image)`` checked to be a ``(C, H, W)`` float tensor. An integer tensor
    (uint8 0..255, say) is refused, as the core explainers refuse it: cast to float, it would
    reach the model 255 times too bright and unnormalised."""
    x = preprocess(image)
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"preprocess for {name!r}: expected it to return a torch.Tensor (C, H, W), got "
            f"{type(x).__name__}"
        )
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3:
        raise ValueError(
            f"preprocess for {name!r}: expected a (C, H, W) tensor, got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"preprocess for {name!r}: expected it to return a float tensor, got dtype "
            f"{x.dtype}; scale and normalise integer images in preprocess (e.g. "
            "models.ImagePreprocess, or x.float() / 255 and normalise)"
        )
    return x


def model_frame(image: Image.Image, preprocess: Any) -> Image.Image:
    """The frame a map of ``preprocess(image)`` belongs on: what the model sees (its crop and
    resize, core ``evaluation.model_view``), or the raw image when that cannot be known."""
    from visloupe.core.evaluation import model_view

    try:
        view = model_view(image, preprocess)
    except (TypeError, ValueError):
        view = None
    return image if view is None else view


def predict_proba(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Softmax probabilities ``(N, K)`` of ``model`` on ``x (N, C, H, W)``, in eval mode (the
    model's own training flags are restored), without gradients."""
    from visloupe.core.models import predict

    out = predict(model, x)
    if out.dim() != 2:
        raise ValueError(
            f"model output: expected logits of shape (N, num_classes), got {tuple(out.shape)}"
        )
    return torch.softmax(out.float(), dim=1).cpu().numpy()


def error_html(messages: list[str]) -> str:
    """The error area's HTML: one red line per message (escaped), empty when none."""
    if not messages:
        return ""
    lines = "".join(f"<div>{html.escape(m)}</div>" for m in messages)
    return (
        f'<div class="visloupe-error" style="color:{BAD};white-space:pre-wrap;'
        f'font-family:monospace;font-size:{TEXT_S}px">{lines}</div>'
    )


def guarded(method: Callable) -> Callable:
    """Decorate an explorer callback so an exception is shown in its error area (and logged)
    instead of vanishing in the front end's console."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as error:  # noqa: BLE001 - shown to the user, never swallowed
            logger.exception("%s failed", method.__name__)
            self._report_error(f"{type(error).__name__}: {error}")
            return None

    return wrapper


class GridExport:
    """PNG export of an explorer's current view: the grid image its ``_render()`` draws into
    ``self._grid`` (the ``_png`` of :class:`~visloupe.widgets.base.ExplorerBase`)."""

    _grid: Image.Image | None

    def _render(self) -> None:
        raise NotImplementedError

    def _png(self) -> bytes:
        if self._grid is None:
            self._render()
        return render.to_png(self._grid, compress_level=6)


def close_tree(widget: Any) -> None:
    """Close ``widget`` and every widget below it (children, and the per-widget layout/style)."""
    for child in getattr(widget, "children", ()) or ():
        close_tree(child)
    for attr in ("layout", "style"):
        sub = getattr(widget, attr, None)
        if sub is not None and hasattr(sub, "close"):
            sub.close()
    widget.close()


class LRU(OrderedDict):
    """A small least-recently-used dict (``maxsize`` entries)."""

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    def get(self, key: Hashable, default: Any = None) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def put(self, key: Hashable, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.maxsize:
            self.popitem(last=False)


def display_map(raw: Any, percentile: float = 100.0, signed: bool = True) -> tuple[np.ndarray,
                                                                                 float | None]:
    """The one place maps are clipped for display: ``(h, w)`` map -> (map to draw, ``vmax``).

    Absolute views take ``|map|``; values beyond the ``percentile``-th percentile of ``|map|``
    are clipped with core ``attribution.clip_percentile`` and ``vmax`` is the clipped maximum
    (None for an all-zero map, so the colormap stays flat)."""
    from visloupe.core.attribution import clip_percentile

    t = torch.as_tensor(np.asarray(raw, dtype=np.float32))
    t = torch.nan_to_num(t if signed else t.abs())
    if float(percentile) < 100.0:
        t = clip_percentile(t, float(percentile))
    top = float(t.abs().max()) if t.numel() else 0.0
    return t.numpy(), (top if top > 0 else None)


def original_ids(data: Any, n: int) -> list[int] | None:
    """The ids rows of ``data`` had in the dataset they were selected from (core
    ``ImageSource.select`` keeps them as ``row_id``), or None when ``data`` is not a selection."""
    from visloupe.core.data import ImageSource

    if not isinstance(data, ImageSource):
        return None
    ids = [data.row_id(i) for i in range(n)]
    return None if ids == list(range(n)) else ids


def open_results(results: Any, job: str) -> Any:
    """A :class:`visloupe.core.jobs.Results` of ``job`` from a folder path or Results."""
    from visloupe.core.jobs import Results, load_results

    res = results if isinstance(results, Results) else load_results(results)
    res.require(job)
    return res


def results_model(res: Any, model: Any) -> tuple[nn.Module, Any]:
    """``(model, preprocess)`` of a job: reopened from its manifest, or the ``model`` given,
    checked to be the job's (same fingerprint)."""
    from visloupe.core.cache import model_fingerprint

    if model is None:
        return res.open_model()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected None or a torch.nn.Module, got {type(model).__name__}")
    if model_fingerprint(model) != res.manifest["model"]["fingerprint"]:
        raise ValueError(f"model: not the model of the job in {str(res.path)!r} (its weights or "
                         f"code differ from {res.model_name!r}'s); pass that model or None")
    return model, None


def check_results_data(res: Any, source: Any) -> None:
    """Raise ValueError naming ``data`` unless ``source``'s first rows are the job's."""
    recorded = res.manifest["data"]
    rows = int(recorded["rows"])
    if source.length is None or source.length < rows \
            or source.fingerprint(range(rows)) != recorded["fingerprint"]:
        raise ValueError(f"data: not the data of the job in {str(res.path)!r} "
                         f"({recorded['spec']!r}, split {recorded['split']!r}, {rows} rows); "
                         "pass that data set or None to reopen it")


def open_job(results: Any, job: str, model: Any, data: Any, kwargs: Mapping[str, Any],
             reserved: Sequence[str]) -> tuple[Any, nn.Module | None, Any, Any]:
    """What a widget's ``from_results`` starts from: ``(results, model, preprocess, source)``
    of a ``job``'s folder, the model and data reopened from its manifest unless given (then
    checked against its fingerprints; ``model=False``: no model); ``reserved`` constructor
    arguments the results set themselves are refused in ``kwargs``."""
    from visloupe.core.data import as_image_source

    res = open_results(results, job)
    for name in reserved:
        if name in kwargs:
            raise TypeError(f"{name}: set by the results (the job's own)")
    net, pre = (None, None) if model is False else results_model(res, model)
    source = as_image_source(data) if data is not None else res.open_data().source
    check_results_data(res, source)
    return res, net, pre, source
