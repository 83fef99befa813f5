"""PaddingInspector: where a CNN pads unevenly, which pixels it under-uses, and what to change.

Built on :mod:`visloupe.core.padding` (Alsallakh et al., "Mind the Pad -- CNNs can develop blind
spots", ICLR 2021). An input-size slider (the sizes with even padding everywhere are listed
under it), a padding-mode dropdown and a layer selector drive: the per-layer padding table with
uneven layers highlighted, the foveation map, the chosen layer's mean feature map over the data,
the blind-spot map of a small stimulus, and a one-line recommendation ("225 instead of 224
removes uneven padding at 5 layers"). Explicit pads (pad modules, TF-SAME ports such as
EfficientNet) count as the padding of the layer they feed; the table says where each comes from.
Only core ipywidgets (7.6+ and 8): no front-end build.

The model runs only when the size or the padding mode changes (slider release) and results are
cached per (size, mode); the layer selector re-renders from the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ipywidgets as w
import numpy as np
import torch

from . import render
from ._common import LRU, check_int, guarded
from .base import ExplorerBase, colour_bar_html, escape, image_view
from .style import BAD, FLAGGED, GOOD, RULE, SPACE_L, SPACE_M, SPACE_XS, TEXT_S, TEXT_XS

__all__ = ["PaddingInspector"]

MODES = ("model", "zeros", "reflect", "replicate", "circular", "symmetric", "partial")
"""Padding-mode choices; ``model`` keeps each convolution's own padding."""

_TABLE_COLUMNS = (
    ("name", "layer"), ("type", "type"), ("in", "input"), ("kernel", "k"), ("stride", "s"),
    ("padding", "p"), ("leftover", "unused rows/cols"), ("torch", "effective pad (t,b | l,r)"),
    ("tf", "TF SAME pad (t,b | l,r)"), ("source", "pad from"),
)


