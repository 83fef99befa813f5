"""SaliencyExplorer: browse a dataset and compare saliency maps of several models and methods.

The successor to Captum Insights' ``AttributionVisualizer`` (removed in Captum 0.9), built only
from core ipywidgets so it renders wherever ipywidgets 7.6+ or 8 do (JupyterLab 3/4, Notebook 7,
Colab, VS Code) with no server, iframe or separately built front end. It fixes Insights' pain
points by design: random-access paging and seeking instead of four examples from a one-pass
generator; grayscale, RGBA and any image size; every registered method with controls built from
its ``ParamSpec``; explicit, cached, progress-reporting computation; errors shown in the widget.

Work is split in two: *expensive* steps (the model: predictions and attributions) run on an
explicit action -- Explain, a new sample, target, model, method or a parameter slider released --
and are cached by ``(sample index, model, method, params, target)``; *cheap* steps (alpha,
colormap, percentile clip, signed/absolute, overlay mode) re-render the cached maps with numpy and
PIL and never call the model.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as w
import numpy as np
import torch
from PIL import Image
from visloupe.core.checks import check_batch_size, check_not_preprocess

from . import render
from ._common import (
    LRU,
    GridExport,
    check_bool,
    check_int,
    display_map,
    error_html,
    guarded,
    logger,
    model_frame,
    open_job,
    original_ids,
    predict_proba,
    preprocess_image,
    resolve_models,
    resolve_preprocess,
)
from .base import (
    ExplorerBase,
    Scale,
    caption_row,
    download_link,
    escape,
    image_view,
    labelled,
    toggle_buttons,
)
from .browser import SampleBrowser

__all__ = ["SaliencyExplorer"]

DEFAULT_METHODS = ("saliency", "integrated_gradients", "grad_cam")
"""Shown when ``methods=None`` (those of them that are registered)."""

COLORMAPS = (
    "auto", "inferno", "viridis", "magma", "jet", "turbo", "hot", "gray",
    "RdBu_r", "coolwarm", "bwr", "seismic",
)
"""``auto``: ``inferno`` for absolute maps, the diverging ``RdBu_r`` (red +, blue -) for signed."""

PREDICTED, LABEL, ALL = "predicted", "label", "all"

_POSITIONAL = frozenset({"model", "inputs", "target", "method"})
"""``explain``'s positional parameters; a method parameter with one of these names (IG's
``method``) cannot travel as a keyword and becomes the spec's default instead."""


def _resolve_methods(methods: Any) -> dict[str, Any]:
    """``{column title: core Explainer}`` (the explainer contract of ``core.attribution``):
    registry names get their registry label as title, callables their ``__name__``."""
    from visloupe.core.attribution import available_methods, method_spec, resolve_explainer

    if methods is None:
        names = [m for m in DEFAULT_METHODS if m in available_methods()]
        methods = names or available_methods()[:2]
    if isinstance(methods, str) or callable(methods):
        methods = [methods]
    if isinstance(methods, Mapping):
        items = [(str(k), v) for k, v in methods.items()]
    elif isinstance(methods, Sequence):
        items = []
        for i, m in enumerate(methods):
            if isinstance(m, str):
                spec = method_spec(m)  # raises ValueError naming the available methods
                items.append((str(getattr(spec, "label", "") or m), m))
            else:
                items.append((str(getattr(m, "name", None) or getattr(m, "__name__", None)
                                  or f"method {i}"), m))
    else:
        raise TypeError(
            "methods: expected None, a method name, a callable (model, inputs, target) -> "
            f"(N, H, W), a list of those or a dict {{title: those}}, got {type(methods).__name__}"
        )
    if not items:
        raise ValueError("methods: expected at least one method, got none")
    out: dict[str, Any] = {}
    for title, m in items:
        if not (isinstance(m, str) or callable(m) or isinstance(m, tuple)):
            raise TypeError(
                f"methods[{title!r}]: expected a method name or a callable, got {type(m).__name__}"
            )
        out[title] = resolve_explainer(m, name=title)
    return out


def _spec_of(explainer: Any) -> Any:
    """The registry ``MethodSpec`` behind a core Explainer (None for a user callable)."""
    from visloupe.core.attribution import method_spec

    return method_spec(explainer.method) if explainer.method is not None else None


def _param_widget(spec: Any) -> w.Widget:
    """:func:`_param_control` with the parameter's description as its hover text."""
    control = _param_control(spec)
    text = getattr(spec, "description", "")
    for trait in ("tooltip", "description_tooltip"):  # ipywidgets 8, ipywidgets 7
        if text and control.has_trait(trait):
            setattr(control, trait, text)
            break
    return control


