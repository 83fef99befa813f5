"""SplitIGExplorer: see where Integrated Gradients saturates and move the split by hand.

Split IG (Miglani, Kokhlikyan, Alsallakh, Martin, Reblitz-Richardson, "Investigating Saturation
Effects in Integrated Gradients", ICML 2020 WHI workshop, arXiv:2010.12697) cuts the IG path where
the target output ``F(alpha)`` has reached ``ratio`` of its total change. The widget plots
``F(alpha)`` and the gradient norm along the path with the split marked, shows the left
(unsaturated), right (saturated) and full IG maps side by side with their sums against
``f(x) - f(baseline)``, and moves the split with a ratio slider through ``result.resplit`` --
from the stored path gradients, without calling the model again.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import ipywidgets as w
import numpy as np
import torch
from PIL import Image
from visloupe.core.checks import check_batch_size

from . import render
from ._common import (
    LRU,
    GridExport,
    check_int,
    display_map,
    guarded,
    model_frame,
    original_ids,
    predict_proba,
    preprocess_image,
    resolve_models,
    resolve_preprocess,
)
from .base import ExplorerBase, caption_row, escape, image_view, labelled, toggle_buttons
from .browser import SampleBrowser
from .style import PRIMARY, SECONDARY, SPACE_M, SPACE_XS, TERTIARY, TEXT_M, rgb

__all__ = ["PathPlot", "SplitIGExplorer", "path_plot"]

PARTS = ("left", "right", "ig")
PART_TITLES = {"left": "left (unsaturated)", "right": "right (saturated)", "ig": "full IG"}
PREDICTED, LABEL = "predicted", "label"


class PathPlot:
    """The path plot of image ``row`` of a ``SplitIGResult``: ``F(alpha)`` (left axis) and
    ``||grad F(alpha)||`` (right axis) drawn once with a bare Agg ``Figure`` (no pyplot state);
    the split ``alpha*`` (dashed, left part shaded) and the threshold ``f(b) + ratio (f(x) - f(b))``
    (dotted) are then stamped on with numpy, so moving the ratio slider costs milliseconds."""

    SPLIT = rgb(TERTIARY)
    CURVE = rgb(PRIMARY)

    def __init__(self, result: Any, row: int = 0, width: int = 420, height: int = 210) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D

        alphas = result.alphas.detach().cpu().numpy()
        outputs = result.path_outputs[row].detach().cpu().numpy()
        norms = result.grad_norms[row].detach().cpu().numpy()
        self.fx = float(result.input_output[row])
        self.fb = float(result.baseline_output[row])
        dpi = 100
        fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ax.plot(alphas, outputs, color=PRIMARY, lw=1.6)
        low, high = min(outputs.min(), self.fb, self.fx), max(outputs.max(), self.fb, self.fx)
        margin = 0.05 * (high - low) if high > low else 1.0
        ax.set_ylim(low - margin, high + margin)
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("α", fontsize=8)
        ax.set_ylabel("target output F(α)", fontsize=8, color=PRIMARY)
        ax.tick_params(labelsize=7)
        ax2 = ax.twinx()
        ax2.plot(alphas, norms, color=SECONDARY, lw=1.0, alpha=0.85)
        ax2.set_ylabel("gradient norm", fontsize=8, color=SECONDARY)
        ax2.tick_params(labelsize=7)
        handles = [
            Line2D([], [], color=PRIMARY, lw=1.6), Line2D([], [], color=SECONDARY, lw=1.0),
            Line2D([], [], color=PRIMARY, lw=1.0, ls=":"),
            Line2D([], [], color=TERTIARY, lw=1.4, ls="--"),
        ]
        ax.legend(handles, ["F(α)", "‖∇F(α)‖", "threshold", "split α*"], fontsize=7,
                  loc="lower right", frameon=False)
        fig.tight_layout(pad=0.4)
        canvas.draw()
        self.base = np.asarray(canvas.buffer_rgba())[..., :3].copy()
        # data -> pixel (row, col) for the linear axes, read from the drawn transform
        (x0, y0), (x1, y1) = ax.transData.transform([(0.0, low - margin), (1.0, high + margin)])
        rows = self.base.shape[0]
        self._x = (x0, x1)
        self._y = (low - margin, high + margin, rows - y0, rows - y1)

    def _col(self, alpha: float) -> int:
        x0, x1 = self._x
        return int(round(x0 + alpha * (x1 - x0)))

    def _row(self, value: float) -> int:
        lo, hi, r_lo, r_hi = self._y
        return int(round(r_lo + (value - lo) / (hi - lo) * (r_hi - r_lo)))

    def image(self, alpha_star: float, ratio: float) -> np.ndarray:
        """The plot ``(H, W, 3)`` uint8 with the split at ``alpha_star`` and the threshold of
        ``ratio`` marked."""
        out = self.base.copy()
        top, bottom = sorted((self._row(self._y[1]), self._row(self._y[0])))
        left, col = self._col(0.0), self._col(float(np.clip(alpha_star, 0.0, 1.0)))
        shade = out[top:bottom, left:col].astype(np.float32)
        out[top:bottom, left:col] = (shade * 0.9 + np.float32(self.SPLIT) * 0.1).astype(np.uint8)
        dash = (np.arange(top, bottom) // 4) % 2 == 0
        for dc in (0, 1):
            if 0 <= col + dc < out.shape[1]:
                out[np.arange(top, bottom)[dash], col + dc] = self.SPLIT
        threshold = self.fb + ratio * (self.fx - self.fb)
        row = self._row(threshold)
        if top <= row < bottom:
            right = self._col(1.0)
            dots = np.arange(left, right)
            out[row, dots[(dots // 2) % 2 == 0]] = self.CURVE
        return out


def path_plot(result: Any, row: int = 0, width: int = 420, height: int = 210) -> bytes:
    """PNG of :class:`PathPlot` for image ``row`` of a ``SplitIGResult`` at its own split."""
    plot = PathPlot(result, row, width, height)
    return render.to_png(plot.image(float(result.alpha_star[row]), float(result.ratio)))



def _check_ids(ids: Any) -> list[int]:
    """``ids`` as a list of ints; TypeError naming ``ids`` for anything else."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence | np.ndarray):
        raise TypeError(f"ids: expected a sequence of ints, got {type(ids).__name__}")
    try:
        return [operator.index(i) for i in ids]
    except TypeError:
        bad = next(i for i in ids if not hasattr(type(i), "__index__"))
        raise TypeError(f"ids: expected a sequence of ints, got an item {bad!r} of type "
                        f"{type(bad).__name__}") from None

