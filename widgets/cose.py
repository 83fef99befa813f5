"""``COSEExplorer``: look inside the COSE metric (Daroya, Sun, Maji, ICCV-W 2023).

Top: pick a model, a method, an image and a transformation, drag the magnitude slider and see
the original image with its map, the transformed image with its map, that map brought back into
the original frame, the validity mask, the SSIM and whether the prediction changed.
Bottom: on request, the COSE summary per method and model (bars of consistency, sensitivity and
COSE, a consistency-versus-sensitivity scatter whose points name their method and model on
hover) next to infidelity and max-sensitivity, whose parameters have their own sliders.
Charts are inline SVG (hover titles need no JavaScript and work offline and in Colab).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd
import torch
from torch import nn
from visloupe.core.checks import check_batch_size, check_per_model, check_seed
from visloupe.core.evaluation import pixel_inputs

from ._common import (
    LRU,
    check_int,
    display_map,
    guarded,
    open_job,
    resolve_models,
)
from .base import ExplorerBase, table_html, tile_caption
from .render import fit_image, image_grid, overlay, to_png
from .style import (
    BAD,
    FAINT,
    GOOD,
    INK,
    MUTED,
    PALETTE,
    RULE,
    SPACE_M,
    SPACE_XS,
    TEXT_M,
    TEXT_S,
    TEXT_XS,
)

__all__ = ["COSEExplorer"]



#: What each of the four tiles shows (first line bold under the tile, the rest muted).
TILE_CAPTIONS = ("original\n+ its map", "transformed\n+ its map",
                 "map back\noriginal frame", "validity mask\nSSIM on white")


def _rgb(pixels: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` in [0, 1] -> uint8 ``(H, W, 3)``."""
    arr = (pixels.detach().cpu().clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    arr = arr.transpose(1, 2, 0)
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr[:, :, :3]


def _svg_bars(table: pd.DataFrame, width: int = 420) -> str:
    """Grouped bars (consistency, sensitivity, COSE) per method/model row."""
    metrics = [("consistency", PALETTE[0]), ("sensitivity", PALETTE[1]), ("cose", PALETTE[2])]
    rows = list(table.itertuples(index=False))
    bar, gap, left = 12, 10, 150
    height = len(rows) * (3 * bar + gap) + 30
    scale = width - left - 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="{TEXT_XS}">']
    y = 20
    for row in rows:
        label = html.escape(f"{row.method} / {row.model}")
        parts.append(f'<text x="{left - 6}" y="{y + 1.5 * bar + 4}" text-anchor="end">'
                     f"{label}</text>")
        for k, (name, colour) in enumerate(metrics):
            value = float(getattr(row, name))
            v = 0.0 if not math.isfinite(value) else max(0.0, min(1.0, value))
            parts.append(
                f'<rect x="{left}" y="{y + k * bar}" width="{v * scale:.1f}" '
                f'height="{bar - 2}" fill="{colour}"><title>{label}: {name} {value:.3f}'
                f"</title></rect>"
                f'<text x="{left + v * scale + 3:.1f}" y="{y + k * bar + bar - 3}">'
                f"{value:.2f}</text>")
        y += 3 * bar + gap
    legend = "".join(f'<rect x="{left + i * 90}" y="4" width="10" height="10" fill="{c}"/>'
                     f'<text x="{left + i * 90 + 14}" y="13">{n}</text>'
                     for i, (n, c) in enumerate(metrics))
    parts.append(legend + "</svg>")
    return "".join(parts)


def _svg_scatter(table: pd.DataFrame, size: int = 300) -> str:
    """Consistency (y) vs sensitivity (x) in [0, 1]², one point per method/model with a hover
    title, iso-COSE curves for reference."""
    pad = 36
    inner = size - 2 * pad
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
             f'font-family="sans-serif" font-size="{TEXT_XS}" class="visloupe-cose-scatter">',
             f'<rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" fill="none" '
             f'stroke="{FAINT}"/>',
             f'<text x="{size / 2}" y="{size - 6}" text-anchor="middle">sensitivity</text>',
             f'<text x="12" y="{size / 2}" transform="rotate(-90 12 {size / 2})" '
             'text-anchor="middle">consistency</text>']
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):  # ticks and grid on both axes (both lie in [0, 1])
        x, y = pad + v * inner, pad + (1 - v) * inner
        parts.append(f'<line x1="{x:.1f}" y1="{pad + inner}" x2="{x:.1f}" y2="{pad + inner + 4}" '
                     f'stroke="{MUTED}"/><text x="{x:.1f}" y="{pad + inner + 15}" '
                     f'text-anchor="middle" fill="{MUTED}">{v:g}</text>'
                     f'<line x1="{pad - 4}" y1="{y:.1f}" x2="{pad}" y2="{y:.1f}" stroke="{MUTED}"/>'
                     f'<text x="{pad - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}">{v:g}'
                     "</text>")
    for level in (0.3, 0.5, 0.7):  # COSE = sqrt(c s) = level  ->  c = level² / s
        pts = []
        for s in np.linspace(level * level, 1.0, 40):
            c = level * level / s
            pts.append(f"{pad + s * inner:.1f},{pad + (1 - c) * inner:.1f}")
        parts.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{RULE}"/>'
                     f'<text x="{pad + inner - 2}" y="{pad + (1 - level * level) * inner - 3:.1f}"'
                     f' text-anchor="end" fill="{FAINT}">COSE {level}</text>')
    methods = list(dict.fromkeys(table.method))
    models = list(dict.fromkeys(table.model))
    for row in table.itertuples(index=False):
        c, s = float(row.consistency), float(row.sensitivity)
        if not (math.isfinite(c) and math.isfinite(s)):
            continue
        colour = PALETTE[methods.index(row.method) % len(PALETTE)]
        x, y = pad + s * inner, pad + (1 - c) * inner
        name = html.escape(f"{row.method} / {row.model}: consistency {c:.3f}, "
                           f"sensitivity {s:.3f}, COSE {float(row.cose):.3f}")
        shape = models.index(row.model) % 2
        marker = (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6"' if shape == 0 else
                  f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10"')
        parts.append(f'{marker} fill="{colour}" fill-opacity="0.8" stroke="{INK}" '
                     f'class="visloupe-cose-point"><title>{name}</title>'
                     f'{"</circle>" if shape == 0 else "</rect>"}')
    legend_y = pad + 12
    for i, m in enumerate(methods):
        parts.append(f'<circle cx="{pad + 8}" cy="{legend_y + 13 * i}" r="4" '
                     f'fill="{PALETTE[i % len(PALETTE)]}"/><text x="{pad + 16}" '
                     f'y="{legend_y + 13 * i + 4}">{html.escape(str(m))}</text>')
    if len(models) > 1:  # marker shape: circle for the first model, square for the second...
        y0 = legend_y + 13 * len(methods) + 4
        for i, m in enumerate(models):
            y = y0 + 13 * i
            marker = (f'<circle cx="{pad + 8}" cy="{y}" r="4"' if i % 2 == 0 else
                      f'<rect x="{pad + 4}" y="{y - 4}" width="8" height="8"')
            parts.append(f'{marker} fill="none" stroke="{INK}"/><text x="{pad + 16}" '
                         f'y="{y + 4}">{html.escape(str(m))}</text>')
    parts.append("</svg>")
    return "".join(parts)



def _check_alt_models(alt_models: Any, names: list[str]) -> dict[str, dict[str, nn.Module]]:
    """``{model name: {pair name: nn.Module}}`` checked: each key a model name, each value a
    dict of modules (a flat ``{name: module}`` is named, with the form it needs)."""
    if alt_models is None:
        return {}
    form = "{model name: {pair name: nn.Module}}"
    if not isinstance(alt_models, Mapping):
        raise TypeError(f"alt_models: expected {form}, got {type(alt_models).__name__}")
    out = {}
    for key, pairs in alt_models.items():
        if key not in names:
            raise ValueError(f"alt_models: expected keys among the model names {names} ({form}), "
                             f"got {key!r}")
        if not isinstance(pairs, Mapping) or not all(isinstance(m, nn.Module)
                                                     for m in pairs.values()):
            raise TypeError(f"alt_models[{key!r}]: expected {{pair name: nn.Module}}, got "
                            f"{type(pairs).__name__}; e.g. alt_models={{{key!r}: "
                            "{'retrained': other_model}}")
        out[str(key)] = dict(pairs)
    return out

class COSEExplorer(ExplorerBase, w.VBox):
    """Explore COSE consistency/sensitivity pairs and compare methods and models.

    Args:
        models: one ``nn.Module`` or ``{name: module}`` (analysed in eval mode, not modified).
        data: anything ``data.as_image_source`` accepts, with labels.
        explainers: registry names, callables ``(model, inputs, target) -> (N, H, W)`` or a dict
            ``{name: explainer}`` (default Grad-CAM and saliency).
        preprocess: how images become model inputs, one for all models or a dict per model:
            ``models.pretrained``'s preprocess or a Hugging Face image processor (both split into
            pixels + normalisation), any preprocess together with ``normalize=(mean, std)``, or
            a [0, 1] pixel preprocess; None reads the images as [0, 1] tensors.
        normalize: the model's normalisation of [0, 1] pixels (COSE transforms pixels, then
            normalises): ``(mean, std)`` -- then a ``preprocess`` given too is taken to end
            with ``(x - mean) / std``, undone for the transforms -- or a callable on
            ``(N, C, H, W)`` tensors (then ``preprocess`` must return [0, 1] pixels); a dict
            per model name is accepted. See :mod:`visloupe.core.evaluation.pixels`.
        alt_models: ``{model name: {pair name: nn.Module}}`` model-change pairs for the summary
            (e.g. ``models.checkpoints`` without ``"final"``).
        n_images: images used (the first ones of ``data``).
        magnitudes_per_transform: per signed op and image in the summary (paper: 6).
        cell: display size of each image tile in pixels.

    The summary is core ``evaluation.compare_methods`` called with these arguments (and the
    sliders' infidelity / max-sensitivity parameters), so a script gets the same table.
    """

    _css_class = "visloupe-cose-explorer"

    def __init__(
        self,
        models: Any,
        data: Any,
        explainers: Any = None,
        *,
        preprocess: Any = None,
        normalize: Any = None,
        alt_models: Mapping[str, Mapping[str, Any]] | None = None,
        n_images: int = 32,
        magnitudes_per_transform: int = 2,
        cell: int = 144,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        from visloupe.core.attribution import resolve_explainers
        from visloupe.core.evaluation import TRANSFORMS

        super().__init__()
        self._init_base()
        self.add_class("visloupe-cose-explorer")
        check_int("n_images", n_images)
        check_int("cell", cell, 16, "pixels")
        check_int("magnitudes_per_transform", magnitudes_per_transform)
        self._models = resolve_models(models)
        self._explainers = resolve_explainers(explainers if explainers is not None
                                              else ["grad_cam", "saliency"])
        self._data = _pixel_data_per_model(self._models, data, preprocess, normalize, n_images)
        first = next(iter(self._data.values()))
        self._class_names = None
        try:
            from visloupe.core.data import as_image_source

            self._class_names = as_image_source(data).class_names
        except Exception:  # noqa: BLE001 - names are cosmetic
            self._class_names = None
        self._alt_models = _check_alt_models(alt_models, list(self._models))
        self._k = magnitudes_per_transform
        self._cell = cell
        self._seed = check_seed(seed)
        self._batch_size = check_batch_size(batch_size)
        self._views: LRU = LRU(256)
        self._refs: LRU = LRU(512)
        self.summary: pd.DataFrame | None = None
        self.last_view: Any = None
        self._results_rows: list[int] | None = None  # set by from_results
        self._results_images: pd.DataFrame | None = None
        self._build_ui(first.pixels.shape[0], TRANSFORMS)
        self._render()

    @classmethod
    def from_results(cls, results: Any, model: Any = None, data: Any = None,
                     preprocess: Any = None, **kwargs: Any) -> COSEExplorer:
        """Open a ``cose`` job's results (:func:`visloupe.core.jobs.run`, here or on a
        cluster): the summary, bars and scatter are the job's own table, and each image's
        stored COSE scores stand beside the interactive view -- no evaluation is rerun.

        ``model``, ``data``, ``preprocess``: default to what the manifest names, reopened (a
        model or data given must be the job's: fingerprints are checked). ``kwargs`` go to
        the constructor (``cell``, ``normalize``, ...)."""
        res, net, pre, source = open_job(results, "cose", model, data, kwargs,
                                         ("explainers", "n_images", "alt_models"))
        rows = res.row_ids
        options = res.manifest["options"]
        alt_names = list(options.get("alt_models") or [])
        alt = {}
        if alt_names:
            from visloupe.core.models import checkpoints

            stages = checkpoints(res.model_name)
            alt = {res.model_name: {n: stages[n] for n in alt_names}}
        kwargs.setdefault("magnitudes_per_transform", int(options["magnitudes_per_transform"]))
        kwargs.setdefault("seed", int(options["seed"]))
        explorer = cls({res.model_name: net}, source.select(rows), res.explainers(),
                       preprocess=pre if preprocess is None else preprocess, alt_models=alt,
                       n_images=len(rows), **kwargs)
        explorer._results_rows = list(rows)
        explorer._results_images = res["images"]
        if res.summary is not None:
            summary = res.summary.rename(columns={"explainer": "method"})
            summary.insert(1, "model", res.model_name)
            explorer._show_summary(summary)
        explorer._render()
        return explorer

    # ------------------------------------------------------------------ UI

    def _build_ui(self, n: int, ops: Sequence[str]) -> None:
        wide = {"description_width": "initial"}
        self.model_select = w.Dropdown(options=list(self._models), description="model",
                                       style=wide, layout=w.Layout(width="180px"))
        self.method_select = w.Dropdown(options=list(self._explainers), description="method",
                                        style=wide, layout=w.Layout(width="220px"))
        self.image_slider = w.IntSlider(value=0, min=0, max=max(n - 1, 0), description="image",
                                        continuous_update=False, style=wide)
        self.transform_select = w.Dropdown(options=list(ops), value="Rotate",
                                           description="transform", style=wide,
                                           layout=w.Layout(width="220px"))
        self.magnitude_slider = w.IntSlider(value=10, min=-30, max=30, description="magnitude bin",
                                            continuous_update=False, style=wide,
                                            layout=w.Layout(width="360px"))
        self.magnitude_slider.add_class("visloupe-cose-magnitude")
        self.magnitude_label = w.HTML()
        side = f"{self._cell}px"
        self.tiles = [w.Image(format="png", layout=w.Layout(width=side, height=side))
                      for _ in range(4)]
        self.tiles[3].layout.outline = f"1px solid {RULE}"  # white (compared) on white
        for tile, cls in zip(self.tiles, ("original", "transformed", "back", "mask"),
                             strict=True):
            tile.add_class(f"visloupe-cose-{cls}")
        # under each tile, as in every widget: its map's colour bar, then what it is
        self.tile_captions = [w.HTML() for _ in self.tiles]
        for caption in self.tile_captions:
            caption.add_class("visloupe-captions")
        # each column: the tile and its caption, plus the 2-px margin ipywidgets gives each
        width, margin = f"{self._cell + 2 * SPACE_XS}px", f"0 {SPACE_M}px 0 0"
        columns = [w.VBox([tile, caption], layout=w.Layout(width=width, margin=margin))
                   for tile, caption in zip(self.tiles, self.tile_captions, strict=True)]
        self.status = w.HTML()
        self.status.add_class("visloupe-cose-status")
        # summary controls
        self.summary_button = w.Button(description="Compute summary", button_style="primary",
                                       icon="calculator", layout=w.Layout(width="auto"))
        self.inf_radius = w.FloatSlider(value=0.1, min=0.01, max=0.5, step=0.01,
                                        description="infidelity σ", continuous_update=False,
                                        style=wide)
        self.inf_samples = w.IntSlider(value=10, min=1, max=50, description="infidelity samples",
                                       continuous_update=False, style=wide)
        self.inf_normalize = w.Checkbox(value=True, description="normalize (β)", indent=False)
        self.sens_radius = w.FloatSlider(value=0.02, min=0.005, max=0.2, step=0.005,
                                         description="max-sens. radius", continuous_update=False,
                                         style=wide, readout_format=".3f")
        self.sens_samples = w.IntSlider(value=5, min=1, max=30, description="max-sens. samples",
                                        continuous_update=False, style=wide)
        self.with_robustness = w.Checkbox(value=True, description="infidelity & max-sensitivity",
                                          indent=False)
        self.bars = w.HTML()
        self.scatter = w.HTML()
        self.table = w.HTML()

        for control in (self.model_select, self.method_select, self.image_slider,
                        self.transform_select, self.magnitude_slider):
            control.observe(self._on_change, names="value")
        self.summary_button.on_click(self._on_summary)

        view = w.VBox([
            w.HBox([self.model_select, self.method_select, self.image_slider]),
            w.HBox([self.transform_select, self.magnitude_slider, self.magnitude_label]),
            w.HBox(columns), self.status,
        ])
        robustness = w.VBox([
            w.HBox([self.with_robustness, self.inf_normalize]),
            w.HBox([self.inf_radius, self.inf_samples]),
            w.HBox([self.sens_radius, self.sens_samples]),
        ])
        summary = w.VBox([w.HTML(f"<h4 style='margin:{SPACE_M}px 0'>Summary per method and "
                                 "model</h4>"),
                          robustness, w.HBox([self.summary_button, self.progress_box]),
                          w.HBox([self.bars, self.scatter]), self.table])
        self.children = [view, summary, self.error_area]

    # ------------------------------------------------------------------ view

    def _magnitude(self) -> float | None:
        from visloupe.core.evaluation import magnitude_bins, transform_spec

        op = self.transform_select.value
        spec = transform_spec(op)
        if not spec.signed:
            return None
        pixels = self._data[self.model_select.value].pixels
        bins = magnitude_bins(op, tuple(pixels.shape[-2:]))
        k = int(self.magnitude_slider.value)
        return math.copysign(float(bins[abs(k)]), k) if k else 0.0

    def _class(self, k: int) -> str:
        names = self._class_names
        return names[k] if names and 0 <= k < len(names) else str(k)

    @guarded
    def _on_change(self, change: dict) -> None:
        self._render()

    def _render(self) -> None:
        from visloupe.core.evaluation import describe_magnitude, explain_pair, transform_spec

        self._clear_errors()
        model_name = self.model_select.value
        method = self.method_select.value
        index = int(self.image_slider.value)
        op = self.transform_select.value
        spec = transform_spec(op)
        self.magnitude_slider.disabled = not spec.signed
        magnitude = self._magnitude()
        pdata = self._data[model_name]
        shown = describe_magnitude(op, magnitude, tuple(pdata.pixels.shape[-2:]))
        self.magnitude_label.value = (f"<code>{html.escape(shown)}</code>" if spec.signed
                                      else "<i>applied once</i>")
        key = (model_name, method, index, op, magnitude)
        view = self._views.get(key)
        if view is None:
            ref_key = (model_name, method, index)
            ref = self._refs.get(ref_key)
            view = explain_pair(self._models[model_name], pdata.pixels[index],
                                self._explainers[method], op, magnitude,
                                normalize=pdata.normalize, reference_map=ref)
            self._refs.put(ref_key, view.map)
            self._views.put(key, view)
        self.last_view = view
        size = (self._cell, self._cell)
        orig = _rgb(view.image)
        trans = _rgb(view.transformed)
        shown = [display_map(m.numpy(), 100.0, signed=False)
                 for m in (view.map, view.transformed_map, view.map_back)]
        tiles = [
            overlay(orig, shown[0][0], alpha=0.55, vmax=shown[0][1]),
            overlay(trans, shown[1][0], alpha=0.55, vmax=shown[1][1]),
            overlay(orig, shown[2][0], alpha=0.55, vmax=shown[2][1]),
            (view.valid.numpy().astype(np.uint8) * 255),
        ]
        for tile, img in zip(self.tiles, tiles, strict=True):
            tile.value = to_png(fit_image(img, size))
        for caption, text, scale in zip(self.tile_captions, TILE_CAPTIONS,
                                        [("inferno", False, vmax or 0.0) for _, vmax in shown]
                                        + [None], strict=True):
            caption.value = (f"<div style='font-size:{TEXT_S}px;line-height:1.3'>"
                             f"{tile_caption(text, self._cell, scale)}</div>")
        label = pdata.labels[index].item() if pdata.labels is not None else None
        changed = view.prediction_changed
        colour = BAD if changed else GOOD
        verdict = ("prediction changed: a <b>sensitivity</b> pair" if changed
                   else "prediction unchanged: a <b>consistency</b> pair")
        wrong = "" if label is None or label == view.prediction else \
            " <i>(original misclassified: COSE drops this image)</i>"
        self.status.value = (
            f"<span style='font-size:{TEXT_M}px'>SSIM <b>{view.similarity:.3f}</b>"
            f"{' (masked)' if spec.masked else ''} · "
            f"label {html.escape(self._class(label) if label is not None else '?')} · "
            f"prediction {html.escape(self._class(view.prediction))} → "
            f"{html.escape(self._class(view.transformed_prediction))} · "
            f"<span style='color:{colour}'>{verdict}</span>{wrong}</span>"
            f"{self._stored_scores(index, method)}")

    def _stored_scores(self, index: int, method: str) -> str:
        """The job's per-image COSE scores of this image and method (from_results), as HTML."""
        if self._results_images is None or self._results_rows is None:
            return ""
        row = self._results_rows[index]
        images = self._results_images
        hit = images[(images.row_id == row) & (images.explainer == method)]
        if not len(hit):
            return ""
        rec = hit.iloc[0]
        parts = [f"{name} <b>{float(rec[name]):.3f}</b>" for name in
                 ("consistency", "sensitivity", "cose") if math.isfinite(float(rec[name]))]
        scores = " · ".join(parts) or "no scores (the image was dropped)"
        return (f"<div class='visloupe-cose-stored' style='font-size:{TEXT_S}px;color:{MUTED}'>"
                f"row {row} in the job's results: {scores}</div>")

    # ------------------------------------------------------------------ summary

    @guarded
    def _on_summary(self, _button: Any = None) -> None:
        self.compute_summary()

    def summary_arguments(self) -> dict[str, Any]:
        """The keyword arguments the summary passes to core ``evaluation.compare_methods``
        (besides models, data and explainers), from the constructor and the sliders."""
        robust = bool(self.with_robustness.value)
        return {
            "metrics": ("cose", "infidelity", "max_sensitivity") if robust else ("cose",),
            "alt_models": self._alt_models,
            "magnitudes_per_transform": self._k,
            "seed": self._seed,
            "batch_size": self._batch_size,
            "infidelity_kwargs": {"radius": float(self.inf_radius.value),
                                  "n_samples": int(self.inf_samples.value),
                                  "normalize": bool(self.inf_normalize.value)},
            "max_sensitivity_kwargs": {"radius": float(self.sens_radius.value),
                                       "n_samples": int(self.sens_samples.value)},
        }

    def compute_summary(self) -> pd.DataFrame:
        """Core ``compare_methods`` for every method and model (COSE and, if ticked,
        infidelity and max-sensitivity with the sliders' parameters) on the explorer's pixel
        data; fill the bars, scatter and table with exactly its result."""
        from visloupe.core.evaluation import compare_methods

        self._clear_errors()
        kwargs = self.summary_arguments()
        groups: dict[int, list[str]] = {}
        for name in self._models:  # models that share one PixelData go in one call
            groups.setdefault(id(self._data[name]), []).append(name)
        total = len(self._models) * len(self._explainers)
        self._progress_start(total, "summary", "method × model runs")
        frames = []
        self.summary_button.disabled = True
        try:
            for names in groups.values():
                offset = self.progress.value

                def tick(done: int, _total: int, _label: str = "", offset: int = offset) -> None:
                    self.progress.value = min(offset + int(done), self.progress.max)
                    self.progress_label.value = self._progress_text()

                frames.append(compare_methods(
                    {n: self._models[n] for n in names}, self._data[names[0]],
                    self._explainers, progress=tick, **kwargs))
            self._progress_done()
        except Exception:
            self._progress_done(ok=False)
            raise
        finally:
            self.summary_button.disabled = False
        rows = pd.concat(frames, ignore_index=True)
        order = {n: k for k, n in enumerate(self._models)}  # compare_methods' own row order
        rows = rows.sort_values("model", key=lambda c: c.map(order), kind="stable")
        return self._show_summary(rows.reset_index(drop=True))

    def _show_summary(self, table: pd.DataFrame) -> pd.DataFrame:
        """Fill the bars, scatter and table with ``table`` (``compare_methods``' shape)."""
        self.summary = table
        self.bars.value = _svg_bars(table)
        self.scatter.value = _svg_scatter(table)
        cols = [c for c in ("method", "model", "consistency", "geometric_consistency",
                            "photometric_consistency", "sensitivity", "cose", "n_consistency",
                            "n_sensitivity", "infidelity", "max_sensitivity") if c in table]
        self.table.value = table_html(table[cols], "visloupe-cose-table")
        return table

    # ------------------------------------------------------------------ export

    def _png(self) -> bytes:
        """The four tiles of the current view side by side."""
        from .render import from_png

        tiles = [from_png(t.value) if t.value else None for t in self.tiles]
        return to_png(image_grid(tiles, list(TILE_CAPTIONS), ncols=4, cell=self._cell or 144))

    def _html_body(self) -> str:
        return (f"<div>{self.status.value}</div>{self.bars.value}{self.scatter.value}"
                f"{self.table.value}")


def _pixel_data_per_model(models: Mapping[str, Any], data: Any, preprocess: Any,
                          normalize: Any, n_images: int) -> dict[str, Any]:
    """``{model name: core PixelData}``; models with the same preprocess and normalisation
    share one (read once)."""
    pres = check_per_model("preprocess", preprocess, models)
    norms = check_per_model("normalize", normalize, models)
    read: dict[tuple[int, int], Any] = {}
    out = {}
    for name in models:
        key = (id(pres[name]), id(norms[name]))
        if key not in read:
            read[key] = pixel_inputs(data, pres[name], norms[name], n_images=n_images)
        out[name] = read[key]
    return out
