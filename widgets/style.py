"""One look for every widget (issue 17: "one palette and one spacing scale"): the categorical
palette, the few colours that carry a meaning, one spacing scale and one type scale. Every
widget's HTML, SVG and matplotlib figure takes its colours, gaps and font sizes from here, so
they read as one product; ``tests/widgets/test_style.py`` holds the widget sources to it."""

from __future__ import annotations

#: The categorical palette (classes, methods, box groups, curves): 20 colours, Tableau 10 then
#: the darker and lighter hues that follow it in d3's category20b/c.
PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
    "#e6550d", "#31a354", "#756bb1", "#636363")
#: Two-series plots (a quantity and its companion on a twin axis) and a third marker line.
PRIMARY, SECONDARY, TERTIARY = "#1f4e9c", "#c0392b", "#2e8b57"

#: Colours with a meaning: a failure or a flagged row, a check that passed, a flagged table
#: row's background, a value that is missing.
BAD, GOOD, FLAGGED, MISSING = "#b00020", "#1b5e20", "#ffd6d6", "#bbbbbb"
#: The greys, darkest first: outlines and marks, secondary text and ticks, reference lines,
#: rules and borders.
INK, MUTED, FAINT, RULE = "#333333", "#555555", "#999999", "#dddddd"

#: The spacing scale in px (gaps, margins, cell padding): nothing in between.
SPACE_XS, SPACE_S, SPACE_M, SPACE_L = 2, 4, 8, 16
SPACES = (0, SPACE_XS, SPACE_S, SPACE_M, SPACE_L)

#: The type scale in px: small print (SVG labels, monospace tables), captions, body, headings.
TEXT_XS, TEXT_S, TEXT_M, TEXT_L = 11, 12, 13, 14
TEXTS = (TEXT_XS, TEXT_S, TEXT_M, TEXT_L)


def rgb(colour: str) -> tuple[int, int, int]:
    """``"#1f4e9c"`` -> ``(31, 78, 156)``: a palette colour for numpy-drawn pixels."""
    value = colour.lstrip("#")
    if len(value) != 6:
        raise ValueError(f"colour: expected '#rrggbb', got {colour!r}")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