class SplitIGExplorer(GridExport, ExplorerBase, w.VBox):
    """Interactive Split IG for one image at a time.

    Args:
        model: an ``nn.Module`` returning logits (or a dict ``{name: module}``; a dropdown then
            picks one). Analysed in eval mode with its training flags restored.
        data: anything ``visloupe.core.data.as_image_source`` accepts.
        preprocess: ``PIL.Image -> Tensor (C, H, W)`` (one, or a dict per model name); None =
            the image as a [0, 1] tensor.
        class_names: overrides the names the data carries.
        baseline: forwarded to ``split_integrated_gradients`` (None = zeros).
        n_steps: initial number of path steps (a slider; changing it recomputes on release).
        ratio: initial split ratio (a slider; moving it never recomputes the path).
        cell: display size of each map in pixels.
        batch_size: rows per model pass.
        cache_size: path results kept (least recently used are dropped).
        ids: the id shown for each row (default: ``data.parent_index`` for a core
            ``profiling.subset``, else the row number).
    """

    _css_class = "visloupe-splitig-explorer"

    def __init__(
        self,
        model: Any,
        data: Any,
        *,
        preprocess: Any = None,
        class_names: Sequence[str] | None = None,
        baseline: Any = None,
        n_steps: int = 64,
        ratio: float = 0.9,
        cell: int = 160,
        batch_size: int | None = None,
        cache_size: int = 32,
        ids: Sequence[int] | None = None,
    ) -> None:
        from visloupe.core.data import as_image_source

        super().__init__()
        self._init_base("split IG")
        self.add_class("visloupe-splitig-explorer")
        check_int("cell", cell, 16, "pixels")
        check_int("cache_size", cache_size, 1, "path results kept")
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or not 2 <= n_steps <= 1000:
            raise ValueError(f"n_steps: expected an int in [2, 1000], got {n_steps!r}")
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            raise ValueError(f"ratio: expected a number in [0, 1], got {ratio!r}")
        self._models = resolve_models(model)
        self._pre = resolve_preprocess(preprocess, self._models)
        self._source = as_image_source(data)
        n = self._source.length
        if n is None:  # a stream: browse what one buffer page holds
            n = sum(1 for _ in zip(range(256), self._source, strict=False))
        if n == 0:
            raise ValueError("data: expected at least one image, got an empty source")
        self._n = int(n)
        self._ids = _check_ids(ids) if ids is not None else original_ids(data, self._n)
        if self._ids is not None and len(self._ids) != self._n:
            raise ValueError(f"ids: expected one id per item ({self._n}), got {len(self._ids)}")
        names = class_names or getattr(self._source, "class_names", None)
        self._class_names = [str(c) for c in names] if names else None
        self._baseline = baseline
        self._batch_size = check_batch_size(batch_size)
        self._cell = cell
        self._results: LRU = LRU(cache_size)
        self._probs: dict[tuple[int, str], np.ndarray] = {}
        self._current: Any = None
        self._plot: PathPlot | None = None
        self._plot_for: Any = None
        self._grid: Image.Image | None = None
        self._suspend = 0
        self._build_ui(n_steps, float(ratio))
        self._refresh()

    # ------------------------------------------------------------------ UI

    def _build_ui(self, n_steps: int, ratio: float) -> None:
        wide = {"description_width": "initial"}
        self.browser = SampleBrowser(self._n, on_change=self._on_expensive,
                                     report=self._report_error, ids=self._ids)
        self.position = self.browser.position
        self.model_select = w.Dropdown(options=list(self._models), description="model",
                                       style=wide)
        self.model_select.layout.display = None if len(self._models) > 1 else "none"
        classes = self._class_names or []
        self.target = w.Dropdown(
            options=[("predicted class", PREDICTED), ("label", LABEL)]
            + [(f"{i}: {c}", i) for i, c in enumerate(classes)],
            value=PREDICTED, description="target", style=wide,
        )
        self.n_steps = w.IntSlider(value=n_steps, min=2, max=1000, step=1, description="steps",
                                   continuous_update=False, style=wide)
        self.ratio = w.FloatSlider(value=ratio, min=0.0, max=1.0, step=0.01,
                                   description="split ratio", continuous_update=True,
                                   readout_format=".2f", style=wide)
        self.alpha = w.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.05, description="alpha",
                                   continuous_update=True, style=wide)
        # auto: diverging for signed values (zero is white), sequential for absolute ones
        self.cmap = w.Dropdown(options=["auto", "RdBu_r", "coolwarm", "bwr", "seismic",
                                        "inferno", "magma"],
                               value="auto", description="colormap", style=wide)
        self.sign = toggle_buttons(["signed", "absolute"], "signed")
        self.errors = self.error_area
        self.plot = image_view()
        self.view = image_view()
        self.captions = w.HTML()  # under each tile: what it is, as text
        self.captions.add_class("visloupe-captions")
        self.summary = w.HTML(value="")
        self.children = [
            self.browser,
            w.HBox([self.model_select, self.target, self.n_steps]),
            w.HBox([self.ratio, self.alpha]),
            w.HBox([self.cmap, labelled("values", self.sign)]),
            self.progress_box,
            self.errors,
            w.HBox([self.plot, self.summary]),
            self.view,
            self.captions,
        ]
        for control in (self.model_select, self.target, self.n_steps):
            control.observe(self._on_expensive, names="value")
        self.ratio.observe(self._on_ratio, names="value")
        for control in (self.alpha, self.cmap, self.sign):
            control.observe(self._on_cheap, names="value")

    # ------------------------------------------------------------------ public API

    @property
    def result(self) -> Any:
        """The ``SplitIGResult`` on view (split at the slider's ratio)."""
        return self._current

    # ------------------------------------------------------------------ computation

    def _input(self, index: int, model_name: str) -> torch.Tensor:
        image = self._source.model_image(self._source[index].image)
        return preprocess_image(self._pre[model_name], image, model_name)

    def _target_for(self, index: int, model_name: str) -> int:
        choice = self.target.value
        if choice == PREDICTED:
            key = (index, model_name)
            if key not in self._probs:
                x = self._input(index, model_name)[None]
                self._probs[key] = predict_proba(self._models[model_name], x)[0]
            return int(np.argmax(self._probs[key]))
        if choice == LABEL:
            label = self._source[index].label
            if label is None:
                raise ValueError(f"target: sample {index} has no label; pick a class")
            return int(label)
        return int(choice)

    def _compute(self) -> Any:
        from visloupe.core.attribution import split_integrated_gradients

        index, model_name = self._row(), self.model_select.value
        target = self._target_for(index, model_name)
        key = (index, model_name, target, int(self.n_steps.value))
        result = self._results.get(key)
        if result is None:
            self._progress_start(1, "split IG", "image")
            x = self._input(index, model_name)[None]
            result = split_integrated_gradients(
                self._models[model_name], x, target=target, baseline=self._baseline,
                ratio=float(self.ratio.value), n_steps=int(self.n_steps.value),
                batch_size=self._batch_size, store_path=True,
            )
            self._results.put(key, result)
            self._progress_done()
        return result

    def _row(self) -> int:
        index = self.browser.index
        return 0 if index is None else int(index)

    @guarded
    def _refresh(self) -> None:
        self._clear_errors()
        computed = self._compute()
        self._current = computed.resplit(float(self.ratio.value))
        if self._plot_for is not computed:  # the curves depend on the path only
            self._plot, self._plot_for = PathPlot(computed), computed
        self._render()

    def _on_expensive(self, _change: Any = None) -> None:
        if not self._suspend:
            self._refresh()

    @guarded
    def _on_ratio(self, _change: Any = None) -> None:
        """Move the split: ``resplit`` reads the stored path, the model is not called."""
        if self._current is None:
            return
        self._current = self._current.resplit(float(self.ratio.value))
        self._render()

    @guarded
    def _on_cheap(self, _change: Any = None) -> None:
        self._render()

    # ------------------------------------------------------------------ rendering

    def _cmap_for(self, signed: bool) -> str:
        name = self.cmap.value
        return ("RdBu_r" if signed else "inferno") if name == "auto" else name

    def _render(self) -> None:
        result = self._current
        if result is None:
            return
        if self._plot is not None:
            self.plot.value = render.to_png(
                self._plot.image(float(result.alpha_star[0]), float(result.ratio)))
        index = self._row()
        self.browser.show_status()
        frame = model_frame(self._source[index].image, self._pre[self.model_select.value])
        base = np.asarray(render.fit_image(frame, self._cell))
        signed = self.sign.value == "signed"
        maps = {part: result.maps(part)[0].detach().float().cpu().numpy() for part in PARTS}
        clipped = {p: display_map(m, 99.5, signed) for p, m in maps.items()}
        shown = {p: c[0] for p, c in clipped.items()}
        vmax = max(c[1] or 0.0 for c in clipped.values())
        sums = {part: float(getattr(result, part)[0].sum()) for part in PARTS}
        images, captions = [base], [f"input #{self.browser.id_of(index)}\n"
                                    f"target {self._class(int(result.target[0]))}"]
        for part in PARTS:
            images.append(render.overlay(base, shown[part], alpha=float(self.alpha.value),
                                         cmap=self._cmap_for(signed), mode="blend",
                                         signed=signed,
                                         vmax=vmax or None))
            captions.append(f"{PART_TITLES[part]}\nsum {sums[part]:+.4g}")
        # the view: tiles, with their captions as HTML; the export (``_grid``): one captioned PNG
        self._grid = render.image_grid(images, captions, ncols=4, cell=self._cell)
        self.view.value = render.to_png(render.image_grid(images, None, ncols=4, cell=self._cell))
        # the three maps share one scale: the same colour bar under each
        scale = (self._cmap_for(signed), signed, vmax)
        self.captions.value = caption_row(captions, self._cell, scales=[None] + [scale] * 3)
        fx, fb = float(result.input_output[0]), float(result.baseline_output[0])
        change = fx - fb
        split = int(result.split_index[0])
        rows = [
            ("f(x)", f"{fx:+.5g}"), ("f(baseline)", f"{fb:+.5g}"),
            ("f(x) − f(baseline)", f"{change:+.5g}"),
            ("left sum", f"{sums['left']:+.5g} ({_share(sums['left'], change)})"),
            ("right sum", f"{sums['right']:+.5g} ({_share(sums['right'], change)})"),
            ("IG sum", f"{sums['ig']:+.5g} (gap {sums['ig'] - change:+.2e})"),
            ("split", f"step {split} of {result.n_steps}, α* = {float(result.alpha_star[0]):.3f}"),
        ]
        body = "".join(
            f"<tr><td style='padding:{SPACE_XS}px {SPACE_M}px'>{escape(k)}</td>"
            f"<td style='text-align:right;padding:{SPACE_XS}px {SPACE_M}px'><code>{escape(v)}"
            "</code></td></tr>" for k, v in rows
        )
        self.summary.value = (f"<table class='visloupe-splitig-summary' style='font-size:"
                              f"{TEXT_M}px;line-height:1.4;border-collapse:collapse'>{body}</table>")

    def _class(self, k: int) -> str:
        if self._class_names and 0 <= k < len(self._class_names):
            return self._class_names[k]
        return str(k)


def _share(part: float, total: float) -> str:
    return f"{part / total:.0%} of the change" if total else "—"