def _param_control(spec: Any) -> w.Widget:
    """A control for one ``ParamSpec``; sliders fire on release (``continuous_update=False``)."""
    # a readable label ("internal batch size", not "internal_batch_size")
    common = {"description": spec.name.replace("_", " "),
              "style": {"description_width": "initial"}}
    kind = spec.kind
    if kind == "bool":
        return w.Checkbox(value=bool(spec.default), indent=False, **common)
    if kind == "choice":
        return w.Dropdown(options=list(spec.choices), value=spec.default, **common)
    bounded = spec.min is not None and spec.max is not None
    if kind == "int":
        if bounded and spec.max - spec.min > 10_000:  # seeds and the like: type a number
            return w.BoundedIntText(value=int(spec.default), min=int(spec.min),
                                    max=int(spec.max), **common)
        if bounded:
            return w.IntSlider(
                value=int(spec.default), min=int(spec.min), max=int(spec.max),
                step=int(spec.step or 1), continuous_update=False, **common,
            )
        return w.IntText(value=int(spec.default), **common)
    if bounded:
        return w.FloatSlider(
            value=float(spec.default), min=float(spec.min), max=float(spec.max),
            step=float(spec.step or (spec.max - spec.min) / 100), continuous_update=False,
            readout_format=".3g", **common,
        )
    return w.FloatText(value=float(spec.default), **common)