def _pair_text(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return str(value[0]) if len(set(value)) == 1 else "x".join(str(v) for v in value)
    return str(value)


def _heat(arr: np.ndarray, cmap: str = "viridis", px: int = 192, lo: float | None = None
          ) -> tuple[bytes, str]:
    """A float map as a colormapped PNG, scaled from ``lo`` (default: its minimum) to its
    maximum and enlarged to ``px``, and the colour bar of that scale (HTML)."""
    a = np.nan_to_num(np.asarray(arr, dtype=np.float64))
    lo = float(a.min()) if lo is None else float(lo)
    hi = float(a.max())
    scaled = (a - lo) / (hi - lo) if hi > lo else np.full(a.shape, 0.5)
    rgb = render.colormap_lut(cmap)[(np.clip(scaled, 0, 1) * 255 + 0.5).astype(np.uint8)]
    return render.to_png(render.fit_image(rgb, px)), colour_bar_html(cmap, lo, hi, width=px)


def _caption(html: str) -> str:
    """A map's caption: small type, tight lines (wrapped captions stay compact)."""
    return f"<div style='font-size:{TEXT_S}px;line-height:1.3;margin-top:{SPACE_XS}px'>{html}</div>"


def _blank(px: int = 192) -> bytes:
    return render.to_png(np.full((px, px, 3), 240, np.uint8))


def _load_tensors(data: Any, preprocess: Any, max_samples: int) -> torch.Tensor | None:
    """Up to ``max_samples`` model inputs ``(N, C, H, W)``: a float tensor as it is, other data
    through ``preprocess`` (core ``data.model_inputs``); the dtype is kept (core casts to the
    model's)."""
    if data is None:
        return None
    from visloupe.core.data import model_inputs

    pre = None if isinstance(data, torch.Tensor) and data.is_floating_point() else preprocess
    return torch.cat(list(model_inputs(data, pre, limit=max_samples)))


class PaddingInspector(ExplorerBase, w.VBox):
    """Inspect the padding of ``model`` interactively (see the module docstring).

    Args:
        model: a ``torch.nn.Module`` with at least one ``nn.Conv2d``; never modified.
        data: optional inputs for the mean feature maps and the blind-spot probe: a tensor
            ``(N, C, H, W)`` or anything ``data.as_image_source`` reads (with ``preprocess``).
        preprocess: ``PIL.Image -> Tensor (C, H, W)`` for non-tensor ``data``.
        input_size: the starting size (default: the data's size, else 224).
        sizes: ``(lo, hi)`` slider range, inclusive (default: ``input_size`` -25% to +25%).
        stimulus, background, target: the blind-spot probe (``(C, h, w)``, ``(C, H, W)``
            resized to the slider size, class index). Default: the first data item shrunk to
            a quarter of the area on the data's mean colour, target its predicted class; without
            data, a bright square on zeros.
        max_samples: inputs used for the mean feature maps.

    The probe and the advice are core ``padding.blind_spot_probe`` and
    ``padding.input_size_advice`` (see :attr:`advice`), so a script gets the same numbers.
    """

    _css_class = "visloupe-padding-inspector"

    def __init__(
        self,
        model: torch.nn.Module,
        data: Any = None,
        *,
        preprocess: Any = None,
        input_size: int | None = None,
        sizes: Sequence[int] | None = None,
        stimulus: torch.Tensor | None = None,
        background: torch.Tensor | None = None,
        target: int | None = None,
        max_samples: int = 256,
    ) -> None:
        from visloupe.core import padding as core

        super().__init__()
        self._init_base()
        self.add_class("visloupe-padding-inspector")
        self._core = core
        self._model = core.check_padding_model(model)
        check_int("max_samples", max_samples)
        if input_size is not None:
            check_int("input_size", input_size, 1, "pixels")
        self._data = _load_tensors(data, preprocess, max_samples)
        n0 = input_size if input_size is not None else (
            int(self._data.shape[-1]) if self._data is not None else 224)
        if sizes is not None and (isinstance(sizes, (str, bytes)) or len(sizes) != 2
                                  or not all(isinstance(v, int) for v in sizes)):
            raise ValueError(f"sizes: expected (lo, hi), two ints, got {sizes!r}")
        lo, hi = ((max(4, n0 * 3 // 4), n0 * 5 // 4 + 1) if sizes is None
                  else (int(sizes[0]), int(sizes[1])))
        if not lo <= n0 <= hi:
            raise ValueError(f"sizes: expected lo <= input_size <= hi, got {(lo, hi)} and {n0}")
        self._stimulus, self._background, self._target = stimulus, background, target
        self._models: dict[str, torch.nn.Module] = {"model": model}
        self._results: LRU = LRU(32)
        self._even = core.even_input_sizes(model, lo, hi + 1)
        self.advice: Any = None
        self._build_ui(n0, lo, hi)
        self._refresh()

    # ------------------------------------------------------------------ UI

    def _build_ui(self, n0: int, lo: int, hi: int) -> None:
        self.size = w.IntSlider(value=n0, min=lo, max=hi, step=1, description="input size",
                                continuous_update=False, style={"description_width": "initial"})
        self.size.add_class("visloupe-padding-size")
        self.mode = w.Dropdown(options=list(MODES), value="model", description="padding")
        self.layer = w.Dropdown(options=[], description="layer")
        self.even_marks = w.HTML()
        self.recommendation = w.HTML()
        self.recommendation.add_class("visloupe-padding-recommendation")
        self.table = w.HTML()
        self.table.add_class("visloupe-padding-table")
        self.foveation = image_view(_blank())
        self.foveation.add_class("visloupe-padding-foveation")
        self.mean_map = image_view(_blank())
        self.blind_spots = image_view(_blank())
        # one fixed-width panel per map (the maps are 192 px, plus the 2-px margin ipywidgets
        # gives each child), as in every widget: the map, its colour bar, then what it is
        self.captions = [w.HTML(layout=w.Layout(width="192px")) for _ in range(3)]
        self.bars = [w.HTML() for _ in range(3)]  # each map's colour bar with its values
        self.status = w.HTML()
        self.errors = self.error_area
        panels = [w.VBox([img, bar, c], layout=w.Layout(width=f"{192 + 2 * SPACE_XS}px",
                                                        margin=f"0 {SPACE_L}px 0 0"))
                  for c, img, bar in zip(self.captions,
                                         (self.foveation, self.mean_map, self.blind_spots),
                                         self.bars, strict=True)]
        self.children = [
            w.HBox([self.size, self.mode, self.layer]), self.even_marks, self.recommendation,
            w.HBox(panels), self.table, self.status, self.errors,
        ]
        self.size.observe(self._on_size, names="value")
        self.mode.observe(self._on_size, names="value")
        self.layer.observe(self._on_layer, names="value")

    def _on_size(self, change: dict) -> None:
        self._refresh()

    def _on_layer(self, change: dict) -> None:
        self._render()

    # ------------------------------------------------------------------ compute (cached)

    def _model_for(self, mode: str) -> torch.nn.Module:
        if mode not in self._models:
            self._models[mode] = self._core.swap_padding(self._model, mode).eval()
        return self._models[mode]

    def _compute(self, n: int, mode: str) -> dict[str, Any]:
        key = (n, mode)
        cached = self._results.get(key)
        if cached is not None:
            return cached
        core = self._core
        model = self._model_for(mode)
        out: dict[str, Any] = {"audit": core.audit_padding(model, n)}
        out["foveation"] = core.foveation_map(model, n).numpy()
        out["uneven"] = int(out["audit"]["uneven"].sum())
        if self._data is not None:
            out["mean"] = core.mean_feature_maps(model, self._data, input_size=n)
        out["blind"] = self._blind_spots(model, n)
        self._results.put(key, out)
        return out

    def _blind_spots(self, model: torch.nn.Module, n: int) -> Any:
        """Core ``padding.blind_spot_probe`` with the explorer's data and probe arguments."""
        return self._core.blind_spot_probe(model, n, self._data, stimulus=self._stimulus,
                                           background=self._background, target=self._target)

    # ------------------------------------------------------------------ render

    @guarded
    def _refresh(self) -> None:
        self._clear_errors()
        n, mode = int(self.size.value), str(self.mode.value)
        self.status.value = f"<i>computing {n}x{n}, padding: {escape(mode)} …</i>"
        try:
            result = self._compute(n, mode)
        finally:
            self.status.value = ""
        self._result = result
        names = list(result["mean"].layers) if "mean" in result else \
            list(result["audit"]["name"])
        if list(self.layer.options) != names:
            keep = self.layer.value if self.layer.value in names else (names[-1] if names else
                                                                        None)
            self.layer.options = names
            self.layer.value = keep
        self._render_marks(n)
        self._render_recommendation(n, mode, result)
        self._render()

    def _render_marks(self, n: int) -> None:
        marks = " · ".join(f"<b>{s}</b>" if s == n else str(s) for s in self._even) or "none"
        state = (f"<span style='color:{GOOD}'>✓ even padding at every layer</span>"
                 if n in self._even else
                 f"<span style='color:{BAD}'>✗ uneven padding</span>")
        self.even_marks.value = (f"<div style='font-size:{TEXT_S}px'>{state} &nbsp; even sizes in "
                                 f"[{self.size.min}, {self.size.max}]: {marks}</div>")

    def _render_recommendation(self, n: int, mode: str, result: dict[str, Any]) -> None:
        """Core ``padding.input_size_advice`` for the model with this padding, as one line (the
        zero-padding caveat read from the audit of that model)."""
        self.advice = self._core.input_size_advice(self._model_for(mode), n)
        self.recommendation.value = (f"<div style='font-weight:600'>{escape(self.advice.text)}"
                                     "</div>")

    @guarded
    def _render(self) -> None:
        result = getattr(self, "_result", None)
        if result is None:
            return
        layer = self.layer.value
        self.table.value = self._table_html(result["audit"], layer)
        fov = result["foveation"]
        self.foveation.value, self.bars[0].value = _heat(fov)
        asym = float(np.linalg.norm(fov - fov[::-1, ::-1]) / max(np.linalg.norm(fov), 1e-300))
        self.captions[0].value = _caption(
            f"<b>foveation map</b> (paths per pixel)<br>min/max "
            f"{fov.min() / max(fov.max(), 1e-300):.3f}, flip asymmetry {asym:.3f}")
        mean = result.get("mean")
        if mean is not None and layer in mean.maps:
            self._show(1, *_heat(mean.maps[layer].numpy(), "magma"),
                       f"<b>mean feature map</b> {escape(layer)}<br>flip asymmetry "
                       f"{mean.asymmetry[layer]:.3f} ({mean.n_samples} inputs)")
        else:
            self._show(1, _blank(), "", "<b>mean feature map</b><br><i>pass data= to see it</i>")
        blind = result.get("blind")
        if blind is not None:
            s = blind.summary()
            # from 0, so that a flat map stays flat instead of stretching noise
            lo = 0.0 if blind.score == "probability" else None
            self._show(2, *_heat(blind.scores.numpy(), "inferno", lo=lo),
                       f"<b>blind-spot map</b> (class {blind.target})<br>{blind.score} "
                       f"{s['min']:.2f}–{s['max']:.2f}, blind {100 * s['blind_fraction']:.0f}%")
        else:
            self._show(2, _blank(), "", "<b>blind-spot map</b><br><i>stimulus too large</i>")

    def _show(self, panel: int, png: bytes, bar: str, caption: str) -> None:
        """Panel ``panel`` (0 foveation, 1 mean feature, 2 blind spots): its map, colour bar
        and caption."""
        (self.foveation, self.mean_map, self.blind_spots)[panel].value = png
        self.bars[panel].value = bar
        self.captions[panel].value = _caption(caption)

    @staticmethod
    def _table_html(audit: Any, layer: Any) -> str:
        head = "".join(f"<th style='padding:{SPACE_XS}px {SPACE_M}px;text-align:left;"
                       f"white-space:nowrap;border-bottom:1px solid {RULE}'>{escape(t)}</th>"
                       for _, t in _TABLE_COLUMNS)
        rows = []
        for r in audit.itertuples(index=False):
            cells = {
                "name": r.name, "type": r.type, "in": f"{r.in_h}x{r.in_w}",
                "kernel": _pair_text(r.kernel), "stride": _pair_text(r.stride),
                "padding": _pair_text(r.padding), "leftover": _pair_text((r.leftover_h,
                                                                          r.leftover_w)),
                "torch": f"{r.pad_before_h},{r.pad_after_h} | {r.pad_before_w},{r.pad_after_w}",
                "tf": (f"{r.tf_pad_before_h},{r.tf_pad_after_h} | {r.tf_pad_before_w},"
                       f"{r.tf_pad_after_w}"),
                # explicit pad modules, static/dynamic TF-SAME pads; a limitation when unreadable
                "source": r.pad_source + (f" ⚠ {r.limitation}" if r.limitation else ""),
            }
            style = f"background:{FLAGGED};" if r.uneven else ""
            if r.name == layer:
                style += "font-weight:bold;"
            cls = "visloupe-uneven" if r.uneven else "visloupe-even"
            tds = "".join(f"<td style='padding:{SPACE_XS}px {SPACE_M}px;white-space:nowrap'>"
                          f"{escape(cells[k])}</td>"
                          for k, _ in _TABLE_COLUMNS)
            rows.append(f"<tr class='{cls}' style='{style}'>{tds}</tr>")
        return ("<div style='max-height:260px;overflow:auto;line-height:1.4'><table "
                f"style='border-collapse:collapse;font-size:{TEXT_XS}px;font-family:monospace'>"
                f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")

    # ------------------------------------------------------------------ export, lifecycle

    def _html_body(self) -> str:
        caps = "".join(f"<div>{cap.value}</div>" for cap in self.captions)
        return (f"{self.even_marks.value}{self.recommendation.value}{caps}"
                f"{self.table.value}")

    def _png(self) -> bytes:
        """The three maps side by side (static export)."""
        tiles = [render.from_png(img.value) for img in (self.foveation, self.mean_map,
                                                        self.blind_spots)]
        return render.to_png(render.image_grid(tiles, ["foveation", "mean map", "blind spots"],
                                               ncols=3, cell=192))

    def clear_cache(self) -> None:
        """Forget computed results and swapped models."""
        self._results.clear()
        self._models = {"model": self._model} if getattr(self, "_model", None) is not None \
            else {}
