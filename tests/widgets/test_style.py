"""One palette, one spacing scale, one type scale (issue 17): every colour, gap and font size the
widgets write comes from ``visloupe.widgets.style``. Checked twice: in the sources (no stray
literal) and in the HTML a built widget actually shows."""

from __future__ import annotations

import re
from pathlib import Path

import ipywidgets as w
import pandas as pd
import pytest
from visloupe.widgets import style
from visloupe.widgets.base import bar_number, caption_row, table_html, tile_caption

WIDGETS = Path(style.__file__).resolve().parent
HEX = re.compile(r"(?<![&\w])#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b")
SPACING = re.compile(r"(?:margin|gap|padding)[-a-z]*\s*[:=]\s*[\"']?((?:-?\d+(?:px)?\s*)+)")
FONT = re.compile(r"font(?:-size)?\s*[:=]\s*[\"']?(\d+)(?:px)?")


def _palette() -> set[str]:
    names = [v for k, v in vars(style).items() if k.isupper() and isinstance(v, str)]
    return {c.lower() for c in [*names, *style.PALETTE]} | {"#ffffff"}


def _sources(*suffixes: str) -> list[Path]:
    return sorted(p for p in WIDGETS.iterdir() if p.suffix in suffixes and p.name != "style.py")


def test_python_sources_name_their_colours() -> None:
    stray = {f"{p.name}: {m}" for p in _sources(".py") for m in HEX.findall(p.read_text())}
    assert not stray, f"colour literals outside widgets/style.py: {sorted(stray)}"


def test_front_end_sources_use_the_palette() -> None:
    palette = _palette()
    stray = {f"{p.name}: {m}" for p in _sources(".js", ".css")
             for m in HEX.findall(p.read_text()) if m.lower() not in palette}
    assert not stray, f"colours not in widgets/style.py: {sorted(stray)}"


def _off_scale(text: str) -> list[str]:
    bad = []
    for group in SPACING.findall(text):
        values = [int(v.removesuffix("px")) for v in group.split()]
        bad += [f"spacing {v}" for v in values if abs(v) not in style.SPACES]
    bad += [f"font {v}" for v in FONT.findall(text) if int(v) not in style.TEXTS]
    return bad


@pytest.mark.parametrize("path", _sources(".py", ".js", ".css"), ids=lambda p: p.name)
def test_sources_keep_to_the_scales(path: Path) -> None:
    assert not _off_scale(path.read_text()), (path.name, _off_scale(path.read_text()))


def test_the_scan_catches_what_it_should() -> None:
    """The patterns above are the test: a stray literal of each kind must be found."""
    assert HEX.findall("color:#0a7a28") == ["#0a7a28"] and not HEX.findall("&#9632;")
    assert _off_scale("margin:0 12px 0 0") == ["spacing 12"]
    assert _off_scale("font-size:15px") == ["font 15"]
    assert _off_scale(f"gap:{style.SPACE_M}px;font-size:{style.TEXT_S}px") == []


def _html_of(widget: w.Widget) -> str:
    """Every HTML string shown in a widget tree."""
    out = [widget.value] if isinstance(widget, w.HTML) else []
    for child in getattr(widget, "children", ()):
        out.append(_html_of(child))
    return "".join(out)


def test_a_built_widget_shows_only_scale_values(one_thread) -> None:
    from visloupe.core import data, models
    from visloupe.widgets import SaliencyExplorer

    model, pre = models.pretrained("shapes-cnn")
    ds = data.load_builtin("shapes", n=4)
    ex = SaliencyExplorer(model, ds, preprocess=pre, methods=["saliency", "grad_cam"])
    ex.explain()
    shown = _html_of(ex)
    assert "visloupe-colour-bar" in shown  # the maps' colour bars are there to check
    assert not _off_scale(shown)
    assert all(c.lower() in _palette() for c in HEX.findall(shown))


def test_captions_carry_each_maps_colour_bar() -> None:
    row = caption_row(["input\nlabel cat", "Grad-CAM\ntarget cat"], 96,
                      scales=[None, ("inferno", False, 0.25)])
    assert row.count("visloupe-colour-bar") == 1 and "<span>0.25</span>" in row
    assert "<b>input</b>" in row and "label cat" in row
    signed = tile_caption("IG", 96, ("RdBu_r", True, 2.0))
    # the low end of a signed bar carries a true minus sign, not a hyphen
    assert "<span>\u22122</span>" in signed and "<span>2</span>" in signed
    assert ">0</span>" in signed and "<span>-2</span>" not in signed
    with pytest.raises(ValueError, match="scales"):
        caption_row(["a", "b"], 96, scales=[None])
    assert "&lt;script&gt;" in tile_caption("<script>", 96)


def test_bar_numbers_use_a_minus_sign_only_for_negatives() -> None:
    assert bar_number(-0.682) == "\u22120.682"
    assert bar_number(-1.5e-05) == "\u22121.5e-05"  # the exponent keeps its hyphen
    assert bar_number(1.5e-05) == "1.5e-05" and bar_number(0.0) == "0"


def test_tables_use_the_scales() -> None:
    html = table_html(pd.DataFrame({"n_images": [3], "cose": [0.5]}))
    assert "n images" in html and not _off_scale(html)
