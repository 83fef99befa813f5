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

from ._common import (
    LRU,
    check_int,
    close_tree,
    error_html,
    guarded,
    resolve_models,
    resolve_preprocess,
)
from .render import fit_image, overlay, to_png

__all__ = ["COSEExplorer"]

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")


def _rgb(pixels: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` in [0, 1] -> uint8 ``(H, W, 3)``."""
    arr = (pixels.detach().cpu().clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    arr = arr.transpose(1, 2, 0)
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr[:, :, :3]


def _svg_bars(table: pd.DataFrame, width: int = 420) -> str:
    """Grouped bars (consistency, sensitivity, COSE) per method/model row."""
    metrics = [("consistency", "#4c78a8"), ("sensitivity", "#f58518"), ("cose", "#54a24b")]
    rows = list(table.itertuples(index=False))
    bar, gap, left = 12, 10, 150
    height = len(rows) * (3 * bar + gap) + 30
    scale = width - left - 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="11">']
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
             'font-family="sans-serif" font-size="11" class="visloupe-cose-scatter">',
             f'<rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" fill="none" '
             'stroke="#999"/>',
             f'<text x="{size / 2}" y="{size - 6}" text-anchor="middle">sensitivity</text>',
             f'<text x="12" y="{size / 2}" transform="rotate(-90 12 {size / 2})" '
             'text-anchor="middle">consistency</text>']
    for level in (0.3, 0.5, 0.7):  # COSE = sqrt(c s) = level  ->  c = level² / s
        pts = []
        for s in np.linspace(level * level, 1.0, 40):
            c = level * level / s
            pts.append(f"{pad + s * inner:.1f},{pad + (1 - c) * inner:.1f}")
        parts.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="#ddd"/>'
                     f'<text x="{pad + inner - 2}" y="{pad + (1 - level * level) * inner - 3:.1f}"'
                     f' text-anchor="end" fill="#aaa">COSE {level}</text>')
    methods = list(dict.fromkeys(table.method))
    models = list(dict.fromkeys(table.model))
    for row in table.itertuples(index=False):
        c, s = float(row.consistency), float(row.sensitivity)
        if not (math.isfinite(c) and math.isfinite(s)):
            continue
        colour = _PALETTE[methods.index(row.method) % len(_PALETTE)]
        x, y = pad + s * inner, pad + (1 - c) * inner
        name = html.escape(f"{row.method} / {row.model}: consistency {c:.3f}, "
                           f"sensitivity {s:.3f}, COSE {float(row.cose):.3f}")
        shape = models.index(row.model) % 2
        marker = (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6"' if shape == 0 else
                  f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10"')
        parts.append(f'{marker} fill="{colour}" fill-opacity="0.8" stroke="#333" '
                     f'class="visloupe-cose-point"><title>{name}</title>'
                     f'{"</circle>" if shape == 0 else "</rect>"}')
    legend_y = pad + 12
    for i, m in enumerate(methods):
        parts.append(f'<circle cx="{pad + 8}" cy="{legend_y + 13 * i}" r="4" '
                     f'fill="{_PALETTE[i % len(_PALETTE)]}"/><text x="{pad + 16}" '
                     f'y="{legend_y + 13 * i + 4}">{html.escape(str(m))}</text>')
    parts.append("</svg>")
    return "".join(parts)


class COSEExplorer(w.VBox):
    """Explore COSE consistency/sensitivity pairs and compare methods and models.

    Args:
        models: one ``nn.Module`` or ``{name: module}`` (analysed in eval mode, not modified).
        data: anything ``data.as_image_source`` accepts, with labels.
        explainers: registry names, callables ``(model, inputs, target) -> (N, H, W)`` or a dict
            ``{name: explainer}`` (default Grad-CAM and saliency).
        preprocess: ``models.pretrained``'s preprocess (split into pixels + normalisation, see
            ``evaluation.pixel_data``), one for all models or a dict per model; None reads the
            images as [0, 1] tensors.
        alt_models: ``{model name: {pair name: nn.Module}}`` model-change pairs for the summary
            (e.g. ``models.checkpoints`` without ``"final"``).
        n_images: images used (the first ones of ``data``).
        magnitudes_per_transform: per signed op and image in the summary (paper: 6).
        cell: display size of each image tile in pixels.
    """

    def __init__(
        self,
        models: Any,
        data: Any,
        explainers: Any = None,
        *,
        preprocess: Any = None,
        alt_models: Mapping[str, Mapping[str, Any]] | None = None,
        n_images: int = 32,
        magnitudes_per_transform: int = 2,
        cell: int = 144,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        from visloupe.core.attribution import resolve_explainers
        from visloupe.core.evaluation.cose import pixel_data
        from visloupe.core.evaluation.transforms import TRANSFORMS

        super().__init__()
        self.add_class("visloupe-cose-explorer")
        check_int("n_images", n_images)
        check_int("cell", cell, 16, "pixels")
        self._models = resolve_models(models)
        pres = resolve_preprocess(preprocess, self._models) if preprocess is not None else \
            dict.fromkeys(self._models)
        self._explainers = resolve_explainers(explainers if explainers is not None
                                              else ["grad_cam", "saliency"])
        self._data = {name: pixel_data(data, pres[name], n_images=n_images)
                      for name in self._models}
        first = next(iter(self._data.values()))
        self._class_names = None
        try:
            from visloupe.core.data import as_image_source

            self._class_names = as_image_source(data).class_names
        except Exception:  # noqa: BLE001 - names are cosmetic
            self._class_names = None
        self._alt_models = {k: dict(v) for k, v in (alt_models or {}).items()}
        self._k = magnitudes_per_transform
        self._cell = cell
        self._seed = seed
        self._batch_size = batch_size
        self._views: LRU = LRU(256)
        self._refs: LRU = LRU(512)
        self._errors: list[str] = []
        self.summary: pd.DataFrame | None = None
        self.last_view: Any = None
        self._build_ui(first.pixels.shape[0], TRANSFORMS)
        self._render()

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
        self.tiles = [w.Image(format="png", layout=w.Layout(margin="2px", width=side, height=side))
                      for _ in range(4)]
        titles = ["original + map", "transformed + its map", "map back in original frame",
                  "validity mask"]
        for tile, cls in zip(self.tiles, ("original", "transformed", "back", "mask"),
                             strict=True):
            tile.add_class(f"visloupe-cose-{cls}")
        columns = [w.VBox([w.HTML(f"<b>{t}</b>"), tile]) for t, tile in
                   zip(titles, self.tiles, strict=True)]
        self.status = w.HTML()
        self.status.add_class("visloupe-cose-status")
        # summary controls
        self.summary_button = w.Button(description="Compute summary", button_style="primary",
                                       icon="calculator")
        self.progress = w.IntProgress(value=0, min=0, max=1, description="",
                                      layout=w.Layout(width="200px"))
        self.inf_radius = w.FloatSlider(value=0.1, min=0.01, max=0.5, step=0.01,
                                        description="infidelity σ", continuous_update=False,
                                        style=wide)
        self.inf_samples = w.IntSlider(value=10, min=1, max=50, description="infidelity samples",
                                       continuous_update=False, style=wide)
        self.inf_normalize = w.Checkbox(value=True, description="normalize (β)")
        self.sens_radius = w.FloatSlider(value=0.02, min=0.005, max=0.2, step=0.005,
                                         description="max-sens. radius", continuous_update=False,
                                         style=wide, readout_format=".3f")
        self.sens_samples = w.IntSlider(value=5, min=1, max=30, description="max-sens. samples",
                                        continuous_update=False, style=wide)
        self.with_robustness = w.Checkbox(value=True, description="infidelity & max-sensitivity")
        self.bars = w.HTML()
        self.scatter = w.HTML()
        self.table = w.HTML()
        self.error_area = w.HTML()
        self.error_area.add_class("visloupe-errors")

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
        summary = w.VBox([w.HTML("<h4 style='margin:6px 0'>Summary per method and model</h4>"),
                          robustness, w.HBox([self.summary_button, self.progress]),
                          w.HBox([self.bars, self.scatter]), self.table])
        self.children = [view, summary, self.error_area]

    # ------------------------------------------------------------------ errors

    def _report_error(self, message: str) -> None:
        self._errors.append(message)
        self.error_area.value = error_html(self._errors[-5:])

    def _clear_errors(self) -> None:
        self._errors = []
        self.error_area.value = ""

    # ------------------------------------------------------------------ view

    def _magnitude(self) -> float | None:
        from visloupe.core.evaluation.transforms import magnitude_bins, transform_spec

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
        from visloupe.core.evaluation.cose import explain_pair
        from visloupe.core.evaluation.transforms import describe_magnitude, transform_spec

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
        vmax_back = float(view.map_back.abs().max()) or None
        tiles = [
            overlay(orig, view.map.numpy(), alpha=0.55),
            overlay(trans, view.transformed_map.numpy(), alpha=0.55),
            overlay(orig, view.map_back.numpy(), alpha=0.55, vmax=vmax_back),
            (view.valid.numpy().astype(np.uint8) * 255),
        ]
        for tile, img in zip(self.tiles, tiles, strict=True):
            tile.value = to_png(fit_image(img, size))
        label = pdata.labels[index].item() if pdata.labels is not None else None
        changed = view.prediction_changed
        colour = "#b00020" if changed else "#1b5e20"
        verdict = ("prediction changed: a <b>sensitivity</b> pair" if changed
                   else "prediction unchanged: a <b>consistency</b> pair")
        wrong = "" if label is None or label == view.prediction else \
            " <i>(original misclassified: COSE drops this image)</i>"
        self.status.value = (
            f"<span style='font-size:13px'>SSIM <b>{view.similarity:.3f}</b>"
            f"{' (masked)' if spec.masked else ''} · "
            f"label {html.escape(self._class(label) if label is not None else '?')} · "
            f"prediction {html.escape(self._class(view.prediction))} → "
            f"{html.escape(self._class(view.transformed_prediction))} · "
            f"<span style='color:{colour}'>{verdict}</span>{wrong}</span>")

    # ------------------------------------------------------------------ summary

    @guarded
    def _on_summary(self, _button: Any = None) -> None:
        self.compute_summary()

    def compute_summary(self) -> pd.DataFrame:
        """Run COSE (and, if ticked, infidelity and max-sensitivity with the sliders'
        parameters) for every method and model; fill the bars, scatter and table."""
        from visloupe.core.evaluation.cose import cose
        from visloupe.core.evaluation.robustness import infidelity, max_sensitivity

        self._clear_errors()
        pairs = [(m, e) for m in self._models for e in self._explainers]
        self.progress.max = len(pairs)
        self.progress.value = 0
        rows = []
        self.summary_button.disabled = True
        try:
            for model_name, method in pairs:
                model = self._models[model_name]
                fn = self._explainers[method]
                if hasattr(fn.fn, "reset"):
                    fn.fn.reset()
                pdata = self._data[model_name]
                report = cose(model, pdata, fn, magnitudes_per_transform=self._k,
                              alt_models=self._alt_models.get(model_name, {}), seed=self._seed,
                              batch_size=self._batch_size)
                row = {"method": method, "model": model_name,
                       **{k: v for k, v in report.to_dict().items() if k != "explainer"}}
                if self.with_robustness.value:
                    x = pdata.normalize(pdata.pixels)
                    keep = torch.tensor(sorted(set(report.pairs.image)), dtype=torch.long)
                    pos = torch.tensor([pdata.indices.index(int(i)) for i in keep],
                                       dtype=torch.long)
                    if len(pos):
                        xs = x[pos]
                        row["infidelity"] = float(infidelity(
                            model, xs, fn, radius=self.inf_radius.value,
                            n_samples=self.inf_samples.value,
                            normalize=self.inf_normalize.value, seed=self._seed).mean())
                        row["max_sensitivity"] = float(max_sensitivity(
                            model, xs, fn, radius=self.sens_radius.value,
                            n_samples=self.sens_samples.value, seed=self._seed).mean())
                rows.append(row)
                self.progress.value += 1
        finally:
            self.summary_button.disabled = False
        table = pd.DataFrame(rows)
        self.summary = table
        self.bars.value = _svg_bars(table)
        self.scatter.value = _svg_scatter(table)
        cols = [c for c in ("method", "model", "consistency", "geometric_consistency",
                            "photometric_consistency", "sensitivity", "cose", "n_consistency",
                            "n_sensitivity", "infidelity", "max_sensitivity") if c in table]
        self.table.value = table[cols].to_html(index=False, float_format=lambda v: f"{v:.3f}",
                                               border=0)
        return table

    # ------------------------------------------------------------------ export / clean-up

    def to_html(self) -> str:
        """A static HTML snapshot: the four tiles, the status line and the summary."""
        import base64

        imgs = "".join(
            f'<img src="data:image/png;base64,{base64.b64encode(t.value).decode()}" '
            'style="margin:2px"/>' for t in self.tiles if t.value)
        return (f'<div class="visloupe-cose-explorer">{imgs}<div>{self.status.value}</div>'
                f"{self.bars.value}{self.scatter.value}{self.table.value}</div>")

    def _repr_png_(self) -> bytes | None:
        value = self.tiles[1].value
        return bytes(value) if value else None

    def close(self) -> None:
        """Close every child widget and drop the caches."""
        self._views.clear()
        self._refs.clear()
        self._data = {}
        for child in self.children:
            close_tree(child)
        for sub in (self.layout, getattr(self, "style", None)):
            if sub is not None and hasattr(sub, "close"):
                sub.close()
        super().close()