class SaliencyExplorer(GridExport, ExplorerBase, w.VBox):
    """Page through ``data`` and show saliency maps in a grid: rows = models, columns = the input
    and each selected method.

    Args:
        models: one ``nn.Module`` or a dict ``{name: module}`` returning logits ``(N, K)`` (or a
            tuple / Hugging Face output holding them). Never modified: analysed in eval mode with
            the training flags restored.
        data: anything ``visloupe.core.data.as_image_source`` accepts (HF dataset, torch dataset,
            folder, list of images, arrays).
        methods: None (saliency, integrated gradients, Grad-CAM), registry names, callables
            ``(model, inputs, target) -> (N, H, W)``, or a dict ``{title: name or callable}``.
        preprocess: ``PIL.Image -> Tensor (C, H, W)``, one for all models or a dict per model
            name; None = the image as a [0, 1] tensor (grayscale for one-channel models).
        class_names: overrides the names the data carries.
        top_k: prediction bars per model (click one to explain that class).
        cell: display size in pixels of each grid cell (images are fitted, maps upsampled).
        auto_explain: compute maps as soon as the sample/target/model/method/params change; if
            False only the Explain button computes.
        batch_size: forwarded to ``explain`` (rows per model pass, e.g. IG steps).
        cache_size: number of maps kept (least recently used are dropped); 0 keeps none:
            the maps on view are still computed and shown, and recomputed when you come back.
        stream_page: for a stream of unknown length (``IterableDataset``), how many items are
            read (and buffered) at a time; stepping past the last one reads the next page.
        ids: the id shown for each row (default: ``data.parent_index`` when ``data`` is a core
            ``profiling.subset`` such as ``DatasetExplorer.selection``, else the row number).
    """

    _css_class = "visloupe-saliency-explorer"

    def __init__(
        self,
        models: Any,
        data: Any,
        methods: Any = None,
        *,
        preprocess: Any = None,
        class_names: Sequence[str] | None = None,
        top_k: int = 3,
        cell: int = 160,
        auto_explain: bool = True,
        batch_size: int | None = None,
        cache_size: int = 512,
        stream_page: int = 64,
        ids: Sequence[int] | None = None,
    ) -> None:
        from visloupe.core.data import as_image_source

        super().__init__()
        self._init_base("explain")
        self.add_class("visloupe-saliency-explorer")
        check_int("top_k", top_k)
        check_bool("auto_explain", auto_explain)
        check_int("cell", cell, 16, "pixels")
        check_int("cache_size", cache_size, 0, "maps kept")
        check_int("stream_page", stream_page)
        self._models = resolve_models(models)
        self._pre = resolve_preprocess(preprocess, self._models)
        self._source = as_image_source(data)
        self._known = 0
        self._stream_page = stream_page
        self._extend(stream_page)
        if self._length() == 0:
            raise ValueError("data: expected at least one image, got an empty source")
        self._methods = _resolve_methods(check_not_preprocess("methods", methods))
        self._specs = {title: _spec_of(e) for title, e in self._methods.items()}
        self._ids = self._init_ids(data, ids)
        self._inputs: LRU = LRU(64)
        self._probs: dict[tuple[int, str], np.ndarray] = {}
        self._class_names = self._init_class_names(class_names)
        self._top_k = min(top_k, max(1, len(self._class_names)))
        self._cell = cell
        self._batch_size = check_batch_size(batch_size)
        # caches: maps by (index, model, method, params, target); the rest are cheap helpers
        self._maps: LRU = LRU(cache_size)
        self._fresh: dict[tuple, np.ndarray] = {}  # maps of the view on screen (any cache_size)
        self._cell_errors: dict[tuple, str] = {}
        self._display: LRU = LRU(32)
        self._labels: np.ndarray | None = None
        self._order: list[int] = list(range(self._length()))
        self._grid: Image.Image | None = None
        self._suspend = 0
        self._bar_retarget: Any = None  # the target before a top-k bar was clicked
        self._build_ui(auto_explain)
        self._refresh(compute=auto_explain)

    @classmethod
    def from_results(cls, results: Any, model: Any = None, data: Any = None,
                     preprocess: Any = None, **kwargs: Any) -> SaliencyExplorer:
        """Browse the stored maps of an ``attribution`` job (:func:`visloupe.core.jobs.run`,
        here or on a cluster) without recomputing them.

        ``results``: the results folder or its :func:`~visloupe.core.jobs.load_results`.
        ``model``, ``data``, ``preprocess``: default to what the manifest names, reopened (a
        model or data given must be the job's: their fingerprints are checked). Rows show
        their data set ids; other targets or parameters are computed as usual. ``kwargs`` go
        to the constructor (``top_k``, ``cell``, ...)."""
        from visloupe.core.jobs import decode_maps

        res, net, pre, source = open_job(results, "attribution", model, data, kwargs,
                                         ("methods", "ids"))
        table = res["maps"]
        if "map" not in table.columns:
            raise ValueError(f"results: the job in {str(res.path)!r} ran with store_maps=False;"
                             " there are no maps to browse")
        changed = {k: res.manifest["options"].get(k) for k in ("postprocess", "reduce")}
        if any(v is not None for v in changed.values()):
            raise ValueError(f"results: the job stored post-processed maps ({changed}); this "
                             "view shows raw maps (run the job with the defaults)")
        rows = res.row_ids
        auto = bool(kwargs.pop("auto_explain", True))
        explorer = cls({res.model_name: net}, source.select(rows), res.explainers(),
                       preprocess=pre if preprocess is None else preprocess,
                       ids=rows, auto_explain=False,
                       cache_size=max(int(kwargs.pop("cache_size", 512)), len(table)), **kwargs)
        explorer._preload(table, decode_maps(table), res, rows)
        explorer.auto_explain.value = auto
        explorer._refresh(compute=auto)
        return explorer

    def _preload(self, table: Any, maps: np.ndarray, res: Any, rows: Sequence[int]) -> None:
        """Put a job's maps in the cache under the keys this view computes them by: the
        controls take the job's parameters and target, so browsing hits the cache."""
        position = {row: k for k, row in enumerate(rows)}
        specs = res.manifest["options"]["explainers"]
        self._suspend += 1
        try:
            if res.manifest["options"].get("target") == "label":
                self.target.value = LABEL
            for title, (_method, params) in specs.items():
                for name, control in self.param_widgets.get(title, {}).items():
                    if name in params:
                        control.value = params[name]
        finally:
            self._suspend -= 1
        model_name = next(iter(self._models))
        for rec, raw in zip(table.itertuples(index=False), maps, strict=True):
            key = (position[int(rec.row_id)], model_name, str(rec.explainer),
                   self._params(str(rec.explainer)), int(rec.target))
            self._maps.put(key, np.asarray(raw, dtype=np.float32))

    # ------------------------------------------------------------------ set-up

    def _length(self) -> int:
        """Items known to exist: the source's length, or for a stream of unknown length the
        number read so far (paging past the end pulls more, see ``_extend``)."""
        n = self._source.length
        return int(n) if n is not None else self._known

    def _extend(self, count: int) -> int:
        """Read up to ``count`` more items of a stream of unknown length; returns how many."""
        if self._source.length is not None:
            return 0
        added = 0
        for _ in range(count):
            try:
                self._source[self._known]
            except IndexError:
                break
            self._known += 1
            added += 1
        return added

    def _init_ids(self, data: Any, ids: Sequence[int] | None) -> list[int] | None:
        if ids is None:
            return original_ids(data, self._length()) if self._source.length is not None \
                else None
        if isinstance(ids, (str, bytes)) or not all(
                isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids):
            raise TypeError(f"ids: expected a sequence of ints, got {ids!r:.80}")
        ids = [int(i) for i in ids]
        if self._source.length is not None and len(ids) != self._length():
            raise ValueError(f"ids: expected one id per item ({self._length()}), got {len(ids)}")
        return ids

    def _init_class_names(self, class_names: Sequence[str] | None) -> list[str]:
        # the first sample's predictions, kept: the first view shows them anyway
        widths = {name: len(self._proba(0, name)) for name in self._models}
        if len(set(widths.values())) > 1:
            raise ValueError(f"models: expected the same classes for every model, got output "
                             f"widths {widths}")
        if class_names is not None:
            if isinstance(class_names, str):
                raise TypeError(f"class_names: expected a sequence of names, got the string "
                                f"{class_names!r}")
            names = [str(c) for c in class_names]
            k = next(iter(widths.values()))
            if len(names) != k:
                raise ValueError(f"class_names: expected {k} names (the models have {k} "
                                 f"outputs), got {len(names)}")
        else:
            names = list(getattr(self._source, "class_names", None) or [])
        if not names:  # fall back to the models' output width
            names = [str(i) for i in range(next(iter(widths.values())))]
        return names

    def _build_ui(self, auto_explain: bool) -> None:
        n = len(self._order)
        wide = {"description_width": "initial"}
        # navigation: the sample browser SplitIGExplorer shares
        self.browser = SampleBrowser(n, on_change=self._on_sample, report=self._report_error,
                                     on_past_end=self._read_more, ids=self._ids)
        self.prev_button, self.next_button = self.browser.prev_button, self.browser.next_button
        self.position, self.seek = self.browser.position, self.browser.seek
        self.status = self.browser.status
        # filters
        self.class_filter = w.Dropdown(
            options=[("all classes", ALL)] + [(c, i) for i, c in enumerate(self._class_names)],
            value=ALL, description="class", style=wide,
        )
        pred_options: list[tuple[str, Any]] = [("all predictions", ALL)]
        for name in self._models:
            pred_options += [(f"{name} correct", (name, True)), (f"{name} wrong", (name, False))]
        self.prediction_filter = w.Dropdown(
            options=pred_options, value=ALL, description="show", style=wide
        )
        # what to explain
        names = list(self._models)
        self.model_select = w.SelectMultiple(
            options=names, value=tuple(names), description="models", rows=min(4, len(names)),
            style=wide,
        )
        titles = list(self._methods)
        self.method_select = w.SelectMultiple(
            options=titles, value=tuple(titles), description="methods",
            rows=min(6, len(titles)), style=wide,
        )
        self.target = w.Dropdown(
            options=[("predicted class", PREDICTED), ("label", LABEL)]
            + [(f"{i}: {c}", i) for i, c in enumerate(self._class_names)],
            value=PREDICTED, description="target", style=wide,
        )
        self.explain_button = w.Button(description="Explain", button_style="primary", icon="play")
        self.auto_explain = w.Checkbox(value=auto_explain, description="auto", indent=False)
        # method parameters, from the registry's ParamSpecs
        self.param_widgets: dict[str, dict[str, w.Widget]] = {}
        param_boxes = []
        for title in self._methods:
            specs = getattr(self._specs[title], "params", ()) or ()
            if not specs:
                continue
            controls = {spec.name: _param_widget(spec) for spec in specs}
            self.param_widgets[title] = controls
            param_boxes.append(w.VBox([w.HTML(f"<b>{escape(title)}</b>"), *controls.values()]))
        self.params_box = w.HBox(param_boxes)
        # overlay (cheap)
        self.alpha = w.FloatSlider(
            value=0.5, min=0.0, max=1.0, step=0.05, description="alpha", continuous_update=True,
            style=wide,
        )
        self.cmap = w.Dropdown(options=list(COLORMAPS), value="auto", description="colormap",
                               style=wide)
        self.clip = w.FloatSlider(
            value=99.0, min=90.0, max=100.0, step=0.1, description="clip percentile",
            continuous_update=True, style=wide,
        )
        self.sign = toggle_buttons(["absolute", "signed"], "absolute")
        self.mode = toggle_buttons(render.MODES, "blend")
        # output (the error area and the progress bar come from ExplorerBase)
        self.errors = self.error_area
        self.view = image_view()  # the first row of tiles (one row per model)
        self.captions = w.HTML()  # its captions, as text under the tiles
        self.captions.add_class("visloupe-captions")
        self.more_rows = w.VBox()  # the rows of further models: (tiles, captions) each
        self.topk_box = w.VBox()
        self._topk_buttons: dict[str, list[tuple[w.Button, w.FloatProgress]]] = {}
        self._topk_classes: dict[str, list[int]] = {}
        rows = []
        for name in self._models:
            pairs = []
            for _ in range(self._top_k):
                button = w.Button(description="", layout=w.Layout(width="150px"))
                button.add_class("visloupe-topk")
                bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, layout=w.Layout(width="90px"))
                button.on_click(self._make_retarget(name, len(pairs)))
                pairs.append((button, bar))
            self._topk_buttons[name] = pairs
            self._topk_classes[name] = [0] * self._top_k
            rows.append(w.VBox([w.HTML(f"<b>{escape(name)}</b> top-{self._top_k}")]
                               + [w.HBox([b, p]) for b, p in pairs]))
        self.topk_box.children = rows
        self.save_path = w.Text(value="visloupe-saliency.png", description="file", style=wide,
                                layout=w.Layout(width="260px"))
        self.save_button = w.Button(description="Export PNG", icon="download",
                                    tooltip="a download link for the view, in this browser")
        self.download = w.HTML()  # the link the export makes (data: URL, no server path)
        self.download.add_class("visloupe-download")
        self.children = [
            self.browser,
            w.HBox([self.class_filter, self.prediction_filter]),
            w.HBox([self.model_select, self.method_select,
                    w.VBox([self.target, w.HBox([self.explain_button, self.auto_explain])])]),
            self.params_box,
            w.HBox([self.alpha, self.cmap, self.clip]),
            w.HBox([labelled("values", self.sign), labelled("show", self.mode)]),
            w.HBox([self.progress_box, self.save_path, self.save_button, self.download]),
            self.errors,
            w.HBox([w.VBox([self.view, self.captions, self.more_rows]), self.topk_box]),
        ]
        # wiring
        self.class_filter.observe(self._on_filter, names="value")
        self.prediction_filter.observe(self._on_filter, names="value")
        for control in (self.model_select, self.method_select, self.target):
            control.observe(self._on_expensive, names="value")
        for controls in self.param_widgets.values():
            for control in controls.values():
                control.observe(self._on_expensive, names="value")
        for control in (self.alpha, self.cmap, self.clip, self.sign, self.mode):
            control.observe(self._on_cheap, names="value")
        self.explain_button.on_click(lambda _: self.explain())
        self.save_button.on_click(lambda _: self._save_clicked())

    # ------------------------------------------------------------------ public API

    @property
    def index(self) -> int | None:
        """Row of the sample on view in ``data`` (None when the filters leave nothing)."""
        return self.browser.index

    @property
    def sample_id(self) -> int | None:
        """The id shown for the sample on view: its id in the dataset a selection came from
        (``data.parent_index``), else its row."""
        index = self.index
        return None if index is None else self.browser.id_of(index)

    @property
    def visible_indices(self) -> list[int]:
        """Dataset indices that pass the current filters, in paging order."""
        return list(self._order)

    def show(self, index: int) -> None:
        """Seek to dataset ``index`` (it must pass the current filters)."""
        if index not in self._order:
            raise ValueError(
                f"index: expected a dataset index that passes the filters "
                f"({len(self._order)} of {self._length()} do), got {index}"
            )
        self.browser.go_to(index)

    @guarded
    def explain(self) -> None:
        """Compute every missing map of the current view (the Explain button), then render."""
        self._refresh(compute=True)

    def maps(self) -> dict[tuple[str, str], np.ndarray]:
        """The raw cached maps ``(h, w)`` of the current view, keyed by ``(model, method)``."""
        out = {}
        for model_name in self.model_select.value:
            for title in self.method_select.value:
                key = self._key(model_name, title)
                raw = self._cached_map(key)
                if raw is not None:
                    out[(model_name, title)] = raw
        return out

    def _cached_map(self, key: tuple | None) -> np.ndarray | None:
        if key is None:
            return None
        raw = self._maps.get(key)
        return raw if raw is not None else self._fresh.get(key)

    def cache_info(self) -> dict[str, int]:
        """Entry counts of the caches (maps, predictions, inputs)."""
        return {"maps": len(self._maps), "predictions": len(self._probs),
                "inputs": len(self._inputs)}

    def clear_cache(self) -> None:
        """Forget every computed map and prediction (the next view recomputes)."""
        self._maps.clear()
        self._fresh.clear()
        self._cell_errors.clear()
        self._probs.clear()
        self._inputs.clear()
        self._display.clear()

    # ------------------------------------------------------------------ helpers: data and model

    def _sample(self, index: int) -> Any:
        return self._source[index]

    def _input(self, index: int, model_name: str) -> torch.Tensor:
        key = (index, model_name)
        x = self._inputs.get(key)
        if x is None:
            x = preprocess_image(self._pre[model_name],
                                 self._source.model_image(self._sample(index).image), model_name)
            self._inputs.put(key, x)
        return x

    def _proba(self, index: int, model_name: str) -> np.ndarray:
        key = (index, model_name)
        if key not in self._probs:
            self._probs[key] = predict_proba(
                self._models[model_name], self._input(index, model_name)[None]
            )[0]
        return self._probs[key]

    def _label(self, index: int) -> int | None:
        if self._labels is not None and index < len(self._labels):
            value = self._labels[index]
            return None if value < 0 else int(value)
        label = self._sample(index).label
        return None if label is None else int(label)

    def _target_for(self, index: int, model_name: str) -> int:
        choice = self.target.value
        if choice == PREDICTED:
            return int(np.argmax(self._proba(index, model_name)))
        if choice == LABEL:
            label = self._label(index)
            if label is None:
                raise ValueError(f"target: sample {index} has no label; pick a class or "
                                 "'predicted class'")
            return label
        return int(choice)

    def _params(self, title: str) -> tuple[tuple[str, Any], ...]:
        controls = self.param_widgets.get(title, {})
        return tuple(sorted((name, c.value) for name, c in controls.items()))

    def _key(self, model_name: str, title: str) -> tuple | None:
        index = self.index
        if index is None or (index, model_name) not in self._probs:
            return None
        try:
            target = self._target_for(index, model_name)
        except ValueError:
            return None
        return (index, model_name, title, self._params(title), target)

    def _explainer(self, title: str, params: tuple[tuple[str, Any], ...]) -> Any:
        """The core Explainer of column ``title`` with the controls' parameters (what a script
        gets from ``resolve_explainer(name, **params)``)."""
        from visloupe.core.attribution import Explainer, resolve_explainer

        base = self._methods[title]
        if base.method is None:
            return base
        kwargs = dict(params)
        if self._batch_size is not None:
            kwargs["batch_size"] = self._batch_size
        clashing = {k: kwargs.pop(k) for k in list(kwargs) if k in _POSITIONAL}
        if not clashing:
            return resolve_explainer(base, **kwargs)
        spec = self._specs[title]  # e.g. IG's own "method": the spec's default instead
        spec = dataclasses.replace(spec, params=tuple(
            dataclasses.replace(p, default=clashing[p.name]) if p.name in clashing else p
            for p in spec.params))
        return Explainer(title, spec, tuple({**dict(base.kwargs), **kwargs}.items()))

    def _compute_map(self, key: tuple) -> np.ndarray:
        """One map ``(H, W)``: the core explainer called as a script would call it."""
        index, model_name, title, params, target = key
        x = self._input(index, model_name)[None]
        out = self._explainer(title, params)(self._models[model_name], x,
                                             torch.tensor([target]))
        return out.detach().float().cpu()[0].numpy()

    # ------------------------------------------------------------------ filters and paging

    def _all_labels(self) -> np.ndarray:
        """Labels of every known item (-1 where missing), read once for the class filter."""
        if self._labels is None or len(self._labels) != self._length():
            values = []
            for i in range(self._length()):
                label = self._sample(i).label
                values.append(-1 if label is None else int(label))
            self._labels = np.asarray(values, dtype=np.int64)
        return self._labels

    def _predictions(self, model_name: str, indices: Sequence[int]) -> np.ndarray:
        """Predicted class of ``indices`` (batched, progress shown, probabilities cached)."""
        missing = [i for i in indices if (i, model_name) not in self._probs]
        batch = 64
        self._progress_start(len(missing), f"predicting {model_name}", "images")
        for start in range(0, len(missing), batch):
            chunk = missing[start:start + batch]
            shapes = {tuple(self._input(i, model_name).shape) for i in chunk}
            if len(shapes) == 1:
                x = torch.stack([self._input(i, model_name) for i in chunk])
                probs = predict_proba(self._models[model_name], x)
                for i, p in zip(chunk, probs, strict=True):
                    self._probs[(i, model_name)] = p
            else:  # mixed sizes: one by one
                for i in chunk:
                    self._proba(i, model_name)
            self._progress_step(len(chunk))
        self._progress_done()
        return np.asarray([int(np.argmax(self._probs[(i, model_name)])) for i in indices])

    @guarded
    def _on_filter(self, _change: Any = None) -> None:
        self._apply_filters(keep=None)
        self._refresh(compute=self.auto_explain.value)

    def _apply_filters(self, keep: int | None) -> None:
        """Recompute the paging order from the filters; stay on dataset index ``keep`` if it
        still passes, else go to the first sample. Does not render."""
        indices = list(range(self._length()))
        klass = self.class_filter.value
        if klass != ALL:
            labels = self._all_labels()
            indices = [i for i in indices if labels[i] == klass]
        rule = self.prediction_filter.value
        if rule != ALL:
            model_name, correct = rule
            labels = self._all_labels()
            labelled = [i for i in indices if labels[i] >= 0]
            preds = self._predictions(model_name, labelled)
            indices = [i for i, p in zip(labelled, preds, strict=True)
                       if (p == labels[i]) == correct]
        self._order = indices
        self.browser.set_order(indices, keep)

    def _read_more(self) -> bool:
        """Past the end of a stream of unknown length: read its next page."""
        if self._source.length is not None:
            return False
        current = self.index
        if not self._extend(self._stream_page):
            return False
        self._labels = None
        self._apply_filters(keep=current)
        return True

    def _make_retarget(self, model_name: str, slot: int) -> Callable[[Any], None]:
        def retarget(_button: Any) -> None:
            previous = self.target.value
            self.target.value = self._topk_classes[model_name][slot]
            if self._bar_retarget is None:
                self._bar_retarget = previous  # what the next sample goes back to

        return retarget

    def _on_sample(self, _change: Any = None) -> None:
        """A new sample: a class picked from the previous sample's bars does not carry over
        (it was that image's second guess, not a choice for every image)."""
        if self._bar_retarget is not None:
            restore, self._bar_retarget = self._bar_retarget, None
            self._suspend += 1
            try:
                self.target.value = restore
            finally:
                self._suspend -= 1
        self._on_expensive()

    # ------------------------------------------------------------------ expensive and cheap paths

    def _on_expensive(self, _change: Any = None) -> None:
        if not self._suspend and not self.browser.suspended:
            self._refresh(compute=self.auto_explain.value)

    @guarded
    def _on_cheap(self, _change: Any = None) -> None:
        self._render()

    @guarded
    def _refresh(self, compute: bool) -> None:
        """Make sure predictions exist for the sample on view, compute the missing maps when
        ``compute``, then render. The only path that calls the model."""
        self._errors = []
        index = self.index
        if index is None:
            self._render()
            return
        for model_name in self.model_select.value:
            self._proba(index, model_name)
        self._update_topk(index)
        on_view = {self._key(m, t) for m in self.model_select.value
                   for t in self.method_select.value}
        self._fresh = {k: v for k, v in self._fresh.items() if k in on_view}
        if compute:
            jobs = []
            for model_name in self.model_select.value:
                for title in self.method_select.value:
                    key = self._key(model_name, title)
                    if key is None:
                        self._target_for(index, model_name)  # raises the reason
                    elif self._cached_map(key) is None:
                        jobs.append(key)
            self._run_jobs(jobs)
        self._render()

    def _run_jobs(self, jobs: list[tuple]) -> None:
        self._progress_start(len(jobs), "explaining", "maps")
        start = time.perf_counter()
        for key in jobs:
            try:
                raw = self._compute_map(key)
                self._fresh[key] = raw
                if self._maps.maxsize > 0:
                    self._maps.put(key, raw)
                self._cell_errors.pop(key, None)
            except Exception as error:  # noqa: BLE001 - shown in the cell and the error area
                logger.exception("explaining %s failed", key[1:4])
                self._cell_errors[key] = f"{key[1]} · {key[2]}: {type(error).__name__}: {error}"
            self._progress_step(1)
        self._progress_done(ok=not any(k in self._cell_errors for k in jobs))
        if jobs:
            self._last_compute_s = time.perf_counter() - start

    def _update_topk(self, index: int) -> None:
        for model_name, pairs in self._topk_buttons.items():
            if (index, model_name) not in self._probs:
                continue
            probs = self._probs[(index, model_name)]
            top = np.argsort(-probs)[: len(pairs)]
            current = self.target.value
            for slot, ((button, bar), k) in enumerate(zip(pairs, top, strict=False)):
                k = int(k)
                self._topk_classes[model_name][slot] = k
                name = self._class_names[k] if k < len(self._class_names) else str(k)
                button.description = f"{name} {probs[k]:.0%}"
                button.button_style = "info" if current == k else ""
                bar.value = float(probs[k])

    # ------------------------------------------------------------------ rendering (cheap)

    def _display_base(self, index: int) -> np.ndarray:
        base = self._display.get(index)
        if base is None:
            pre = self._pre[next(iter(self._models))]
            frame = model_frame(self._sample(index).image, pre)
            base = np.asarray(render.fit_image(frame, self._cell))
            self._display.put(index, base)
        return base

    def _postprocess(self, raw: np.ndarray, signed: bool) -> tuple[np.ndarray, float | None]:
        return display_map(raw, float(self.clip.value), signed)

    def _cmap_for(self, signed: bool) -> str:
        name = self.cmap.value
        if name == "auto":
            return "RdBu_r" if signed else "inferno"
        return name

    def _render(self) -> None:
        """Compose the grid from the caches (never calls the model) and publish it."""
        index = self.index
        errors = list(self._errors)
        scales: list[Scale | None] = [None]  # one per tile: the colour bar of a map
        ncols = 1
        if index is None:
            images, captions = [None], ["no sample passes the filters"]
            self.status.value = "<i>no sample passes the filters</i>"
            self.topk_box.layout.display = "none"  # the bars of a sample no longer on view
        else:
            self.topk_box.layout.display = None
            base = self._display_base(index)
            label = self._label(index)
            label_text = "—" if label is None else self._class_name(label)
            self.browser.show_status(f" &nbsp;·&nbsp; label <b>{escape(label_text)}</b>")
            images: list[Any] = []
            captions: list[str] = []
            scales = []
            signed_view = self.sign.value == "signed"
            titles = list(self.method_select.value)
            for model_name in self.model_select.value:
                probs = self._probs.get((index, model_name))
                images.append(base)
                scales.append(None)
                if probs is None:
                    captions.append(f"{model_name}\n(not predicted)")
                else:
                    k = int(np.argmax(probs))
                    captions.append(f"{model_name}\n{self._class_name(k)} {probs[k]:.0%}")
                for title in titles:
                    key = self._key(model_name, title)
                    raw = self._cached_map(key)
                    if key is not None and key in self._cell_errors:
                        errors.append(self._cell_errors[key])
                        images.append(None)
                        scales.append(None)
                        captions.append(f"{title}\nerror (see above)")
                    elif raw is None:
                        images.append(None)
                        scales.append(None)
                        captions.append(f"{title}\npress Explain")
                    else:
                        signed = signed_view and bool(getattr(self._specs[title], "signed",
                                                              True))
                        sal, vmax = self._postprocess(raw, signed)
                        scales.append((self._cmap_for(signed), signed, vmax or 0.0))
                        images.append(render.overlay(
                            base, sal, alpha=float(self.alpha.value),
                            cmap=self._cmap_for(signed), mode=self.mode.value, signed=signed,
                            vmax=vmax,
                        ))
                        captions.append(f"{title}\ntarget {self._class_name(key[4])}")
            if not images:
                images, captions, scales = [base], ["select a model and a method"], [None]
            ncols = 1 + len(titles)
        self._grid = render.image_grid(images, captions, ncols=ncols, cell=self._cell)
        self._show_rows(images, captions, scales, ncols)
        self.errors.value = error_html(errors)

    def _show_rows(self, images: list[Any], captions: list[str], scales: list[Scale | None],
                   ncols: int) -> None:
        """Publish the tiles row by row (one row per model), each with its captions and the
        colour bars of its maps as HTML under it; the row widgets are reused, so a cheap
        re-render creates none."""
        rows = [(images[k:k + ncols], captions[k:k + ncols], scales[k:k + ncols])
                for k in range(0, len(images), ncols)]
        pngs = [render.to_png(render.image_grid(imgs, None, ncols=ncols, cell=self._cell))
                for imgs, _, _ in rows]
        self.view.value = pngs[0]
        self.captions.value = caption_row(rows[0][1], self._cell, scales=rows[0][2])
        extra = list(self.more_rows.children)
        while len(extra) < len(rows) - 1:
            caption = w.HTML()
            caption.add_class("visloupe-captions")
            extra.append(w.VBox([image_view(), caption]))
        for k, box in enumerate(extra):
            shown = k + 1 < len(rows)
            box.layout.display = None if shown else "none"
            if shown:
                box.children[0].value = pngs[k + 1]
                box.children[1].value = caption_row(rows[k + 1][1], self._cell,
                                                    scales=rows[k + 1][2])
        if len(extra) != len(self.more_rows.children):
            self.more_rows.children = extra

    def _class_name(self, k: int) -> str:
        return self._class_names[k] if 0 <= k < len(self._class_names) else str(k)

    @guarded
    def _save_clicked(self) -> None:
        """Offer the view as a download in the user's browser (``save_png`` writes a file
        where the kernel runs, which on Colab or a remote server is not the user's machine)."""
        self.download.value = download_link(self.to_png(), self.save_path.value)
