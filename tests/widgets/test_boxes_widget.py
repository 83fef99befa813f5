"""BoxExplorer widget state: browser-side box edits (set_state / traitlets) reach the Python
containment table; bad input is rejected; static exports decode."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from visloupe.core import boxes as bx
from visloupe.widgets.boxes import BoxExplorer

BOXES = np.array([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])


def test_set_state_of_moved_boxes_changes_the_python_table() -> None:
    e = BoxExplorer(BOXES, ["parent", "child", "other"], groups=["g", "g", "h"])
    assert e.overlap[1, 0] == pytest.approx(1.0) and e.overlap[0, 1] == pytest.approx(1 / 16)
    assert e.canvas.links == [[1, 0]]
    before = e.table.value
    # what a browser message does after a drag: the child leaves the parent for "other"
    e.canvas.set_state({"boxes": [[0, 0, 4, 4], [5.25, 5.25, 5.75, 5.75], [5, 5, 6, 6]]})
    assert e.overlap[1, 0] == 0.0
    assert e.overlap[1, 2] == pytest.approx(1.0) and e.overlap[2, 1] == pytest.approx(0.25)
    assert e.canvas.links == [[1, 2]]
    assert e.table.value != before and "0.25" in e.table.value
    # a resize: the parent grows to half-cover "other"
    e.boxes = [[0, 0, 5.5, 6], [1, 1, 2, 2], [5, 5, 6, 6]]
    assert e.overlap[2, 0] == pytest.approx(0.5)
    e.canvas.selected = 1
    assert "parent" in e.selection.value and "1.00" in e.selection.value
    e.reset()
    assert e.boxes == BOXES.tolist()
    e.close()


def test_built_from_a_free_box_model_and_reference_relations() -> None:
    h = bx.synthetic_hierarchy(depth=2, branching=(2, 2), roots=1, seed=0)
    model = bx.Task2Box(dim=2, free=True).fit(None, h.overlap(), epochs=20)
    e = BoxExplorer(model, h.names, relations=h.ancestors(), groups=h.groups)
    lo, hi = model.boxes()
    assert np.allclose(np.array(e.boxes), torch.cat([lo, hi], 1).numpy(), atol=1e-6)
    assert sorted(map(tuple, e.canvas.links)) == sorted(map(tuple, h.ancestors().nonzero()
                                                            .tolist()))
    png = Image.open(io.BytesIO(e.to_png()))
    assert png.size[0] > 100 and png.size[1] > 100
    page = e.to_html()
    assert page.count("<rect") == len(h) and "<table" in page
    e.close()


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="names"):
        BoxExplorer(BOXES, ["a", "b"])
    with pytest.raises(ValueError, match="hi < lo"):
        BoxExplorer(np.array([[0.0, 0.0, -1.0, 1.0]]), ["a"])
    with pytest.raises(ValueError, match="dim"):
        BoxExplorer(bx.Task2Box(dim=3, free=True).fit(None, torch.eye(3), epochs=1), "abc")
    e = BoxExplorer(BOXES, ["a", "b", "c"])
    with pytest.raises(ValueError, match="boxes"):
        e.boxes = [[0, 0, 1, 1]]
    e.close()
