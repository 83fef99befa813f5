"""``SanityCheckExplorer``: walk the model-randomisation cascade and watch the maps.

Built on :mod:`visloupe.core.evaluation.sanity` (Adebayo et al., "Sanity Checks for Saliency
Maps", NeurIPS 2018; Kokhlikyan et al., "Investigating sanity checks for saliency maps with image
and text classification", arXiv:2106.07475). A layer slider steps through the cascade (step 0 =
the trained model, step k = k layers re-initialised from the logits down) and shows every
explainer's map for the chosen input -- heatmaps for images, highlighted tokens for text -- next
to curves of each similarity measure against the randomised depth (mean ± std over the inputs).
A toggle switches between the original model and its smoothed copy (ReLU -> Softplus, max
pooling -> LogSumExp, ``smooth_model``); "Compute metrics" puts infidelity (and, for images,
max-sensitivity) of both side by side.

The cascade runs once per (model variant, mode) with a progress bar and is cached; the sliders
re-render from the cache without touching the model.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd
import torch
from torch import nn
from visloupe.core.attribution import is_token_ids as _is_token_ids
from visloupe.core.checks import check_batch_size, check_positive, check_seed
from visloupe.core.evaluation import MEASURE_TITLES, pixel_inputs

from ._common import check_int, display_map, guarded
from .base import ExplorerBase, Scale, caption_row, escape, image_view, labelled, toggle_buttons
from .render import fit_image, from_png, image_grid, overlay, to_png
from .style import MUTED, PALETTE, TEXT_S

__all__ = ["SanityCheckExplorer"]

MAP_CMAP = "inferno"
"""Sequential colormap of the |map| tiles (absolute values: zero is dark, never mid-scale)."""


def _display_rgb(x: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` -> uint8 ``(H, W, 3)``, min-max scaled (for inputs already normalised)."""
    a = x.detach().cpu().float()
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else torch.zeros_like(a)
    arr = (a.numpy().transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr[:, :, :3]


def _short_layer_names(steps: Sequence[str]) -> tuple[list[str], str]:
    """Tick labels for the randomisation steps: the dotted prefix every layer name shares
    (``features.``) is said once on the axis, not cut off mid-name on every tick."""
    layers = [s.split(".") for s in steps if "." in s]
    shared: list[str] = []
    if len(layers) > 1:
        for parts in zip(*[p[:-1] for p in layers], strict=False):
            if len(set(parts)) != 1:
                break
            shared.append(parts[0])
    prefix = ".".join(shared) + "." if shared else ""
    ticks = [s[len(prefix):] if prefix and s.startswith(prefix) else s for s in steps]
    return [t if len(t) <= 18 else t[:8] + "…" + t[-9:] for t in ticks], prefix


def _curves_png(table: pd.DataFrame, steps: Sequence[str], title: str) -> bytes:
    """Similarity against randomised depth, one panel per measure, one line per explainer
    (mean ± std band). Matplotlib's object API, no pyplot; drawn once per cascade."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    measures = list(dict.fromkeys(table.measure))
    explainers = list(dict.fromkeys(table.explainer))
    fig = Figure(figsize=(3.1 * len(measures), 2.9), dpi=80)
    FigureCanvasAgg(fig)
    x = np.arange(len(steps))
    ticks, prefix = _short_layer_names(steps)
    for k, measure in enumerate(measures):
        ax = fig.add_subplot(1, len(measures), k + 1)
        for i, name in enumerate(explainers):
            part = table[(table.measure == measure) & (table.explainer == name)].sort_values(
                "step")
            mean = part.similarity.to_numpy(dtype=float)
            std = np.nan_to_num(part["std"].to_numpy(dtype=float))
            colour = PALETTE[i % len(PALETTE)]
            ax.plot(part.step, mean, marker="o", ms=3, color=colour, label=name)
            ax.fill_between(part.step, mean - std, mean + std, color=colour, alpha=0.12)
        ax.axhline(0, color=MUTED, lw=0.6)
        ax.set_ylim(-0.5, 1.05)
        ax.set_title(MEASURE_TITLES.get(measure, measure), fontsize=9)
        ax.set_xticks(x)
        ax.set_xticklabels(ticks, rotation=60, ha="right", fontsize=6)
        ax.set_xlabel(f"re-initialised down to layer (of {prefix[:-1]})" if prefix
                      else "re-initialised down to layer", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        if k == 0:
            ax.set_ylabel("similarity to step 0", fontsize=8)
            ax.legend(fontsize=6, loc="lower left")
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.3, top=0.84, wspace=0.25)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class SanityCheckExplorer(ExplorerBase, w.VBox):
    """Model-parameter randomisation sanity checks, interactively, for images or text.

    Args:
        model: an image classifier or a token-id text classifier (never modified).
        data: images: anything ``data.as_image_source`` accepts (with ``preprocess``), or model
            inputs ``(N, C, H, W)``; text: token ids ``(N, T)``, or a list of strings / a dataset
            with a ``text`` column together with a ``preprocess`` such as ``TextPreprocess``.
        explainers: images: registry names, callables or a dict (default saliency, input x
            gradient, integrated gradients); text: ``TEXT_EXPLAINERS`` names or callables.
        preprocess: ``models.pretrained``'s preprocess (PIL -> tensor, or str -> token ids), a
            Hugging Face image processor, or any image preprocess with ``normalize=``.
        normalize: for images, the model's normalisation of [0, 1] pixels: ``(mean, std)`` (a
            ``preprocess`` given too is taken to end with ``(x - mean) / std``; it is undone
            for display) or a callable on ``(N, C, H, W)`` (then ``preprocess`` returns
            pixels). See :mod:`visloupe.core.evaluation.pixels`.
        n_inputs: inputs used (the first ones of ``data``).
        layers: the cascade (a module name or names, outermost first); default every
            parameterised layer that reaches the logits.
        measures: similarity measures (default all for the modality).
        softplus_beta, lse_temperature: the smoothed copy (``smooth_model``).
        smoothed: a smooth model to compare with instead (e.g. one trained smooth).
        vocab: id -> token string for text (default: the preprocess's tokenizer, else ids).
        seed: re-initialisation seed; ``pad_id``: padding token; ``cell``: tile size (px).

    The cascade is core ``evaluation.run_randomization`` on :attr:`inputs` (what a script
    passes), the metrics core ``evaluation.smoothing_check``.
    """

    _css_class = "visloupe-sanity-explorer"

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        explainers: Any = None,
        *,
        preprocess: Any = None,
        normalize: Any = None,
        n_inputs: int = 8,
        layers: str | Sequence[str] | None = None,
        measures: Sequence[str] | None = None,
        softplus_beta: float = 5.0,
        lse_temperature: float = 10.0,
        smoothed: nn.Module | None = None,
        vocab: Any = None,
        seed: int = 0,
        pad_id: int = 0,
        cell: int = 96,
        batch_size: int | None = None,
    ) -> None:
        super().__init__()
        self._init_base("cascade")
        self.add_class("visloupe-sanity-explorer")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        check_int("n_inputs", n_inputs)
        check_int("cell", cell, 16, "pixels")
        self._model = model
        self._inputs, self._pixels, self._tokens = self._read(data, preprocess, n_inputs, vocab,
                                                              normalize)
        self._text = _is_token_ids(self._inputs)
        if explainers is None:
            explainers = (["saliency", "input_x_gradient", "integrated_gradients"]
                          if self._text else
                          ["saliency", "input_x_gradient", ("integrated_gradients",
                                                            {"n_steps": 16})])
        self._explainers = explainers
        if isinstance(layers, (str, nn.Module)):  # one layer, not a string of letters
            layers = [layers]
        self._layers = list(layers) if layers is not None else None
        self._measures = measures
        self._beta = check_positive("softplus_beta", softplus_beta)
        self._temperature = check_positive("lse_temperature", lse_temperature)
        if smoothed is not None and not isinstance(smoothed, nn.Module):
            raise TypeError(f"smoothed: expected None or a torch.nn.Module, got "
                            f"{type(smoothed).__name__}")
        self._smoothed_model = smoothed
        self._seed, self._cell = check_seed(seed), cell
        self._pad_id = check_int("pad_id", pad_id, 0)
        self._batch_size = check_batch_size(batch_size)
        self._results: dict[tuple[str, str], Any] = {}
        self._curves: dict[tuple[str, str], bytes] = {}
        self.metrics: pd.DataFrame | None = None
        self._build_ui()
        self.refresh()

    # ------------------------------------------------------------------ data

    @property
    def inputs(self) -> torch.Tensor:
        """The model inputs the cascade runs on: ``(N, C, H, W)`` images or ``(N, T)`` ids."""
        return self._inputs

    @staticmethod
    def _read(data: Any, preprocess: Any, n: int, vocab: Any, normalize: Any):
        """-> (model inputs, display pixels or None, token strings or None)."""
        if isinstance(data, np.ndarray):
            data = torch.from_numpy(data)
        if isinstance(data, torch.Tensor):
            x = data[:n]
            if _is_token_ids(x):
                return x.long(), None, _token_strings(x, vocab, preprocess)
            if x.dim() != 4 or not x.is_floating_point():
                raise ValueError(f"data: expected images (N, C, H, W) float or token ids (N, T), "
                                 f"got {x.dtype} {tuple(x.shape)}")
            return x, None, None
        texts = None
        if isinstance(data, (list, tuple)) and data and all(isinstance(t, str) for t in data):
            texts = list(data[:n])
        elif hasattr(data, "column_names") and "text" in getattr(data, "column_names", ()):
            texts = list(data.select(range(min(n, len(data))))["text"])
        if texts is not None:
            if preprocess is None:
                raise ValueError("preprocess: text data needs a preprocess (str -> token ids), "
                                 "e.g. the one models.pretrained('text-cnn') returns")
            ids = preprocess(texts)
            return ids.long(), None, _token_strings(ids, vocab, preprocess)
        pdata = pixel_inputs(data, preprocess, normalize, n_images=n)
        return pdata.normalize(pdata.pixels), pdata.pixels, None

    # ------------------------------------------------------------------ UI

    def _build_ui(self) -> None:
        wide = {"description_width": "initial"}
        self.variant = toggle_buttons(["original", "smoothed"], "original")
        self.variant.add_class("visloupe-sanity-variant")
        self.mode = w.Dropdown(options=["cascading", "independent"], value="cascading",
                               description="randomisation", style=wide,
                               layout=w.Layout(width="260px"))
        self.layer_slider = w.IntSlider(value=0, min=0, max=1, description="randomised depth",
                                        continuous_update=False, style=wide,
                                        layout=w.Layout(width="420px"))
        self.layer_slider.add_class("visloupe-sanity-layer")
        self.layer_label = w.HTML()
        self.layer_label.add_class("visloupe-sanity-layer-label")
        n = int(self._inputs.shape[0])
        self.input_slider = w.IntSlider(value=0, min=0, max=max(n - 1, 0), description="input",
                                        continuous_update=False, style=wide)
        self.status = w.HTML()
        self.maps = image_view()
        self.maps.add_class("visloupe-sanity-maps")
        self.maps_captions = w.HTML()  # under each map: what it is, as text
        self._maps_export: Any = None  # the captioned PNG of the maps, for to_png
        self.tokens = w.HTML()
        self.tokens.add_class("visloupe-sanity-tokens")
        self.curves = image_view()
        self.curves.add_class("visloupe-sanity-curves")
        self.metrics_button = w.Button(description="Compute metrics", icon="calculator",
                                       button_style="primary")
        # hidden until the metrics run; then it says which model it is on
        self.metrics_progress = w.IntProgress(value=0, min=0, max=2, description="models",
                                              layout=w.Layout(width="220px", display="none"))
        self.metrics_table = w.HTML()
        self.metrics_table.add_class("visloupe-sanity-metrics")
        self.variant.observe(self._on_variant, names="value")
        self.mode.observe(self._on_variant, names="value")
        self.layer_slider.observe(self._on_view, names="value")
        self.input_slider.observe(self._on_view, names="value")
        self.metrics_button.on_click(self._on_metrics)
        view = self.tokens if self._text else w.VBox([self.maps, self.maps_captions])
        self.children = [
            w.HBox([labelled("model", self.variant), self.mode, self.progress_box]),
            w.HBox([self.layer_slider, self.layer_label]),
            self.input_slider, self.status, view, self.curves,
            w.HTML("<b>Original vs smoothed</b> (infidelity, max-sensitivity; lower is better)"),
            w.HBox([self.metrics_button, self.metrics_progress]), self.metrics_table,
            self.error_area,
        ]

    # ------------------------------------------------------------------ computation

    def _variant_model(self, variant: str) -> nn.Module:
        if variant == "original":
            return self._model
        if self._smoothed_model is None:
            from visloupe.core.models import smooth_model

            self._smoothed_model = smooth_model(self._model, self._beta, self._temperature)
        return self._smoothed_model

    def result(self, variant: str | None = None, mode: str | None = None) -> Any:
        """The cached :class:`RandomizationResult` for (variant, mode), computed on first use."""
        from visloupe.core.evaluation import run_randomization

        key = (variant or self.variant.value, mode or self.mode.value)
        if key not in self._results:
            tick = self._progress_callback(f"{key[0]}, {key[1]}", "steps")

            self._results[key] = run_randomization(
                self._variant_model(key[0]), self._inputs, self._explainers, mode=key[1],
                layers=self._layers, seed=self._seed, measures=self._measures,
                pad_id=self._pad_id, batch_size=self._batch_size, progress=tick)
            self._progress_done()
        return self._results[key]

    @guarded
    def _on_variant(self, _change: Any = None) -> None:
        self.refresh()

    @guarded
    def _on_view(self, _change: Any = None) -> None:
        self._clear_errors()
        self._render()

    def refresh(self) -> None:
        """Compute (or fetch) the current variant's cascade and redraw; errors are shown."""
        self._clear_errors()
        try:
            result = self.result()
        except Exception as error:  # noqa: BLE001 - shown in the widget
            self._report_error(f"{type(error).__name__}: {error}")
            return
        self.layer_slider.max = len(result.layers)
        self._render()

    # ------------------------------------------------------------------ drawing

    def _render(self) -> None:
        result = self.result()
        step = min(int(self.layer_slider.value), len(result.layers))
        index = int(self.input_slider.value)
        layer = result.steps[step]
        what = "trained model" if step == 0 else (
            f"re-initialised: {escape(layer)}" + (" and every layer above it"
                                                       if result.mode == "cascading" and step > 1
                                                       else ""))
        self.layer_label.value = f"<code>step {step}</code> · {what}"
        per = result.records
        here = per[(per.step == step) & (per.input == index)]
        parts = []
        for name in result.explainers:
            rows = here[here.explainer == name]
            scores = ", ".join(f"{MEASURE_TITLES.get(r.measure, r.measure)} {r.similarity:.2f}"
                               for r in rows.itertuples())
            parts.append(f"<b>{escape(name)}</b>: {escape(scores)}")
        joined = " &nbsp;|&nbsp; ".join(parts)
        self.status.value = f"<div style='font-size:{TEXT_S}px'>{joined}</div>"
        if self._text:
            self.tokens.value = self._token_html(result, step, index)
        else:
            self.maps.value = self._maps_png(result, step, index)
        key = (self.variant.value, result.mode)
        if key not in self._curves:
            title = f"{key[0]} model, {key[1]} randomisation (mean ± std over the inputs)"
            self._curves[key] = _curves_png(result.to_dataframe(), result.steps, title)
        self.curves.value = self._curves[key]
        self.last_step = step

    def _maps_png(self, result: Any, step: int, index: int) -> bytes:
        if self._pixels is not None:
            image = (self._pixels[index].clamp(0, 1).numpy().transpose(1, 2, 0) * 255 + 0.5)
            image = image.astype(np.uint8)
            image = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
        else:
            image = _display_rgb(self._inputs[index])
        tiles, captions = [fit_image(image, self._cell)], ["input"]
        scales: list[Scale | None] = [None]
        for name in result.explainers:
            m = result.maps[name][step, index].numpy()
            if not np.isfinite(m).all():
                tiles.append(None)
                captions.append(f"{name}\n(failed)")
                scales.append(None)
                continue
            shown, vmax = display_map(m, 100.0, signed=False)
            tiles.append(fit_image(overlay(image, shown, alpha=1.0, mode="heatmap",
                                           cmap=MAP_CMAP, vmax=vmax), self._cell))
            captions.append(f"{name}\n|map|")
            scales.append((MAP_CMAP, False, vmax or 0.0))
        self._maps_export = image_grid(tiles, captions, ncols=len(tiles), cell=self._cell)
        self.maps_captions.value = caption_row(captions, self._cell, scales=scales)
        return to_png(image_grid(tiles, None, ncols=len(tiles), cell=self._cell))

    def _token_html(self, result: Any, step: int, index: int) -> str:
        from visloupe.core.attribution import tokens_to_html

        keep = result.mask[index].numpy()
        tokens = [t for t, k in zip(self._tokens[index], keep, strict=True) if k]
        rows = []
        for name in result.explainers:
            scores = result.maps[name][step, index].numpy()[keep]
            if not np.isfinite(scores).all():
                body = "<i>explainer failed on this model</i>"
            elif not tokens:
                body = "<i>all padding</i>"
            else:
                body = tokens_to_html(tokens, scores.tolist())
            rows.append(f"<tr><td style='padding-right:8px'><b>{escape(name)}</b></td>"
                        f"<td>{body}</td></tr>")
        return "<table class='visloupe-sanity-token-table'>" + "".join(rows) + "</table>"

    # ------------------------------------------------------------------ metrics

    @guarded
    def _on_metrics(self, _button: Any = None) -> None:
        self.compute_metrics()

    def compute_metrics(self, n_samples: int = 5) -> pd.DataFrame:
        """Infidelity (and max-sensitivity for images) of each explainer on the original and the
        smoothed model, side by side (``smoothing_check``)."""
        from visloupe.core.evaluation import smoothing_check

        self._clear_errors()
        self.metrics_button.disabled = True
        self.metrics_progress.value = 0
        self.metrics_progress.layout.display = None
        frames = []
        try:
            for variant in ("original", "smoothed"):
                self.metrics_progress.description = f"{variant} model"
                frames.append(smoothing_check(
                    {variant: self._variant_model(variant)}, self._inputs, self._explainers,
                    n_samples=n_samples, seed=self._seed, pad_id=self._pad_id))
                self.metrics_progress.value += 1
            self.metrics_progress.description = "done"
        finally:
            self.metrics_button.disabled = False
        table = pd.concat(frames, ignore_index=True)
        self.metrics = table
        wide = table.pivot_table(index=["explainer", "metric"], columns="model", values="mean",
                                 sort=False)
        self.metrics_table.value = wide.to_html(float_format=lambda v: f"{v:.4f}", border=0)
        return table

    # ------------------------------------------------------------------ export

    def _png(self) -> bytes:
        """The maps of the current step (images) above the similarity curves."""
        maps = None if self._text or self._maps_export is None else to_png(self._maps_export)
        parts = [v for v in (maps, self.curves.value) if v]
        if not parts:
            return to_png(np.full((8, 8, 3), 255, np.uint8))
        if len(parts) == 1:
            return bytes(parts[0])
        images = [from_png(bytes(v)) for v in parts]
        width = max(i.width for i in images)
        return to_png(image_grid(images, ncols=1, cell=(max(i.height for i in images), width)))

    def _html_body(self) -> str:
        view = self.tokens.value if self._text else ""
        return f"{self.layer_label.value}{view}{self.metrics_table.value}"


def _token_strings(ids: torch.Tensor, vocab: Any, preprocess: Any) -> list[list[str]]:
    rows = ids.tolist()
    decode = getattr(getattr(preprocess, "tokenizer", None), "decode", None)
    if vocab is None and callable(decode):
        try:
            return [[str(t) for t in decode(row, skip_pad=False)] for row in rows]
        except (TypeError, ValueError):
            pass
    if vocab is None:
        return [[str(i) for i in row] for row in rows]
    if isinstance(vocab, dict):
        return [[str(vocab.get(i, i)) for i in row] for row in rows]
    if callable(vocab):
        return [[str(vocab(i)) for i in row] for row in rows]
    return [[str(vocab[i]) if 0 <= i < len(vocab) else str(i) for i in row] for row in rows]
