"""The sample browser SaliencyExplorer and SplitIGExplorer share: previous/next buttons, a
position slider over the samples that pass the filters, a "go to id" box and a status line.

Rows of a selection (core ``profiling.subset``, e.g. ``DatasetExplorer.selection``) are shown
and sought by the ids they had in the dataset they came from, not by their row numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as w
import numpy as np

from .base import escape

__all__ = ["SampleBrowser"]


class SampleBrowser(w.HBox):
    """Paging over dataset rows ``order`` (a list of row numbers).

    ``on_change()`` is called when the sample on view changes (not while ``suspended``);
    ``on_past_end()`` is called when "next" is pressed on the last sample and may return True
    after it made more rows available (a stream read further); ``ids`` maps rows to the ids
    shown (None: the row numbers); errors of the callbacks go to ``report``.
    """

    def __init__(self, n: int, *, on_change: Callable[[], None],
                 report: Callable[[str], None],
                 on_past_end: Callable[[], bool] | None = None,
                 ids: Sequence[int] | None = None, label: str = "sample") -> None:
        wide = {"description_width": "initial"}
        self.prev_button = w.Button(description="◀", layout=w.Layout(width="36px"))
        self.next_button = w.Button(description="▶", layout=w.Layout(width="36px"))
        self.position = w.IntSlider(value=0, min=0, max=max(n - 1, 0), description=label,
                                    continuous_update=False, style=wide,
                                    layout=w.Layout(width="340px"))
        self.seek = w.IntText(value=0, description="go to id" if ids is not None else
                              "go to index", style=wide, layout=w.Layout(width="160px"))
        self.status = w.HTML()
        super().__init__([self.prev_button, self.next_button, self.position, self.seek,
                          self.status])
        self.add_class("visloupe-sample-browser")
        self.order: list[int] = list(range(n))
        self.ids: list[int] | None = [int(i) for i in ids] if ids is not None else None
        self._on_change, self._on_past_end, self._report = on_change, on_past_end, report
        self.suspended = 0
        self.prev_button.on_click(lambda _b: self.step(-1))
        self.next_button.on_click(lambda _b: self.step(+1))
        self.position.observe(self._position_changed, names="value")
        self.seek.observe(self._seek_changed, names="value")

    # ------------------------------------------------------------------ state

    @property
    def index(self) -> int | None:
        """Row number of the sample on view (None when the filters leave nothing)."""
        if not self.order:
            return None
        return self.order[min(self.position.value, len(self.order) - 1)]

    def id_of(self, row: int) -> int:
        """The id shown for dataset row ``row`` (its original id in a selection)."""
        if self.ids is not None and 0 <= row < len(self.ids):
            return self.ids[row]
        return int(row)

    def row_of(self, ident: int) -> int:
        """The row shown with id ``ident`` (the inverse of ``id_of``)."""
        if self.ids is None:
            return int(ident)
        try:
            return self.ids.index(int(ident))
        except ValueError:
            raise ValueError(f"id: expected one of the selection's ids {self.ids[:10]}"
                             f"{'…' if len(self.ids) > 10 else ''}, got {ident}") from None

    def set_order(self, order: Sequence[int], keep: int | None = None) -> None:
        """Page over ``order``; stay on row ``keep`` if it is there, else the first. Does not
        fire ``on_change``."""
        self.order = list(order)
        self.suspended += 1
        try:
            self.position.max = max(len(self.order) - 1, 0)
            self.position.value = self.order.index(keep) if keep in self.order else 0
        finally:
            self.suspended -= 1

    def go_to(self, row: int) -> None:
        """Show dataset row ``row`` (it must be in ``order``)."""
        if row not in self.order:
            raise ValueError(f"index: expected a row that passes the filters "
                             f"({len(self.order)} do), got {row}")
        self.position.value = self.order.index(row)

    def show_status(self, extra_html: str = "") -> None:
        """Update the status line and the seek box for the sample on view; ``extra_html``
        (already escaped) is appended."""
        row = self.index
        if row is None:
            self.status.value = "<i>no sample passes the filters</i>"
            return
        ident = self.id_of(row)
        self.suspended += 1
        try:
            self.seek.value = ident
        finally:
            self.suspended -= 1
        what = "id" if self.ids is not None else "index"
        self.status.value = (f"{self.position.value + 1} / {len(self.order)} &nbsp;·&nbsp; "
                             f"{what} {escape(ident)}{extra_html}")

    # ------------------------------------------------------------------ callbacks

    def step(self, delta: int) -> None:
        """Previous/next; past the end, ask ``on_past_end`` for more rows."""
        try:
            if (self.position.value + delta >= len(self.order)
                    and self._on_past_end is not None):
                self._on_past_end()
            if self.order:
                self.position.value = int(np.clip(self.position.value + delta, 0,
                                                  len(self.order) - 1))
        except Exception as error:  # noqa: BLE001 - shown in the explorer
            self._report(f"{type(error).__name__}: {error}")

    def _position_changed(self, _change: Any) -> None:
        if not self.suspended:
            self._on_change()

    def _seek_changed(self, change: Any) -> None:
        if self.suspended:
            return
        try:
            self.go_to(self.row_of(int(change["new"])))
        except Exception as error:  # noqa: BLE001 - shown in the explorer
            self._report(f"{type(error).__name__}: {error}")
