"""``JobProgress``: a labelled progress bar to pass as ``progress=`` to core functions that
report ``(done, total)``, such as :func:`visloupe.core.jobs.run` from a notebook."""

from __future__ import annotations

import time
from typing import Any

import ipywidgets as w

from .base import escape

__all__ = ["JobProgress"]


class JobProgress(w.HBox):
    """A bar that says what runs, how far (``done / total`` and a percentage) and for how long.

    Call it as ``progress(done, total)``; extra positional arguments (a label) are shown."""

    def __init__(self, what: str = "running", unit: str = "rows") -> None:
        super().__init__()
        self.add_class("visloupe-job-progress")
        self._what, self._unit = str(what), str(unit)
        self._start = time.perf_counter()
        self.bar = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="320px"))
        self.label = w.HTML(f"{escape(self._what)}: starting")
        self.children = [self.bar, self.label]

    def __call__(self, done: Any, total: Any, *extra: Any) -> None:
        done, total = int(done), max(int(total), 1)
        self.bar.max = total
        self.bar.value = min(done, total)
        seconds = time.perf_counter() - self._start
        note = f" · {escape(str(extra[0]))}" if extra else ""
        state = "done" if done >= total else f"{100 * done / total:.0f} %"
        self.label.value = (f"{escape(self._what)}: {done} / {total} {escape(self._unit)} "
                            f"({state}, {seconds:.0f} s){note}")
        self.bar.bar_style = "success" if done >= total else ""
