"""Read back the HTML captions ``widgets.base.caption_row`` writes under a row of tiles."""

from __future__ import annotations

import re

_COLUMN = re.compile(r"<div style='width:\d+px;overflow-wrap")


def caption_columns(html: str) -> list[str]:
    """The HTML under each tile, left to right (its caption, then its colour bar if any)."""
    return _COLUMN.split(html)[1:]


def bar_values(column: str) -> list[str] | None:
    """The numbers printed under a column's colour bar, low to high (``None``: no bar), with
    the bar's minus sign (−) read as ``-``."""
    if "visloupe-colour-bar" not in column:
        return None
    bar = column[column.index("visloupe-colour-bar"):]
    return [v.replace("\u2212", "-") for v in re.findall(r">(\u2212?[0-9][0-9.e+-]*)</span>", bar)]
