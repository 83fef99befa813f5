"""DatasetExplorer: look at a whole image dataset before (or after) training on it.

Five tabs over :mod:`visloupe.core.profiling`: **Overview** (class balance and a histogram of every
per-image statistic), **Classes** (mean image and a sample grid per class), **Map** (a 2-D
projection of embeddings, coloured by class or by any statistic, thumbnails on hover, box/lasso
selection that reaches Python), **Duplicates & outliers** and **Errors** (confusion matrix whose
cells list their samples). In the spirit of Know Your Data and FiftyOne, but inline in the
notebook, on any data ``as_image_source`` reads, and composable with the saliency widgets:
``SaliencyExplorer(model, explorer.selection)`` explains what you selected.

Plots are Bokeh documents drawn by a small anywidget (:mod:`visloupe.widgets.plots`,
``datasets.js``), with BokehJS from the installed bokeh package (never a CDN), so they work in
JupyterLab, Notebook 7, VS Code and Colab without ``jupyter_bokeh`` (ipywidgets 7 or 8). The map
holds up to 100 000 points: coordinates travel as one binary buffer, WebGL draws them, and a
point's thumbnail is made and sent only when the mouse is over it. A box or lasso selection
reaches Python as :attr:`DatasetExplorer.selected_indices`.

The expensive steps (profile, embeddings, projection, confusion matrix) run once, when their tab
is first opened, with a progress bar; colour-by, thresholds and cell choices re-render from cache.
Without a model the map embeds downsampled pixels (16x16 RGB) instead of activations, and the
Errors tab says that it needs a model.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd
from visloupe.core.checks import check_seed

from . import render
from ._common import guarded, open_job
from .base import ExplorerBase, escape, image_view, table_html
from .plots import BokehPlot, PointMap, bokeh_js, linear_colour_index
from .style import FAINT, MISSING, MUTED, PALETTE, SPACE_L, SPACE_M, SPACE_S, SPACE_XS, TEXT_S

__all__ = ["DatasetExplorer"]

TABS = ("Overview", "Classes", "Map", "Duplicates & outliers", "Errors")
STATISTICS = ("width", "height", "aspect", "channels", "brightness", "contrast", "colourfulness",
              "sharpness", "file_size")
"""Numeric columns of ``profile_dataset`` shown as histograms and offered as map colours."""
PROJECTIONS = ("pca", "tsne", "umap")
CLASS = "class"
MEAN_PER_CLASS = 200
"""Class means average at most this many images per class (a seeded draw)."""
PIXEL_SIZE = 16
"""Side of the downsampled RGB images embedded when no model is given."""
LEGEND_CLASSES = 30
"""Classes listed in the map's legend (more: the hover tooltip names each point's class)."""
EXPORT_THUMBS = 2000
"""``to_html`` embeds hover thumbnails for maps of at most this many points."""

# ---------------------------------------------------------------------------------------------
# Small pure helpers (tested through the widget)


def _data_uri(png: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _set_png(image: w.Image, png: bytes) -> None:
    """Show ``png`` in ``image``, or hide the widget when there is nothing to show (an empty
    ``<img>`` would draw a broken-image icon)."""
    image.value = png
    image.layout.display = "" if png else "none"


class DatasetExplorer(ExplorerBase, w.VBox):
    """Profile, map and audit an image dataset in the notebook.

    Args:
        data: anything :func:`visloupe.core.data.as_image_source` accepts (HF ``Dataset`` or
            ``IterableDataset``, torch dataset, folder, list, arrays).
        model: optional ``torch.nn.Module``: its pooled activations (``layer``) embed the images
            for the map and the duplicate/outlier search, and its predictions fill the Errors
            tab. Without one the map uses downsampled pixels and Errors is disabled.
        preprocess: ``PIL.Image -> Tensor (C, H, W)`` for the model (the ``models.pretrained``
            contract); None uses the core default.
        class_names: names of the label indices (default: from the data).
        sample: profile (and embed) only this many images, drawn with ``seed``; None: all.
        projection: ``"pca"``, ``"tsne"`` or ``"umap"`` (UMAP needs ``umap-learn``).
        layer: the module (name) whose pooled output is embedded; None: the penultimate
            layer (the input of the last ``nn.Linear``), as in core ``embed``.
        seed: for sampling, sample grids and stochastic projections.
        max_points: at most this many points on the map (a seeded subset of the profiled
            items). The coordinates travel as binary float32, WebGL draws them and thumbnails
            are made on hover, so 100 000 points stay interactive; t-SNE at that size takes
            minutes (PCA seconds).
        thumb_size: thumbnail side in pixels (hover and grids).
        profile: a ``profiling.profile_dataset`` table of ``data`` computed elsewhere (e.g. an
            ``embed`` job's, see :meth:`from_results`): shown as it is, not recomputed.
        embeddings: ``(N, D)`` embeddings of that profile's readable rows, in its order (with
            ``profile``): the map and the duplicate search use them instead of embedding.

    Selecting points on the map (box or lasso) sets :attr:`selected_indices`; :attr:`selection`
    is those rows as a dataset that ``SaliencyExplorer`` and every core function accept.

    The duplicates tab is core ``profiling.near_duplicates(data, threshold)`` (with
    ``embeddings=`` the model's, when a model is given): it shows exactly that result.
    """

    _css_class = "visloupe-dataset-explorer"

    def __init__(self, data: Any, *, model: Any = None, preprocess: Callable | None = None,
                 class_names: Sequence[str] | None = None, sample: int | None = None,
                 projection: str = "pca", layer: Any = None, seed: int = 0,
                 max_points: int = 100_000, thumb_size: int = 48,
                 profile: pd.DataFrame | None = None,
                 embeddings: np.ndarray | None = None) -> None:
        from torch import nn
        from visloupe.core.data import as_image_source

        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model: expected None or a torch.nn.Module, got "
                            f"{type(model).__name__}")
        if preprocess is not None and not callable(preprocess):
            raise TypeError(f"preprocess: expected None or a callable PIL.Image -> Tensor, got "
                            f"{type(preprocess).__name__}")
        if layer is not None and model is None:
            raise ValueError("layer: picks the model's layer to embed; pass model= too (without "
                             "a model the map embeds pixels)")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed: expected an int, got {type(seed).__name__} {seed!r}")
        if projection not in PROJECTIONS:
            raise ValueError(f"projection: expected one of {PROJECTIONS}, got {projection!r}")
        if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int)
                                   or sample < 1):
            raise ValueError(f"sample: expected None or an int >= 1, got {sample!r}")
        if not isinstance(max_points, int) or max_points < 2:
            raise ValueError(f"max_points: expected an int >= 2, got {max_points!r}")
        if not isinstance(thumb_size, int) or thumb_size < 8:
            raise ValueError(f"thumb_size: expected an int >= 8, got {thumb_size!r}")
        super().__init__()
        self._init_base()
        self._source = as_image_source(data, class_names=class_names, seed=int(seed))
        self._model = model
        self._preprocess = preprocess
        self._sample = sample
        self._seed = check_seed(seed)
        self._layer = layer
        self._max_points = max_points
        self._thumb_size = thumb_size
        self._built: set[str] = set()
        self.profile: pd.DataFrame | None = None
        self._view: Any = None  # the readable profiled items (a core subset unless all)
        self._ok: pd.DataFrame | None = None  # their profile rows; row r is self._rows[r]
        self._rows = np.zeros(0, dtype=np.int64)  # row -> dataset index (readable items)
        self._embeddings: np.ndarray | None = None
        self._coords: dict[str, np.ndarray] = {}
        self._map_rows = np.zeros(0, dtype=np.int64)  # map point -> row
        self.map_points: pd.DataFrame | None = None
        self._confusion: Any = None
        if profile is not None:
            self._set_profile(profile)
        self._given_embeddings = embeddings is not None
        if embeddings is not None:
            self._set_embeddings(embeddings)
        self._build_ui(projection)
        self._build_tab("Overview")

    @classmethod
    def from_results(cls, results: Any, model: Any = None, data: Any = None,
                     preprocess: Any = None, **kwargs: Any) -> DatasetExplorer:
        """Open an ``embed`` job's results (:func:`visloupe.core.jobs.run`, here or on a
        cluster): its image statistics and embeddings fill the tabs, nothing is recomputed
        (the Errors tab needs ``model``, reopened from the manifest only if you pass
        ``model=True``). ``data`` defaults to the manifest's, reopened and checked."""
        reopen = False if model is None else (None if model is True else model)
        res, net, pre, source = open_job(results, "embed", reopen, data, kwargs,
                                         ("profile", "embeddings", "sample", "layer"))
        preprocess = pre if preprocess is None else preprocess
        rows = int(res.manifest["data"]["rows"])
        profile = res["profile"].drop(columns=["row_id"]).reset_index(drop=True)
        profile.attrs.update(sampled=False, n_total=rows, seed=0, source="results")
        table = res["embeddings"].set_index("row_id")
        readable = profile.loc[profile["error"].isna(), "index"].to_numpy(dtype=np.int64)
        if not len(readable):
            raise ValueError("results: no image of this embed job could be read; its profile's "
                             "error column says why")
        vectors = np.stack([np.asarray(v, dtype=np.float32) for v in table.loc[readable,
                                                                             "embedding"]])
        view = source if source.length == rows else source.select(range(rows))
        return cls(view, model=net, preprocess=preprocess, profile=profile,
                   embeddings=vectors, **kwargs)

    # -- public API ------------------------------------------------------------------------------

    @property
    def source(self) -> Any:
        """The :class:`~visloupe.core.data.ImageSource` being explored."""
        return self._source

    @property
    def embeddings(self) -> np.ndarray | None:
        """``(N, D)`` embeddings (model activations, or pixels without a model) of the readable
        profiled items, in ``profile`` order, once the Map or Duplicates tab ran."""
        return self._embeddings

    @property
    def confusion_result(self) -> Any:
        """The core :class:`~visloupe.core.profiling.ConfusionResult` once the Errors tab ran."""
        return self._confusion

    @property
    def selected_indices(self) -> list[int]:
        """Dataset indices of the points selected on the map (in the order BokehJS gave)."""
        rows = self._map_rows
        out = []
        for point in self.map_plot.selected:
            if 0 <= point < len(rows):
                out.append(int(self._rows[rows[point]]))
        return out

    @property
    def selection(self) -> Any:
        """The selected items as data (core ``ImageSource.select``, which keeps each row's
        original id) for ``SaliencyExplorer`` & co."""
        indices = self.selected_indices
        if not indices:
            raise ValueError("selection: nothing is selected on the map; drag a box or lasso "
                             "over points first (or call select([...]))")
        return self._source.select(indices)

    def select(self, indices: Sequence[int]) -> None:
        """Select the map points of these dataset indices (as a box selection would)."""
        self._build_tab("Map")
        where = {int(self._rows[r]): p for p, r in enumerate(self._map_rows)}
        missing = [int(i) for i in indices if int(i) not in where]
        if missing:
            raise ValueError(f"indices: {missing[:10]} are not on the map (it shows "
                             f"{len(self._map_rows)} of the profiled items)")
        self.map_plot.selected = [where[int(i)] for i in indices]
        self._draw_map()

    def show_tab(self, name: str) -> None:
        """Open (and compute, the first time) the tab called ``name`` (any case: "map")."""
        by_lower = {tab.lower(): tab for tab in TABS}
        if not isinstance(name, str) or name.strip().lower() not in by_lower:
            raise ValueError(f"name: expected one of {TABS}, got {name!r}")
        name = by_lower[name.strip().lower()]
        self.tabs.selected_index = TABS.index(name)
        self._build_tab(name)

    def show_confusion_cell(self, true: int, pred: int) -> list[int]:
        """List the samples of label ``true`` predicted as ``pred`` (as clicking the cell does);
        returns their dataset indices."""
        self._build_tab("Errors")
        if self._confusion is None:
            raise ValueError("Errors: no confusion matrix (it needs a model and labels)")
        k = len(self._confusion.matrix)
        for name, v in (("true", true), ("pred", pred)):
            if not 0 <= int(v) < k:
                raise ValueError(f"{name}: expected a class index in [0, {k}), got {v}")
        return self._show_cell(int(true), int(pred))

    def to_html(self) -> str:
        """A standalone HTML page of the plots built so far (BokehJS inline: works offline)."""
        items = [p.item for p in (self.balance_plot, self.hist_plot) if p.item]
        if self.map_plot.item:  # the live map's points travel apart: export them inline
            from bokeh.embed import json_item

            table, mapper, _order = self._map_table()
            items.append(json.dumps(json_item(self._map_figure(table, mapper, inline=True))))
        if not items:
            raise ValueError("to_html: no plot has been built yet")
        parts = ['<!DOCTYPE html><html><head><meta charset="utf-8">',
                 "<title>visloupe DatasetExplorer</title>"]
        parts += [f"<script>{code}</script>" for code in bokeh_js()]
        parts.append("</head><body>")
        for k, item in enumerate(items):
            safe = item.replace("</", "<\\/")  # no "</script>" inside the script
            parts.append(f'<div id="visloupe-plot-{k}"></div><script>'
                         f'Bokeh.embed.embed_item({safe}, "visloupe-plot-{k}");</script>')
        parts.append("</body></html>")
        return "\n".join(parts)

    def save_html(self, path: str | Path) -> Path:
        """Write :meth:`to_html` to ``path`` and return it."""
        path = Path(path)
        path.write_text(self.to_html(), encoding="utf-8")
        return path

    def _png(self) -> bytes:
        """One image per class (the first of each) with its name and count."""
        prof = self._ensure_profile()
        labels = prof["label"] if "label" in prof else pd.Series(dtype=float)
        images, captions = [], []
        ok = prof[prof["error"].isna()] if "error" in prof else prof
        for label, rows in ok.groupby(labels.fillna(-1), sort=True):
            images.append(self._source.rgb(int(rows["index"].iloc[0])))
            name = self._class_name(None if label == -1 else label)
            captions.append(f"{name}\n{len(rows)} images")
        if not images:
            images, captions = [None], ["no readable image"]
        return render.to_png(render.image_grid(images, captions, ncols=8, cell=64))

    # -- layout --------------------------------------------------------------------------------

    def _plots(self) -> list[BokehPlot]:
        return [self.balance_plot, self.hist_plot, self.map_plot]

    def _build_ui(self, projection: str) -> None:
        self.add_class("visloupe-dataset-explorer")
        # Overview
        self.summary = w.HTML()
        self.balance_plot = BokehPlot(css_class="visloupe-balance")
        self.hist_plot = BokehPlot(css_class="visloupe-histograms")
        overview = w.VBox([self.summary, self.balance_plot, self.hist_plot])
        # Classes
        self.classes_box = w.VBox()
        self.classes_box.add_class("visloupe-classes")
        # Map
        self.colour_by = w.Dropdown(options=[CLASS, *STATISTICS], value=CLASS,
                                    description="colour by")
        self.projection = w.Dropdown(options=list(PROJECTIONS), value=projection,
                                     description="projection")
        self.clear_button = w.Button(description="clear selection", icon="times")
        self.map_plot = PointMap(css_class="visloupe-map")
        self.map_plot.hover = self._hover
        self.map_legend = w.HTML()
        self.map_legend.add_class("visloupe-map-legend")
        self.selection_info = w.HTML()
        self.selection_info.add_class("visloupe-selection-info")
        self.selection_image = image_view(hidden=True)
        map_tab = w.VBox([w.HBox([self.colour_by, self.projection, self.clear_button]),
                          w.HBox([self.map_plot, self.map_legend]), self.selection_info,
                          self.selection_image])
        # Duplicates & outliers
        self.threshold = w.BoundedFloatText(value=0.05, min=0.0, max=2.0, step=0.01,
                                            description="threshold")
        self.dup_info = w.HTML()
        self.dup_image = image_view(hidden=True)
        self.outlier_info = w.HTML()
        self.outlier_image = image_view(hidden=True)
        dup_tab = w.VBox([self.threshold, self.dup_info, self.dup_image,
                          self.outlier_info, self.outlier_image])
        dup_tab.add_class("visloupe-duplicates")
        # Errors
        self.errors_info = w.HTML()
        self.matrix_box = w.VBox()
        self.cell_info = w.HTML()
        self.cell_image = image_view(hidden=True)
        errors_tab = w.VBox([self.errors_info, self.matrix_box, self.cell_info, self.cell_image])

        self._tab_boxes = [overview, self.classes_box, map_tab, dup_tab, errors_tab]
        self.tabs = w.Tab(children=self._tab_boxes)
        for k, title in enumerate(TABS):
            if hasattr(self.tabs, "set_title"):
                self.tabs.set_title(k, title)
        self.tabs.observe(self._on_tab, "selected_index")
        self.colour_by.observe(self._on_colour, "value")
        self.projection.observe(self._on_projection, "value")
        self.clear_button.on_click(self._on_clear)
        self.map_plot.observe(self._on_selected, "selected")
        for plot in self._plots():
            plot.observe(self._on_plot_status, "status")
        self.threshold.observe(self._on_threshold, "value")
        self.children = [self.error_area, self.progress_box, self.tabs]

    # -- errors and progress -------------------------------------------------------------------

    def _progress(self, what: str, unit: str = "images") -> Callable[..., None]:
        """A ``progress=`` callback for core: accepts ``(done, total)`` or ``(done, total, …)``."""
        return self._progress_callback(what, unit)

    def _on_plot_status(self, change: Any) -> None:
        if str(change["new"]).startswith("error"):
            self._report_error(f"plot: {change['new']}")

    # -- tab building ----------------------------------------------------------------------------

    def _on_tab(self, change: Any) -> None:
        index = change["new"]
        if index is not None and 0 <= index < len(TABS):
            self._build_tab(TABS[index])

    def _build_tab(self, name: str) -> None:
        if self._closed or name in self._built:
            return
        builders = {"Overview": self._build_overview, "Classes": self._build_classes,
                    "Map": self._build_map, "Duplicates & outliers": self._build_duplicates,
                    "Errors": self._build_errors}
        if name != "Overview" and self.profile is None:
            self._build_tab("Overview")
            if self.profile is None:
                return
        ok = self._run(builders[name])
        if ok:
            self._built.add(name)

    @guarded
    def _run(self, fn: Callable[[], None]) -> bool:
        fn()
        return True

    def _ensure_profile(self) -> pd.DataFrame:
        if self.profile is None:
            from visloupe.core.profiling import profile_dataset

            prof = profile_dataset(self._source, sample=self._sample, seed=self._seed,
                                   progress=self._progress("profiling"))
            self._progress_done()
            self._set_profile(prof)
        return self.profile

    def _set_profile(self, prof: pd.DataFrame) -> None:
        if not isinstance(prof, pd.DataFrame) or not {"index", "error"} <= set(prof.columns):
            raise ValueError("profile: expected a profiling.profile_dataset table (with "
                             f"'index' and 'error' columns), got {type(prof).__name__}")
        # unreadable items stay in the Overview (counted) but out of maps and model passes
        self._ok = prof[prof["error"].isna()].reset_index(drop=True)
        self._rows = self._ok["index"].to_numpy(dtype=np.int64)
        n = self._source.length
        if n is not None and len(self._rows) and (self._rows.min() < 0 or self._rows.max() >= n):
            raise ValueError(f"profile: its 'index' column names rows outside data (0..{n - 1})")
        n_total = prof.attrs.get("n_total")
        whole = (n_total is not None and len(self._rows) == n_total
                 and np.array_equal(self._rows, np.arange(n_total)))
        self._view = self._source if whole else self._source.select(self._rows.tolist())
        self.profile = prof

    def _set_embeddings(self, embeddings: Any) -> None:
        if self.profile is None:
            raise ValueError("embeddings: give them with the profile whose rows they embed")
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or len(emb) != len(self._rows):
            raise ValueError(f"embeddings: expected ({len(self._rows)}, D), one per readable "
                             f"profile row, got shape {emb.shape}")
        self._embeddings = emb

    def _class_name(self, label: Any) -> str:
        if label is None or (isinstance(label, float) and not np.isfinite(label)):
            return "(no label)"
        names = self._source.class_names
        k = int(label)
        return names[k] if names is not None and 0 <= k < len(names) else str(k)

    # -- Overview ------------------------------------------------------------------------------

    def _build_overview(self) -> None:
        from bokeh.layouts import gridplot
        from bokeh.models import ColumnDataSource, HoverTool
        from bokeh.plotting import figure

        prof = self._ensure_profile()
        attrs = prof.attrs
        n_err = int(prof["error"].notna().sum()) if "error" in prof else 0
        sampled = attrs.get("sampled", False)
        total = attrs.get("n_total")
        seed = attrs.get("seed", self._seed)
        if total is None:
            what = f"the first {len(prof)} images of a stream (buffer-shuffled, seed {seed})"
        elif sampled:
            what = f"a seeded sample of {len(prof)} of {total} images (seed {seed})"
        else:
            what = f"all {len(prof)} images"
        labels = prof["label"]
        n_classes = int(labels.dropna().nunique())
        self.summary.value = (
            f'<div class="visloupe-summary"><b>{html.escape(what)}</b> · {n_classes} classes · '
            f"{n_err} unreadable · source "
            f"{html.escape(str(attrs.get('source', self._source.kind)))}"
            "</div>"
        )
        counts = (prof.assign(class_name=prof["class_name"].fillna("(no label)"))
                  .groupby("class_name", sort=False).size())
        order = sorted(counts.index, key=lambda c: (-counts[c], str(c)))
        fig = figure(x_range=[str(c) for c in order], height=240, width=640,
                     title="class balance", tools="save", toolbar_location=None)
        src = ColumnDataSource({"class_name": [str(c) for c in order],
                                "count": [int(counts[c]) for c in order]})
        fig.vbar(x="class_name", top="count", width=0.8, source=src, color=PALETTE[0])
        fig.add_tools(HoverTool(tooltips=[("class", "@class_name"), ("images", "@count")]))
        fig.xaxis.major_label_orientation = 0.8 if len(order) > 8 else 0.0
        fig.y_range.start = 0
        self.balance_plot.show(fig)

        hists = []
        for stat in STATISTICS:
            v = pd.to_numeric(prof.get(stat), errors="coerce").to_numpy(dtype=np.float64)
            v = v[np.isfinite(v)]
            h = figure(width=210, height=160, title=stat, tools="save", toolbar_location=None)
            if len(v):
                lo, hi = float(v.min()), float(v.max())
                if hi <= lo:
                    lo, hi = lo - 0.5, hi + 0.5
                counts_h, edges = np.histogram(v, bins=min(30, max(5, len(v) // 5)),
                                               range=(lo, hi))
                h.quad(top=counts_h, bottom=0, left=edges[:-1], right=edges[1:],
                       color=PALETTE[2], line_color="white")
            else:  # e.g. file sizes of in-memory arrays: say so instead of an empty frame
                h.text(x=[0], y=[0], text=["no values"], text_align="center",
                       text_color=FAINT)
            hists.append(h)
        self.hist_plot.show(gridplot(hists, ncols=3))

    # -- Classes -------------------------------------------------------------------------------

    def _build_classes(self) -> None:
        from visloupe.core.profiling import class_means, class_samples

        prof = self._ensure_profile()
        if prof["label"].dropna().empty:
            self.classes_box.children = [w.HTML("<i>This dataset has no labels: no classes to "
                                                "show.</i>")]
            return
        means = class_means(self._view, size=(64, 64), max_per_class=MEAN_PER_CLASS,
                            seed=self._seed, progress=self._progress("class means"))
        self._progress_done()
        samples = class_samples(prof, per_class=8, seed=self._seed)
        rows = []
        for k in sorted(set(means) | set(samples)):
            images: list[Any] = []
            captions = []
            if k in means:
                images.append(render.to_rgb_array(np.asarray(means[k], dtype=np.float32)))
                captions.append("mean")
            for i in samples.get(k, []):
                images.append(self._source.rgb(int(i)))
                captions.append(f"#{int(i)}")
            grid = render.image_grid(images, captions, ncols=9, cell=64)
            n = int((prof["label"] == k).sum())
            head = w.HTML(f"<b>{escape(self._class_name(k))}</b><br>{n} images",
                          layout=w.Layout(width="120px"))
            rows.append(w.HBox([head, image_view(render.to_png(grid))]))
        self.classes_box.children = rows

    # -- Map -----------------------------------------------------------------------------------

    def _ensure_embeddings(self) -> np.ndarray:
        if self._embeddings is None:
            self._ensure_profile()
            if self._model is None:
                self._progress_start(len(self._rows), "embedding pixels", "images")
                from visloupe.core.profiling import pixel_embeddings

                emb = pixel_embeddings(self._source, self._rows.tolist(), size=PIXEL_SIZE)
            else:
                from visloupe.core.profiling import embed

                emb = embed(self._model, self._source, self._layer, preprocess=self._preprocess,
                            indices=self._rows.tolist(), progress=self._progress("embedding"))
            emb = np.asarray(emb, dtype=np.float32)
            if emb.ndim != 2 or len(emb) != len(self._rows):
                raise ValueError(f"embed: expected ({len(self._rows)}, D) embeddings, got shape "
                                 f"{emb.shape}")
            self._progress_done()
            self._embeddings = emb
        return self._embeddings

    def _ensure_coords(self, method: str) -> np.ndarray:
        if method not in self._coords:
            from visloupe.core.profiling import project

            emb = self._ensure_embeddings()
            points = emb[self._map_rows] if len(self._map_rows) else emb
            self._progress_start(len(points), f"projecting ({method.upper()})", "points")
            xy = np.asarray(project(points, method=method, seed=self._seed), dtype=np.float64)
            if xy.shape != (len(points), 2):
                raise ValueError(f"project: expected ({len(points)}, 2), got {xy.shape}")
            self._progress_done()
            self._coords[method] = xy
        return self._coords[method]

    def _thumb_png(self, index: int) -> bytes:
        from visloupe.core.profiling import thumbnail

        return render.to_png(thumbnail(self._source.rgb(index), self._thumb_size))

    def _hover(self, point: int) -> tuple[dict[str, str], bytes]:
        """The tooltip of map point ``point``: its index, class and colour value, and its
        thumbnail (made now: only hovered points get one)."""
        row = self.map_points.iloc[point]
        fields = {"title": f"#{int(row['index'])} · {row['class_name']}"}
        if self.colour_by.value != CLASS:
            fields[self.colour_by.value] = f"{row['value']:.4g}"
        try:
            png = self._thumb_png(int(row["index"]))
        except Exception as error:  # noqa: BLE001 - the tooltip keeps its text
            fields["thumbnail"] = f"failed: {error}"
            png = b""
        return fields, png

    def _build_map(self) -> None:
        self._ensure_profile()
        n = len(self._rows)
        if n < 2:
            raise ValueError(f"Map: needs at least 2 readable images, the profile has {n}")
        if n > self._max_points:
            rng = np.random.default_rng(self._seed)
            rows = np.sort(rng.choice(n, self._max_points, replace=False))
        else:
            rows = np.arange(n)
        labels = self._ok["label"].to_numpy(dtype=np.float64, na_value=np.inf)[rows]
        self._map_rows = rows[np.lexsort((rows, labels))]  # by class: legend in label order
        self._ensure_coords(self.projection.value)
        self._draw_map()

    def _map_table(self) -> tuple[pd.DataFrame, Any, list[str]]:
        """What the map shows, one row per point (dataset index, coordinates, class, colour
        value, colour code and hex colour), the colour mapper and the class order."""
        from bokeh.models import LinearColorMapper
        from bokeh.palettes import Viridis256

        xy = self._ensure_coords(self.projection.value)
        rows = self._map_rows
        sub = self._ok.iloc[rows]
        labels = sub["label"].to_numpy(dtype=np.float64, na_value=np.nan)
        keys = [int(v) if np.isfinite(v) else None for v in labels]
        names = {k: self._class_name(k) for k in set(keys)}
        class_names = [names[k] for k in keys]
        order = list(dict.fromkeys(class_names))  # label order (points are sorted by label)
        colour = self.colour_by.value
        if colour == CLASS:
            position = {c: k for k, c in enumerate(order)}
            code = np.array([position[c] for c in class_names], dtype=np.float64)
            values = np.full(len(rows), np.nan)
            palette = [PALETTE[k % len(PALETTE)] for k in range(len(order))]
            mapper = LinearColorMapper(palette=palette, low=-0.5, high=len(order) - 0.5)
            hexes = [palette[int(k)] for k in code]
        else:
            values = pd.to_numeric(sub[colour], errors="coerce").to_numpy(dtype=np.float64)
            finite = values[np.isfinite(values)]
            lo = float(finite.min()) if len(finite) else 0.0
            hi = float(finite.max()) if len(finite) else 1.0
            hi = hi if hi > lo else lo + 1.0
            code = values
            mapper = LinearColorMapper(palette=Viridis256, low=lo, high=hi,
                                       nan_color=MISSING)
            slot = linear_colour_index(values, lo, hi, len(Viridis256))
            hexes = [Viridis256[k] if k >= 0 else MISSING for k in slot]
        table = pd.DataFrame({"index": self._rows[rows], "x": xy[:, 0], "y": xy[:, 1],
                              "class_name": class_names, "value": values, "code": code,
                              "colour": hexes})
        return table, mapper, order

    def _map_figure(self, table: pd.DataFrame, mapper: Any, inline: bool = False) -> Any:
        """The map's Bokeh figure. Live, its point source is empty (the widget sends the
        points as binary); ``inline=True`` puts them in the document for ``to_html``."""
        from bokeh.models import ColorBar, ColumnDataSource, HoverTool
        from bokeh.plotting import figure

        space = "pixels" if self._model is None else "embeddings"
        fig = figure(width=620, height=520, title=f"{self.projection.value} of {space}",
                     tools="pan,wheel_zoom,box_select,lasso_select,reset,save",
                     active_drag="box_select", toolbar_location="above",
                     output_backend="webgl", x_axis_label=f"{self.projection.value} 1",
                     y_axis_label=f"{self.projection.value} 2")
        if inline:
            data = {c: table[c].to_numpy() for c in ("x", "y", "index")}
            data.update(c=table["code"].to_numpy(), class_name=table["class_name"].tolist())
            tips = "<div>#@index · @class_name</div>"
            if len(table) <= EXPORT_THUMBS:
                data["thumb"] = [_data_uri(self._thumb_png(int(i))) for i in table["index"]]
                tips = ('<img src="@thumb" style="image-rendering:pixelated;max-width:96px;'
                        'max-height:96px"/>' + tips)
            src = ColumnDataSource(data)
        else:
            src = self.map_plot.empty_source()
            src.selected.indices = [int(p) for p in self.map_plot.selected
                                    if 0 <= p < len(table)]
        size = 8 if len(table) <= 2000 else 5 if len(table) <= 20000 else 3
        points = fig.scatter("x", "y", source=src, size=size,
                             fill_color={"field": "c", "transform": mapper}, line_color=None,
                             fill_alpha=0.85, selection_line_color="black",
                             nonselection_fill_alpha=0.25)
        if inline:
            fig.add_tools(HoverTool(renderers=[points], tooltips=tips))
        else:
            fig.add_tools(HoverTool(renderers=[points], tooltips=None,
                                    callback=self.map_plot.hover_js()))
            src.selected.js_on_change("indices", self.map_plot.select_js())
        if self.colour_by.value != CLASS:
            fig.add_layout(ColorBar(color_mapper=mapper, title=self.colour_by.value), "right")
        return fig

    def _draw_map(self) -> None:
        table, mapper, order = self._map_table()
        self.map_points = table
        fig = self._map_figure(table, mapper)
        self.map_plot.show_points(fig, {"x": table["x"].to_numpy(), "y": table["y"].to_numpy(),
                                        "c": table["code"].to_numpy(),
                                        "index": table["index"].to_numpy()})
        self.map_legend.value = self._legend_html(table, order)
        self._show_selection()

    def _legend_html(self, table: pd.DataFrame, order: list[str]) -> str:
        if self.colour_by.value != CLASS:
            return ""
        counts = table["class_name"].value_counts()
        items = [f'<div style="white-space:nowrap"><span style="display:inline-block;'
                 f'width:10px;height:10px;background:{PALETTE[k % len(PALETTE)]};'
                 f'margin-right:{SPACE_S}px"></span>{escape(name)} '
                 f'<span style="color:{MUTED}">{int(counts[name])}</span></div>'
                 for k, name in enumerate(order[:LEGEND_CLASSES])]
        more = len(order) - LEGEND_CLASSES
        if more > 0:
            items.append(f"<div>… {more} more classes (hover a point for its class)</div>")
        return (f'<div class="visloupe-legend" style="font-size:{TEXT_S}px;'
                f'margin:{SPACE_L}px 0 0 {SPACE_M}px">'
                f"<b>class</b> <span style=\"color:{MUTED}\">points</span>{''.join(items)}</div>")

    def _redraw(self) -> None:
        if "Map" in self._built:
            self._clear_errors()
            self._run(self._draw_map)

    def _on_colour(self, _change: Any) -> None:
        self._redraw()

    def _on_projection(self, _change: Any) -> None:
        self._redraw()

    def _on_clear(self, _button: Any) -> None:
        self.map_plot.selected = []
        self._redraw()

    def _on_selected(self, _change: Any) -> None:
        self._run(self._show_selection)

    def _show_selection(self) -> None:
        indices = self.selected_indices
        if not indices:
            self.selection_info.value = ('<div class="visloupe-selected" data-indices="">'
                                         "nothing selected: drag a box (or lasso) over points"
                                         "</div>")
            _set_png(self.selection_image, b"")
            return
        shown = indices[:48]
        self.selection_info.value = (
            f'<div class="visloupe-selected" data-indices="{",".join(map(str, indices))}">'
            f"<b>{len(indices)} selected</b>: {html.escape(str(indices[:200]))}"
            f"{' …' if len(indices) > 200 else ''} · <code>explorer.selection</code> is a "
            "dataset for SaliencyExplorer</div>")
        grid = render.image_grid([self._source.rgb(i) for i in shown],
                                 [f"#{i}" for i in shown], ncols=12, cell=64)
        _set_png(self.selection_image, render.to_png(grid))

    # -- Duplicates & outliers -------------------------------------------------------------------

    def _build_duplicates(self) -> None:
        from visloupe.core.profiling import outliers

        emb = self._ensure_embeddings()
        self._draw_duplicates()
        out = outliers(emb, k=min(10, len(emb) - 1), top=min(20, len(emb)))
        idx = [int(self._rows[int(r)]) for r in out["index"]]
        table = pd.DataFrame({"index": idx, "score": out["score"].to_numpy()})
        space = "pixel" if self._model is None else "embedding"
        self.outlier_info.value = (f"<h4>Outliers</h4><div>mean distance to the k nearest "
                                   f"neighbours in {space} space, highest first</div>"
                                   + table_html(table, "visloupe-outlier-table", max_rows=20,
                                                decimals=4))
        captions = [f"#{i}\n{s:.3g}" for i, s in zip(idx, table["score"], strict=True)]
        grid = render.image_grid([self._source.rgb(i) for i in idx], captions, ncols=10, cell=64)
        _set_png(self.outlier_image, render.to_png(grid))
        self.outliers = table

    def duplicate_arguments(self) -> dict[str, Any]:
        """The keyword arguments the tab passes to core ``near_duplicates(data, ...)``: the
        threshold, and the model's embeddings when there is a model or they were given (else
        core's own pixel descriptor, so the tab finds what a script finds)."""
        kwargs: dict[str, Any] = {"threshold": float(self.threshold.value)}
        if self._model is not None or self._given_embeddings:
            kwargs["embeddings"] = self._ensure_embeddings()
        return kwargs

    def _draw_duplicates(self) -> None:
        from visloupe.core.profiling import near_duplicates

        self._ensure_profile()
        kwargs = self.duplicate_arguments()
        pairs = near_duplicates(self._view, **kwargs)
        self.duplicates_result = pairs  # exactly core's table (rows of the profiled view)
        table = pd.DataFrame({
            "i": [int(self._rows[int(r)]) for r in pairs["i"]],
            "j": [int(self._rows[int(r)]) for r in pairs["j"]],
            "distance": pairs["distance"].to_numpy(dtype=np.float64),
            "exact": pairs["exact"].to_numpy(dtype=bool),
        })
        self.duplicates = table
        space = "model embedding" if self._model is not None else "pixel descriptor"
        self.dup_info.value = (f"<h4>Near duplicates</h4><div>{len(table)} pairs with cosine "
                               f"distance ≤ {self.threshold.value:g} ({space}; "
                               "<code>profiling.near_duplicates</code>)</div>"
                               + table_html(table, "visloupe-duplicate-table", max_rows=20,
                                            decimals=4))
        images: list[Any] = []
        captions = []
        for i, j, d, exact in table.head(12).itertuples(index=False):
            images += [self._source.rgb(i), self._source.rgb(j)]
            captions += [f"#{i}", f"#{j} {'exact' if exact else f'd={d:.3f}'}"]
        _set_png(self.dup_image, render.to_png(render.image_grid(images, captions, ncols=8,
                                                                 cell=64)) if images else b"")

    def _on_threshold(self, _change: Any) -> None:
        if "Duplicates & outliers" in self._built:
            self._run(self._draw_duplicates)

    # -- Errors --------------------------------------------------------------------------------

    def _build_errors(self) -> None:
        from visloupe.core.profiling import confusion

        prof = self._ensure_profile()
        if self._model is None:
            self.errors_info.value = ("<i>The Errors tab needs a model: "
                                      "DatasetExplorer(data, model=model, preprocess=...).</i>")
            return
        if prof["label"].dropna().empty:
            self.errors_info.value = "<i>The Errors tab needs labels; this dataset has none.</i>"
            return
        result = confusion(self._model, self._source, preprocess=self._preprocess,
                           indices=self._rows.tolist(), progress=self._progress("predicting"))
        self._progress_done()
        self._confusion = result
        matrix = np.asarray(result.matrix)
        acc = np.asarray(result.per_class_accuracy, dtype=np.float64)
        names = list(result.class_names) if result.class_names is not None else \
            [self._class_name(k) for k in range(len(matrix))]
        total = matrix.sum()
        overall = float(np.trace(matrix) / total) if total else float("nan")
        table = pd.DataFrame({"class": names, "images": matrix.sum(axis=1),
                              "accuracy": acc})
        self.errors_info.value = (f"<h4>Confusion matrix</h4><div>accuracy {overall:.3f} on "
                                  f"{int(total)} images · rows: label, columns: prediction · "
                                  "click a cell to list its images</div>")
        accuracy = w.HTML(table_html(table, "visloupe-accuracy-table", max_rows=50),
                          layout=w.Layout(margin=f"0 0 0 {SPACE_L}px"))
        self.matrix_box.children = [w.HBox([self._matrix_grid(matrix, names), accuracy])]

    def _matrix_grid(self, matrix: np.ndarray, names: list[str]) -> w.Widget:
        k = len(matrix)
        off = matrix.copy()
        np.fill_diagonal(off, 0)
        top_diag, top_off = max(int(np.diag(matrix).max()), 1), max(int(off.max()), 1)
        cells: list[w.Widget] = [w.HTML("<b>label \\ pred</b>")]
        cells += [w.HTML(f"<b>{html.escape(n[:10])}</b>") for n in names]
        for t in range(k):
            cells.append(w.HTML(f"<b>{html.escape(names[t][:14])}</b>"))
            for p in range(k):
                count = int(matrix[t, p])
                b = w.Button(description=str(count), tooltip=f"{names[t]} → {names[p]}",
                             layout=w.Layout(width="auto", height="28px"))
                # errors on their own scale (from 0.35), so a single one still stands out
                shade = count / top_diag if t == p else 0.35 + 0.65 * count / top_off
                if count:
                    low = int(255 - 150 * shade)
                    r, g = (low, 255) if t == p else (255, low)
                    b.style.button_color = f"rgb({r},{g},{low})"
                b.add_class("visloupe-cm-cell")
                b.on_click(self._make_cell_handler(t, p))
                cells.append(b)
        grid = w.GridBox(cells, layout=w.Layout(
            grid_template_columns=f"110px repeat({k}, minmax(44px, 70px))",
            grid_gap=f"{SPACE_XS}px"))
        grid.add_class("visloupe-confusion")
        return grid

    def _make_cell_handler(self, t: int, p: int) -> Callable[[Any], None]:
        def handler(_button: Any) -> None:
            self._run(lambda: self._show_cell(t, p))

        return handler

    def _show_cell(self, t: int, p: int) -> list[int]:
        indices = [int(i) for i in self._confusion.samples(t, p)]
        names = self._confusion.class_names or []
        tn = names[t] if t < len(names) else str(t)
        pn = names[p] if p < len(names) else str(p)
        self.cell_info.value = (f'<div class="visloupe-cell" data-indices='
                                f'"{",".join(map(str, indices))}"><b>{len(indices)} images '
                                f"labelled {html.escape(tn)}, predicted {html.escape(pn)}</b>: "
                                f"{html.escape(str(indices[:100]))}</div>")
        shown = indices[:48]
        _set_png(self.cell_image, render.to_png(render.image_grid(
            [self._source.rgb(i) for i in shown], [f"#{i}" for i in shown], ncols=12, cell=64))
            if shown else b"")
        self.cell_indices = indices
        return indices
