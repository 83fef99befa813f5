"""BoxExplorer: Task2Box's 2-D boxes, draggable and resizable in the browser, with an asymmetric
containment table recomputed in Python as they move (Daroya, Sun, Maji, CVPR 2024).

The drawing and the pointer interaction live in an anywidget (ESM in ``boxes.js``); the moved or
resized boxes reach Python through its synced ``boxes`` traitlet (a list of ``[x0, y0, x1,
y1]``), where :func:`visloupe.core.boxes.hard_pairwise_overlap` recomputes the table. Works with
ipywidgets 7.6+ (Colab) and 8.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as widgets
import numpy as np
import torch
import traitlets
from visloupe.core.boxes import Relations, Task2Box, hard_pairwise_overlap, parent_rule

from ._common import guarded
from .base import ExplorerBase
from .style import MUTED, PALETTE, RULE, SPACE_S, SPACE_XS, TEXT_S, TEXT_XS

__all__ = ["BoxExplorer"]

_HERE = Path(__file__).resolve().parent


class _BoxCanvas(anywidget.AnyWidget):
    """The SVG canvas (browser side of :class:`BoxExplorer`)."""

    _esm = _HERE / "boxes.js"
    _css = _HERE / "boxes.css"
    boxes = traitlets.List(traitlets.List(traitlets.Float())).tag(sync=True)
    names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    colors = traitlets.List(traitlets.Unicode()).tag(sync=True)
    links = traitlets.List(traitlets.List(traitlets.Int())).tag(sync=True)
    selected = traitlets.Int(-1).tag(sync=True)
    width = traitlets.Int(560).tag(sync=True)
    height = traitlets.Int(440).tag(sync=True)


def _as_box_list(boxes_or_model: Any, features: Any) -> list[list[float]]:
    """Boxes ``(lo, hi)``, an ``(N, 4)`` array ``[x0, y0, x1, y1]`` or a 2-D Task2Box."""
    if isinstance(boxes_or_model, Task2Box):
        if boxes_or_model.dim != 2:
            raise ValueError(f"boxes_or_model: BoxExplorer draws 2-D boxes, the model has "
                             f"dim={boxes_or_model.dim}")
        lo, hi = boxes_or_model.boxes(None if boxes_or_model.free else features)
        arr = torch.cat([lo, hi], dim=1).numpy()
    elif isinstance(boxes_or_model, tuple) and len(boxes_or_model) == 2:
        lo, hi = (np.asarray(torch.as_tensor(b, dtype=torch.float64)) for b in boxes_or_model)
        if lo.shape != hi.shape or lo.ndim != 2 or lo.shape[1] != 2:
            raise ValueError(f"boxes_or_model: expected (lo, hi) of shape (N, 2) each, got "
                             f"{lo.shape} and {hi.shape}")
        arr = np.concatenate([lo, hi], axis=1)
    else:
        try:
            arr = np.asarray(torch.as_tensor(boxes_or_model, dtype=torch.float64))
        except Exception as error:
            raise TypeError(f"boxes_or_model: expected a 2-D Task2Box, a (lo, hi) pair or an "
                            f"(N, 4) array, got {type(boxes_or_model).__name__}") from error
    return _check_box_list(arr, "boxes_or_model")


def _check_box_list(arr: Any, name: str) -> list[list[float]]:
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 4 or a.shape[0] < 1:
        raise ValueError(f"{name}: expected N >= 1 boxes [x0, y0, x1, y1] (shape (N, 4)), got "
                         f"shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: box corners contain NaN or infinite values")
    bad = np.nonzero((a[:, 2] < a[:, 0]) | (a[:, 3] < a[:, 1]))[0]
    if len(bad):
        raise ValueError(f"{name}: box {int(bad[0])} has hi < lo ({a[bad[0]].tolist()}); "
                         "expected x1 >= x0 and y1 >= y0")
    return a.tolist()


class BoxExplorer(ExplorerBase, widgets.HBox):
    """Draggable, resizable 2-D boxes with a live asymmetric containment table.

    ``boxes_or_model``: a 2-D :class:`~visloupe.core.boxes.Task2Box` (with ``features`` unless
    it is a free-box model), a pair ``(lo, hi)`` of ``(N, 2)`` arrays, or an ``(N, 4)`` array of
    ``[x0, y0, x1, y1]``. ``names``: one label per box. ``relations``: optional reference
    relations, an ``(N, N)`` bool matrix (row = child, column = parent) or a
    :class:`~visloupe.core.boxes.Relations`, highlighted on hover (default: parents predicted from
    the current boxes). ``groups``: a label per box for colours. Drag a box to move it, drag the
    handles of the selected box to resize it, drag the background to pan, scroll to zoom.
    The table is core ``boxes.hard_pairwise_overlap`` of the current boxes.
    """

    _css_class = "visloupe-box-explorer"

    def __init__(self, boxes_or_model: Any, names: Sequence[str], features: Any = None,
                 relations: Any = None, groups: Sequence[Any] | None = None, *,
                 threshold: float = 0.5, width: int = 560, height: int = 440,
                 max_rows: int = 25) -> None:
        super().__init__()
        self._init_base()
        initial = _as_box_list(boxes_or_model, features)
        n = len(initial)
        names = [str(x) for x in names]
        if len(names) != n:
            raise ValueError(f"names: expected {n} names (one per box), got {len(names)}")
        if groups is not None and len(groups) != n:
            raise ValueError(f"groups: expected {n} labels (one per box), got {len(groups)}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold: expected a value in [0, 1], got {threshold}")
        self._reference: torch.Tensor | None = None
        if relations is not None:
            ref = relations.parent if isinstance(relations, Relations) else relations
            ref = torch.as_tensor(ref)
            if ref.dtype != torch.bool or tuple(ref.shape) != (n, n):
                raise ValueError(f"relations: expected a bool ({n}, {n}) matrix or Relations, "
                                 f"got dtype {ref.dtype} shape {tuple(ref.shape)}")
            self._reference = ref.clone()
        self._initial = [list(b) for b in initial]
        self._names = names
        self._threshold = float(threshold)
        self._max_rows = int(max_rows)
        labels = [str(g) for g in groups] if groups is not None else ["" for _ in range(n)]
        kinds = list(dict.fromkeys(labels))
        self._group_colors = {g: PALETTE[k % len(PALETTE)] for k, g in enumerate(kinds)}
        self._groups = labels
        self.canvas = _BoxCanvas(boxes=[list(b) for b in initial], names=names,
                                 colors=[self._group_colors[g] for g in labels],
                                 width=int(width), height=int(height))
        self.table = widgets.HTML()
        self.table.add_class("vl-table")
        self.selection = widgets.HTML()
        self.errors = self.error_area
        self.reset_button = widgets.Button(description="Reset boxes", icon="undo")
        self.reset_button.on_click(lambda _b: self.reset())
        legend = ""
        if groups is not None:
            legend = " ".join(
                f'<span style="color:{c}">&#9632;</span> {html.escape(g)}'
                for g, c in self._group_colors.items())
        self.legend = widgets.HTML(f'<div style="font:{TEXT_S}px sans-serif">{legend}</div>')
        side = widgets.VBox([self.reset_button, self.selection, self.table, self.errors],
                            layout=widgets.Layout(max_height=f"{int(height) + 60}px",
                                                  overflow="auto", min_width="320px"))
        self.children = [widgets.VBox([self.canvas, self.legend]), side]
        self.add_class("visloupe-box-explorer")
        self.overlap: torch.Tensor = torch.zeros(n, n)
        self.predicted: torch.Tensor = torch.zeros(n, n, dtype=torch.bool)
        self.canvas.observe(self._on_change, names=["boxes", "selected"])
        self._refresh()

    # -- state ----------------------------------------------------------------------------------

    @property
    def boxes(self) -> list[list[float]]:
        """The current boxes, ``[x0, y0, x1, y1]`` each (as last synced from the browser)."""
        return [list(b) for b in self.canvas.boxes]

    @boxes.setter
    def boxes(self, value: Any) -> None:
        checked = _check_box_list(value, "boxes")
        if len(checked) != len(self._names):
            raise ValueError(f"boxes: expected {len(self._names)} boxes, got {len(checked)}")
        self.canvas.boxes = checked

    def reset(self) -> None:
        """Put every box back where it started."""
        self.canvas.boxes = [list(b) for b in self._initial]

    @guarded
    def _on_change(self, _change: dict) -> None:
        self._refresh()

    def _refresh(self) -> None:
        arr = torch.tensor(self.canvas.boxes, dtype=torch.float64)
        lo, hi = arr[:, :2], arr[:, 2:]
        self.overlap = hard_pairwise_overlap(lo, hi).float()
        self.predicted = parent_rule(self.overlap, self._threshold)
        links = self._reference if self._reference is not None else self.predicted
        self.canvas.links = [[int(c), int(p)] for c, p in links.nonzero().tolist()]
        self.table.value = self._table_html()
        self.selection.value = self._selection_html()
        self.errors.value = ""

    # -- tables ---------------------------------------------------------------------------------

    def containment_table(self) -> Any:
        """``pandas.DataFrame`` of ``ov(row -> column)`` = area of row box inside column box /
        area of row box, for the current boxes."""
        import pandas as pd

        return pd.DataFrame(self.overlap.numpy(), index=self._names, columns=self._names)

    def _table_html(self) -> str:
        n = len(self._names)
        ov = self.overlap
        esc = html.escape
        if n <= 12:
            head = "".join(f"<th>{esc(x)}</th>" for x in self._names)
            rows = []
            for i in range(n):
                cells = "".join(
                    f'<td style="background:rgba(31,119,180,{0.6 * float(ov[i, j]):.2f})">'
                    f"{float(ov[i, j]):.2f}</td>" for j in range(n))
                rows.append(f"<tr><th>{esc(self._names[i])}</th>{cells}</tr>")
            return (f'<div style="font:{TEXT_S}px sans-serif"><b>ov(row &rarr; column)</b> = '
                    "fraction of the row box inside the column box</div>"
                    f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>")
        pairs = [(i, j) for i, j in (ov > 0.01).nonzero().tolist() if i != j]
        pairs.sort(key=lambda p: -float(ov[p[0], p[1]]))
        body = "".join(
            f"<tr><td>{esc(self._names[i])}</td><td>{esc(self._names[j])}</td>"
            f"<td>{float(ov[i, j]):.2f}</td><td>{float(ov[j, i]):.2f}</td></tr>"
            for i, j in pairs[: self._max_rows])
        return (f'<div style="font:{TEXT_S}px sans-serif"><b>Largest containments</b> '
                f"({len(pairs)} overlapping pairs)</div><table><tr><th>box i</th><th>box j</th>"
                f"<th>ov(i&rarr;j)</th><th>ov(j&rarr;i)</th></tr>{body}</table>")

    def _selection_html(self) -> str:
        i = self.canvas.selected
        if not 0 <= i < len(self._names):
            return (f'<div style="font:{TEXT_S}px sans-serif;color:{MUTED}">Click a box to '
                    'select it.</div>')
        esc, ov = html.escape, self.overlap
        parents = self.predicted[i].nonzero().flatten().tolist()
        children = self.predicted[:, i].nonzero().flatten().tolist()
        par = ", ".join(f"{esc(self._names[p])} ({float(ov[i, p]):.2f})" for p in parents)
        chi = ", ".join(f"{esc(self._names[c])} ({float(ov[c, i]):.2f})" for c in children)
        return (f'<div style="font:{TEXT_S}px sans-serif"><b>{esc(self._names[i])}</b><br>'
                f"parents: {par or '&mdash;'}<br>children: {chi or '&mdash;'}</div>")

    # -- export ---------------------------------------------------------------------------------

    def to_svg(self, width: int = 560, height: int = 440) -> str:
        """A static SVG drawing of the current boxes (no JavaScript)."""
        a = np.asarray(self.canvas.boxes, dtype=np.float64)
        x0, y0 = a[:, 0].min(), a[:, 1].min()
        x1, y1 = a[:, 2].max(), a[:, 3].max()
        span = max(x1 - x0, y1 - y0, 1e-9)
        pad = 0.05 * span
        scale = min(width, height) / (span + 2 * pad)
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
        order = np.argsort(-(a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))
        for i in order:
            bx0, by0, bx1, by1 = a[i]
            c = self._group_colors[self._groups[i]]
            x, y = (bx0 - x0 + pad) * scale, (y1 + pad - by1) * scale
            w, h = (bx1 - bx0) * scale, (by1 - by0) * scale
            name = html.escape(self._names[i])
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
                         f'fill="{c}" fill-opacity="0.18" stroke="{c}" stroke-width="1.5">'
                         f"<title>{name}</title></rect>")
            if len(a) <= 40:
                parts.append(f'<text x="{x + 3:.1f}" y="{y + 12:.1f}" font-size="{TEXT_XS}" '
                             f'font-family="sans-serif">{name}</text>')
        parts.append("</svg>")
        return "".join(parts)

    def to_html(self) -> str:
        """A standalone HTML page: the SVG drawing and the containment table."""
        return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>BoxExplorer</title>"
                f"<style>table{{border-collapse:collapse;font:{TEXT_S}px sans-serif}}td,th{{"
                f"border:1px solid {RULE};padding:{SPACE_XS}px {SPACE_S}px}}</style></head><body>"
                f"{self.to_svg()}{self.table.value}</body></html>")

    def to_png(self, dpi: int = 100) -> bytes:
        """PNG bytes of the current boxes drawn with matplotlib (Agg, no display needed)."""
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle

        a = np.asarray(self.canvas.boxes, dtype=np.float64)
        fig = Figure(figsize=(5.6, 4.4), dpi=dpi)
        ax = fig.add_subplot(1, 1, 1)
        for i in np.argsort(-(a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])):
            c = self._group_colors[self._groups[i]]
            ax.add_patch(Rectangle((a[i, 0], a[i, 1]), a[i, 2] - a[i, 0], a[i, 3] - a[i, 1],
                                   facecolor=c, alpha=0.18, edgecolor=c, linewidth=1.2))
            if len(a) <= 40:
                ax.text(a[i, 0], a[i, 3], self._names[i], fontsize=7, va="top")
        pad = 0.05 * max(np.ptp(a[:, [0, 2]]), np.ptp(a[:, [1, 3]]), 1e-9)
        ax.set_xlim(a[:, 0].min() - pad, a[:, 2].max() + pad)
        ax.set_ylim(a[:, 1].min() - pad, a[:, 3].max() + pad)
        ax.set_aspect("equal")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()

    def _png(self) -> bytes:
        return self.to_png()
