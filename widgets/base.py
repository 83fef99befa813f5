"""The base every explorer shares: an error area, guarded callbacks, a progress bar with a
label, PNG/HTML export and a ``close()`` that really lets go.

Why a base: each explorer holds the user's model(s), data and caches of maps; a notebook that
builds and closes explorers in a loop must get that memory back. ``close()`` closes every child
widget (so the ipywidgets registry drops them and the callbacks bound to the explorer) and
releases every attribute the explorer added after its own set-up: caches are cleared, models,
data and results are set to None. A constructor that raises midway closes the half-built widget
before the error propagates, and ``close()`` may be called any number of times.
"""

from __future__ import annotations

import base64
import functools
import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as w
import numpy as np

from ._common import LRU, close_tree, error_html, guarded
from .style import MUTED, RULE, SPACE_M, SPACE_S, SPACE_XS, TEXT_M, TEXT_S, TEXT_XS

__all__ = ["ExplorerBase", "guarded"]

_KEEP = frozenset({"_closed", "_explorer_attrs", "_errors"})
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _unhook(widget: Any) -> None:
    """Drop the callbacks a widget holds (observers, click and message handlers): some
    widgets outlive their close (anywidget keeps its file watchers), and their callbacks,
    bound to the explorer, would keep the explorer -- and the user's model -- alive."""
    for child in getattr(widget, "children", ()) or ():
        if isinstance(child, w.Widget):
            _unhook(child)
    try:
        widget.unobserve_all()
    except Exception:  # noqa: BLE001
        pass
    for attr in ("_msg_callbacks", "_click_handlers", "_submission_callbacks"):
        handlers = getattr(widget, attr, None)
        if handlers is not None and hasattr(handlers, "callbacks"):
            handlers.callbacks.clear()


def _close_widget_tree(value: Any) -> None:
    """Close a widget and everything below it and drop their callbacks; ignore what is not a
    widget."""
    if isinstance(value, w.Widget):
        try:
            close_tree(value)
            _unhook(value)
        except Exception:  # noqa: BLE001 - closing must never raise
            pass


