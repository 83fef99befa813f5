"""Every tutorial notebook runs top to bottom offline (testing layer 3, DESIGN.md §5)."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from helpers.labserver import error_outputs
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_is_a_tour() -> None:
    assert any(path.name == "00_tour.ipynb" for path in NOTEBOOKS)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    first = "".join(notebook.cells[0].source)
    assert "colab-badge" in first, "each notebook opens with an Open-in-Colab badge"
    start = time.perf_counter()
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": path.parent}}
    ).execute()
    print(f"{path.name} executed in {time.perf_counter() - start:.0f} s")  # goal: < 90 s
    errors = error_outputs(notebook)
    assert not errors
