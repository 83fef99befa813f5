"""Bokeh documents inside anywidgets: any plot (``BokehPlot``) and the dataset map at scale
(``PointMap``).

BokehJS comes from the installed bokeh package (inline resources, never a CDN), sent once per
page when the first plot asks the kernel for it, so plots render in JupyterLab, Notebook 7,
VS Code and Colab without ``jupyter_bokeh`` and with ipywidgets 7 or 8.

``PointMap`` keeps a 100 000-point scatter interactive: the figure (axes, tools, colour bar)
travels as a small JSON document with an empty point source; the points travel once as one
binary buffer of float32 columns (x, y, colour code, dataset index) in the widget protocol,
and the browser fills the source from it and draws with WebGL (Bokeh's ``output_backend``,
a 2-D canvas where WebGL is missing, said under the plot). Hovering a point asks the kernel
for that point's thumbnail and text (one small binary message), so no thumbnail is made or
sent for points nobody looks at. Box and lasso selections reach Python as the synced
``selected`` trait (positions in the point arrays).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

__all__ = ["BokehPlot", "PointMap", "bokeh_js", "linear_colour_index"]

_HERE = Path(__file__).resolve().parent

POINTS_NAME = "visloupe-points"
"""Name of the (empty) ColumnDataSource the browser fills from ``PointMap.points``."""
COLUMNS = ("x", "y", "c", "index")
"""The float32 columns of ``PointMap.points``, in buffer order."""

_SELECT_JS = """
window.dispatchEvent(new CustomEvent("visloupe-select",
    {detail: {uid: uid, indices: Array.from(cb_obj.indices)}}));
"""

_HOVER_JS = """
const found = cb_data.index.indices;
window.dispatchEvent(new CustomEvent("visloupe-hover",
    {detail: {uid: uid, point: found.length ? found[found.length - 1] : -1}}));
"""


@lru_cache(maxsize=1)
def bokeh_js() -> tuple[str, ...]:
    """BokehJS and its WebGL module from the installed package (inline: works offline)."""
    from bokeh.resources import Resources

    return tuple(Resources(mode="inline", components=["bokeh", "bokeh-gl"]).js_raw)


def _bokeh_version() -> str:
    import bokeh

    return bokeh.__version__


def linear_colour_index(values: np.ndarray, low: float, high: float, n: int) -> np.ndarray:
    """Palette slot of each value under Bokeh's ``LinearColorMapper`` (``n`` equal bins over
    ``[low, high]``, ``high`` in the last one, values outside clipped); -1 where not finite.

    The browser colours the map with that mapper, so Python reports the same colour."""
    v = np.asarray(values, dtype=np.float64)
    span = high - low if high > low else 1.0
    k = np.floor((np.nan_to_num(v, nan=low) - low) / span * n)
    k = np.clip(k, 0, n - 1).astype(np.int64)
    return np.where(np.isfinite(v), k, -1)


class BokehPlot(anywidget.AnyWidget):
    """One Bokeh document (``bokeh.embed.json_item``) in the notebook."""

    _esm = _HERE / "datasets.js"
    item = traitlets.Unicode("").tag(sync=True)
    uid = traitlets.Unicode("").tag(sync=True)
    selected = traitlets.List(traitlets.Int()).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    bokeh_version = traitlets.Unicode("").tag(sync=True)
    css_class = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("uid", uuid.uuid4().hex)
        kwargs.setdefault("bokeh_version", _bokeh_version())
        super().__init__(**kwargs)
        self.figure: Any = None
        self.on_msg(self._on_custom)

    def _on_custom(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "need-bokeh":
            self.send({"type": "bokeh-js", "code": list(bokeh_js())})

    def show(self, fig: Any) -> None:
        """Draw ``fig`` (any Bokeh layout) in place of the current one."""
        from bokeh.embed import json_item

        self.figure = fig
        self.item = json.dumps(json_item(fig))

    def select_js(self) -> Any:
        """A CustomJS for ``source.selected.js_on_change("indices", ...)`` that relays that
        source's selection (point positions) to this plot's ``selected`` trait."""
        from bokeh.models import CustomJS

        return CustomJS(args={"uid": self.uid}, code=_SELECT_JS)


class PointMap(BokehPlot):
    """A scatter of up to ~10^5 points: figure as JSON, points as one binary buffer, WebGL,
    thumbnails on hover (see the module docstring).

    ``hover`` is set by the owner: ``point -> (fields, png)``; ``fields`` is a dict of short
    texts the tooltip shows (the browser escapes them), ``png`` the thumbnail's PNG bytes.
    """

    points = traitlets.Bytes(b"").tag(sync=True)
    n_points = traitlets.Int(0).tag(sync=True)
    webgl = traitlets.Unicode("").tag(sync=True)
    """What the browser reported: "webgl" or "canvas" (no WebGL in that browser)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hover: Callable[[int], tuple[dict[str, str], bytes]] | None = None

    def close(self) -> None:
        """Close and drop the hover callback (it is bound to the owner, and anywidget may keep
        a closed widget alive)."""
        self.hover = None
        super().close()

    def _on_custom(self, widget: Any, content: Any, buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "hover":
            self._answer_hover(content.get("point"))
            return
        super()._on_custom(widget, content, buffers)

    def _answer_hover(self, point: Any) -> None:
        if self.hover is None or not isinstance(point, int) or not 0 <= point < self.n_points:
            return
        try:
            fields, png = self.hover(point)
        except Exception as error:  # noqa: BLE001 - the tooltip says why, the map stays
            self.send({"type": "hover", "point": point, "fields": {"error": str(error)}})
            return
        self.send({"type": "hover", "point": point, "fields": fields}, [png] if png else None)

    def show_points(self, fig: Any, columns: dict[str, np.ndarray]) -> None:
        """Draw ``fig`` whose ``POINTS_NAME`` source the browser fills with ``columns``
        (``x``, ``y``, ``c`` colour code, ``index``; equal lengths)."""
        from bokeh.embed import json_item

        n = len(columns["x"])
        if any(len(columns[c]) != n for c in COLUMNS):
            raise ValueError(f"columns: expected {COLUMNS} of one length, got "
                             f"{ {c: len(columns[c]) for c in COLUMNS} }")
        buffer = np.concatenate([np.asarray(columns[c], dtype="<f4") for c in COLUMNS])
        self.figure = fig
        with self.hold_sync():
            self.points = buffer.tobytes()
            self.n_points = n
            self.item = json.dumps(json_item(fig))

    @staticmethod
    def empty_source() -> Any:
        """The empty, named point source a ``PointMap`` figure draws from."""
        from bokeh.models import ColumnDataSource

        return ColumnDataSource({c: [] for c in COLUMNS}, name=POINTS_NAME)

    def hover_js(self) -> Any:
        """The CustomJS of the map's HoverTool: tells the widget which point is under the
        mouse (the widget asks the kernel for its thumbnail)."""
        from bokeh.models import CustomJS

        return CustomJS(args={"uid": self.uid}, code=_HOVER_JS)