class ExplorerBase:
    """Mixin for the explorers (put it before the ipywidgets container in the bases).

    Subclasses call ``self._init_base()`` right after the container's ``__init__``, build
    their widgets, and implement ``_png()`` (the static view). They get ``self.error_area``,
    ``self.progress`` and ``self.progress_label`` (to place in their layout), ``_report_error``,
    ``_clear_errors``, ``_progress_start/_progress_step/_progress_done/_progress_callback``,
    ``to_png``, ``save_png``, ``_repr_mimebundle_`` (the live widget, or a note and a static
    picture where widgets do not render), ``to_html`` and ``close``.
    """

    _css_class = "visloupe-explorer"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_closes_on_error", False):
            return

        @functools.wraps(init)
        def wrapped(self: Any, *args: Any, **kw: Any) -> None:
            depth = getattr(self, "_init_depth", 0)
            object.__setattr__(self, "_init_depth", depth + 1)
            try:
                init(self, *args, **kw)
            except BaseException:
                if depth == 0:
                    try:
                        self.close()
                    except Exception:  # noqa: BLE001 - the constructor's error matters
                        pass
                raise
            finally:
                object.__setattr__(self, "_init_depth", depth)

        wrapped._closes_on_error = True  # type: ignore[attr-defined]
        cls.__init__ = wrapped  # type: ignore[misc]

    # ------------------------------------------------------------------ set-up

    def _init_base(self, progress_description: str = "") -> None:
        """Create the error area and the progress bar; remember which attributes belong to
        ipywidgets (everything added later is released by ``close``)."""
        self._closed = False
        self._errors: list[str] = []
        self._explorer_attrs = set(vars(self))
        self.error_area = w.HTML(value="")
        self.error_area.add_class("visloupe-errors")
        self.progress = w.IntProgress(value=0, min=0, max=1, description=progress_description,
                                      style={"description_width": "initial"},
                                      layout=w.Layout(width="220px"))
        self.progress_label = w.HTML(value="")
        self.progress_label.add_class("visloupe-progress-label")
        self._progress_unit = ""  # what the bar counts ("images", "maps"), shown after the count
        # hidden until something runs: an empty, unlabelled bar says nothing
        self.progress_box = w.HBox([self.progress, self.progress_label],
                                   layout=w.Layout(display="none"))

    # ------------------------------------------------------------------ errors

    def _report_error(self, message: str) -> None:
        """Show ``message`` (escaped) in the error area, keeping the last five."""
        self._errors = [*getattr(self, "_errors", [])[-4:], str(message)]
        area = getattr(self, "error_area", None)
        if area is not None:
            area.value = error_html(self._errors)

    def _clear_errors(self) -> None:
        self._errors = []
        area = getattr(self, "error_area", None)
        if area is not None:
            area.value = ""

    # ------------------------------------------------------------------ progress

    def _progress_start(self, total: int, what: str = "", unit: str = "") -> None:
        """Reset the bar to ``total`` steps, label it ``what`` (what runs: "embedding") and
        count in ``unit`` ("3 / 6 images")."""
        self.progress_box.layout.display = None
        self.progress.max = max(int(total), 1)
        self.progress.value = 0
        self.progress.bar_style = "info"
        self.progress.description = str(what)  # a widget label is text, never HTML
        self._progress_unit = str(unit)
        self.progress_label.value = self._progress_text()

    def _progress_text(self) -> str:
        """How far the bar is: ``done / total unit``."""
        unit = f" {escape(self._progress_unit)}" if self._progress_unit else ""
        return f"{self.progress.value} / {self.progress.max}{unit}"

    def _progress_step(self, n: int = 1) -> None:
        self.progress.value = min(self.progress.value + int(n), self.progress.max)
        self.progress_label.value = self._progress_text()

    def _progress_done(self, ok: bool = True) -> None:
        self.progress.value = self.progress.max
        self.progress.bar_style = "success" if ok else "danger"
        self.progress_label.value = self._progress_text() if ok else "failed"

    def _progress_callback(self, what: str, unit: str = "") -> Callable[..., None]:
        """A ``progress=`` callback for core functions: ``(done, total, *rest)``."""
        self._progress_start(1, what, unit)

        def update(done: Any = None, total: Any = None, *_: Any, **__: Any) -> None:
            if total is not None and int(total) > 0:
                self.progress.max = int(total)
            if done is not None:
                self.progress.value = min(int(done), self.progress.max)
            self.progress_label.value = self._progress_text()

        return update

    # ------------------------------------------------------------------ export

    def _png(self) -> bytes:
        """PNG bytes of the current view (each explorer draws its own)."""
        raise NotImplementedError

    def to_png(self) -> bytes:
        """PNG bytes of the current view."""
        return bytes(self._png())

    def save_png(self, path: str | Path) -> Path:
        """Write the current view to ``path`` as PNG and return the path."""
        path = Path(path)
        path.write_bytes(self.to_png())
        return path

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The live widget for front ends that render Jupyter widgets, and for those that do
        not (a static export, nbviewer, a front end without ipywidgets or anywidget) a plain
        note that says so plus the current view as a picture (``text/html``), never a blank
        cell. Widget-capable front ends rank the widget view above HTML."""
        parent = getattr(super(), "_repr_mimebundle_", None)
        bundle = dict(parent(**kwargs) or {}) if parent is not None else {}
        if WIDGET_VIEW not in bundle and getattr(self, "_model_id", None):
            bundle[WIDGET_VIEW] = {"version_major": 2, "version_minor": 0,
                                   "model_id": self._model_id}
        name = type(self).__name__
        note = (f"visloupe {name}: this front end did not show the live widget; it needs "
                "Jupyter widgets (ipywidgets and anywidget), as in JupyterLab, Notebook 7 or 6, "
                "VS Code or Colab.")
        bundle["text/plain"] = note
        if not getattr(self, "_closed", True):
            try:
                png = base64.b64encode(self.to_png()).decode("ascii")
                bundle["text/html"] = (
                    f'<div class="visloupe-static"><p>{html.escape(note)} Below: a static '
                    f"picture of its current view.</p>"
                    f'<img alt="{html.escape(name)}" src="data:image/png;base64,{png}"/></div>')
            except Exception as error:  # noqa: BLE001 - the note alone is still an answer
                bundle["text/plain"] = f"{note} (no static picture: {error})"
        return bundle

    if hasattr(w.Widget, "_ipython_display_"):  # ipywidgets 7 displays through this hook

        def _ipython_display_(self, **kwargs: Any) -> None:
            from IPython.display import display

            display(self._repr_mimebundle_(**kwargs), raw=True)

    def _html_body(self) -> str:
        """Extra static HTML after the PNG in ``to_html`` (already escaped)."""
        return ""

    def to_html(self) -> str:
        """A static HTML snapshot: the current view as an inline PNG, then the explorer's
        tables or text."""
        png = base64.b64encode(self.to_png()).decode("ascii")
        return (f'<div class="{self._css_class}"><img src="data:image/png;base64,{png}"/>'
                f"{self._html_body()}</div>")

    # ------------------------------------------------------------------ clean-up

    def _release(self) -> None:
        """Drop what the explorer holds: close widget attributes, clear caches, set models,
        data and results to None. Subclasses with extra resources (hooks) extend it."""
        base = getattr(self, "_explorer_attrs", None)
        if base is None:
            return
        for name in list(vars(self)):
            if name in base or name in _KEEP or name.startswith("__"):
                continue
            value = vars(self).get(name)
            if isinstance(value, w.Widget):
                _close_widget_tree(value)
                continue  # closed widgets may stay referenced (e.g. tests read them)
            if isinstance(value, (int, float, str, bytes, bool)) or value is None:
                continue  # holds no memory worth releasing
            if isinstance(value, (list, tuple, set, dict)):
                items = list(value.values() if isinstance(value, dict) else value)
                if items and all(isinstance(i, w.Widget) for i in items):
                    for item in items:
                        _close_widget_tree(item)
                    continue  # a list of (now closed) widgets stays, like a widget attribute
                for item in items:
                    if isinstance(item, w.Widget):
                        _close_widget_tree(item)
                    elif isinstance(item, (list, tuple)):
                        for sub in item:
                            _close_widget_tree(sub)
                    elif isinstance(item, dict):
                        for sub in item.values():
                            _close_widget_tree(sub)
            if isinstance(value, LRU):
                value.clear()  # ours: emptied in place
                continue
            # a fresh empty container (never mutate what the user passed in), else None
            empty = (type(value)() if type(value) in (list, tuple, set, dict) else None)
            try:
                object.__setattr__(self, name, empty)
            except Exception:  # noqa: BLE001 - a read-only attribute stays
                pass

    def close(self) -> None:
        """Close every child widget and drop the model(s), the data and every cache. Safe on a
        half-built explorer and when called twice."""
        if getattr(self, "_closed", False) and getattr(self, "comm", None) is None:
            return
        self._closed = True
        try:
            children = list(getattr(self, "children", ()) or ())
        except Exception:  # noqa: BLE001 - a half-built container
            children = []
        for child in children:
            _close_widget_tree(child)
        self._release()
        try:
            if children:
                self.children = []
        except Exception:  # noqa: BLE001
            pass
        for attr in ("layout", "style"):
            try:
                sub = getattr(self, attr, None)
            except Exception:  # noqa: BLE001
                sub = None
            if isinstance(sub, w.Widget):
                sub.close()
        try:
            super().close()  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - never initialised as a widget
            pass


def escape(text: Any) -> str:
    """``html.escape(str(text))``: every piece of user or dataset text bound for HTML."""
    return html.escape(str(text), quote=True)


def image_view(value: bytes = b"", *, hidden: bool = False) -> w.Image:
    """A PNG shown at its own pixel size: a flex container would otherwise stretch an image
    to its width (a 32-px map filled 800 px, blurred). It still shrinks to fit a narrow
    output (``max_width``), keeping its aspect ratio."""
    layout = w.Layout(width="auto", height="auto", max_width="100%", align_self="flex-start",
                      object_fit="contain", display="none" if hidden else None)
    return w.Image(value=value, format="png", layout=layout)


def toggle_buttons(options: Sequence[str], value: str) -> w.ToggleButtons:
    """A row of toggle buttons wide enough for its longest option, without a label of its own:
    show it with ``labelled`` (a ToggleButtons' own label wraps above the buttons once a flex
    row squeezes it)."""
    longest = max(len(str(o)) for o in options)
    return w.ToggleButtons(options=list(options), value=value,
                           style={"button_width": f"{max(80, 8 * longest + 32)}px"},
                           layout=w.Layout(width="auto", flex="0 0 auto"))


def labelled(label: str, control: w.Widget) -> w.HBox:
    """``control`` with its label to its left, on one line that never wraps."""
    text = w.HTML(f"<span style='white-space:nowrap'>{escape(label)}</span>",
                  layout=w.Layout(flex="0 0 auto"))
    return w.HBox([text, control], layout=w.Layout(flex="0 0 auto", align_items="center"))


def download_link(png: bytes, filename: str) -> str:
    """HTML for a link that downloads ``png`` as ``filename`` in the browser (a ``data:`` URL:
    no server, works in Lab, Notebook 7, VS Code and Colab)."""
    name = str(filename).strip() or "visloupe.png"
    if not name.lower().endswith(".png"):
        name += ".png"
    name = name.replace("/", "_").replace("\\", "_")
    data = base64.b64encode(png).decode("ascii")
    return (f"<a download=\"{escape(name)}\" href=\"data:image/png;base64,{data}\" "
            f"style='font-size:{TEXT_M}px'>⬇ download {escape(name)} "
            f"({len(png) // 1024 + 1} KB)</a>")


#: A colour bar under a tile: ``(cmap, signed, vmax)``; a signed map runs from ``-vmax``
#: through 0 to ``+vmax``, an absolute one from 0 to ``vmax`` (values beyond were clipped).
Scale = tuple[str, bool, float]


def tile_caption(caption: str, width: int, scale: Scale | None = None) -> str:
    """The HTML under one tile, ``width`` px wide: the colour bar of its map with its values
    first (so the bars of a row line up under the tiles), then the caption, its first line
    bold and the others muted, every line escaped."""
    first, *rest = str(caption).split("\n")
    lines = [f"<b>{escape(first)}</b>",
             *(f"<span style='color:{MUTED}'>{escape(line)}</span>" for line in rest)]
    bar = ""
    if scale is not None:
        cmap, signed, vmax = scale
        low = -vmax if signed else 0.0
        bar = (f"<div style='margin-bottom:{SPACE_S}px'>"
               f"{colour_bar_html(cmap, low, vmax, signed=signed, width=width)}</div>")
    return (f"<div style='width:{int(width)}px;overflow-wrap:break-word;hyphens:auto'>"
            f"{bar}{'<br>'.join(lines)}</div>")


def caption_row(captions: Sequence[str], cell: int, pad: int = SPACE_S,
                scales: Sequence[Scale | None] | None = None) -> str:
    """HTML captions for one row of ``render.image_grid`` tiles drawn without captions and shown
    at their own pixel size: each caption as wide as its tile (``cell`` px, ``pad`` px apart,
    as the grid lays them out), with the colour bar of the tile's map under it (``scales``,
    one per caption, ``None`` for a tile that is not a map). Text the browser draws
    (selectable, sharp at any zoom), not pixels."""
    scales = list(scales) if scales is not None else [None] * len(captions)
    if len(scales) != len(captions):
        raise ValueError(f"scales: expected one per caption ({len(captions)}), got {len(scales)}")
    cols = "".join(tile_caption(c, cell, s) for c, s in zip(captions, scales, strict=True))
    return (f"<div class='visloupe-captions' style='display:flex;gap:{int(pad)}px;"
            f"padding:0 {int(pad)}px;font-size:{TEXT_S}px;line-height:1.3'>{cols}</div>")


def colour_bar_html(cmap: str, low: float, high: float, *, signed: bool = False,
                    width: int = 120) -> str:
    """One colour bar with its end values (and 0 in the middle of a ``signed`` one)."""
    from .render import colorbar, to_png

    strip = base64.b64encode(to_png(colorbar(cmap, signed, width, 10))).decode("ascii")
    mid = "<span style='flex:1;text-align:center'>0</span>" if signed else \
        "<span style='flex:1'></span>"
    return (f"<span class='visloupe-colour-bar' style='display:inline-flex;"
            f"flex-direction:column;width:{width}px'>"
            f"<img src='data:image/png;base64,{strip}' width='{width}' height='10' "
            "style='image-rendering:pixelated'>"
            f"<span style='display:flex;font-size:{TEXT_XS}px;line-height:1.3;"
            "font-variant-numeric:tabular-nums;white-space:nowrap'>"
            f"<span>{bar_number(low)}</span>{mid}<span>{bar_number(high)}</span></span></span>")


def bar_number(value: float) -> str:
    """A colour bar's end value: 3 significant digits, negatives with a true minus sign (−),
    which is as wide as a digit, where a hyphen reads as a dash."""
    text = f"{value:.3g}"
    return "\u2212" + text[1:] if text.startswith("-") else text


def table_html(df: Any, css: str = "", *, max_rows: int = 30, decimals: int = 3) -> str:
    """A table as HTML that reads as a product, not a dump: headers in words ("n consistency",
    not "n_consistency"), numbers right-aligned in tabular figures with ``decimals`` decimals,
    no mid-word wraps, text escaped, a scroll box instead of overflow, and a line saying how many
    rows were left out."""
    import math
    import numbers

    shown = df.head(max_rows)
    cell = f"padding:{SPACE_XS}px {SPACE_M}px;white-space:nowrap;border-bottom:1px solid {RULE}"

    def fmt(value: Any) -> tuple[str, bool]:
        if isinstance(value, (bool, np.bool_)):
            return ("yes" if value else "no"), False
        if isinstance(value, numbers.Integral):
            return str(int(value)), True
        if isinstance(value, numbers.Real):
            v = float(value)
            return ("–" if not math.isfinite(v) else f"{v:.{decimals}f}"), True
        return escape(value), False

    head = "".join(f"<th style='{cell};text-align:left'>{escape(str(c).replace('_', ' '))}</th>"
                   for c in shown.columns)
    rows = []
    for rec in shown.itertuples(index=False):
        tds = []
        for value in rec:
            text, numeric = fmt(value)
            align = "right;font-variant-numeric:tabular-nums" if numeric else "left"
            tds.append(f"<td style='{cell};text-align:{align}'>{text}</td>")
        rows.append(f"<tr>{''.join(tds)}</tr>")
    more = (f"<div style='font-size:{TEXT_S}px;color:{MUTED}'>… {len(df) - max_rows} more "
            "rows</div>" if len(df) > max_rows else "")
    return (f"<div class='{escape(css)}' style='max-height:400px;max-width:100%;overflow:auto;"
            f"font-size:{TEXT_S}px;line-height:1.4'><table style='border-collapse:collapse'><thead>"
            f"<tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}</div>")
