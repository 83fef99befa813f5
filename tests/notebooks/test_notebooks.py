"""Every tutorial notebook runs top to bottom offline (testing layer 3, DESIGN.md §5).

Each notebook executes once per test run, in the environment with Colab's pins
(``test_notebooks_colab_pins.py``): its ipywidgets 7.7.1 and anywidget 0.9 are the strictest
front end we support, and visloupe is installed there from its sources as a user would install
it. Here, in the development environment (ipywidgets 8, the one ``make lab`` gives), only the
tour runs: the first notebook a newcomer opens. The widgets themselves are exercised under
ipywidgets 8 by ``tests/widgets`` and rendered in JupyterLab 4 and Notebook 7 by
``tests/browser``. Executing the other notebooks twice would cost about 7 minutes of CI for the
same computations.
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from helpers.labserver import error_outputs
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
TOUR = Path(__file__).resolve().parents[2] / "notebooks" / "00_tour.ipynb"


def test_there_is_a_tour() -> None:
    assert TOUR in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_opens_with_a_colab_badge(path: Path) -> None:
    first = "".join(nbformat.read(path, as_version=4).cells[0].source)
    assert "colab-badge" in first, "each notebook opens with an Open-in-Colab badge"


@pytest.mark.slow
def test_the_tour_executes_in_the_development_environment(record_notebook_time) -> None:
    notebook = nbformat.read(TOUR, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": TOUR.parent}}
    ).execute()
    record_notebook_time(f"{TOUR.name} (development environment)", time.perf_counter() - start)
    errors = error_outputs(notebook)
    assert not errors
