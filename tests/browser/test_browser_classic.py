"""Every widget in classic Notebook 6 with Colab's pins (ipywidgets 7.7.1, widgetsnbextension
3.6.10, anywidget 0.9.21, ipykernel 6.17.1, Notebook 6.5.7): ipywidgets 7's front end, the one
Colab's widget manager speaks. The pinned environment is built (or reused) by
``scripts/colab_env.sh``; the notebook server and its kernel run from it, the browser driver from
this venv. One notebook, one server: a plain IntSlider (the baseline), then the seven explorers;
each root is visible with a non-empty size, no cell raised, no widget failed to display, and the
browser logged no widget error. The kernel round trip is checked too (SaliencyExplorer's next
button brings a new image; BoxExplorer's anywidget draws its boxes; DatasetExplorer's BokehJS
charts draw). A screenshot of each widget is saved (``$VISLOUPE_SCREENSHOTS``)."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
from helpers.labserver import colab_env, lab_notebook
from helpers.widget_cells import SETUP, WIDGETS, check_every_widget

# The first cell proves which kernel runs: the pinned environment's python with ipywidgets 7.
CHECK_KERNEL = textwrap.dedent(
    """
    import sys
    import anywidget, ipywidgets
    print("KERNEL", sys.executable, "ipywidgets", ipywidgets.__version__,
          "anywidget", anywidget.__version__)
    """
).strip()
SLIDER = "ipywidgets.IntSlider(value=3, description='baseline').add_class('classic-baseline')"
# In classic Notebook a widget view sits in an output's `.jupyter-widgets-view` subarea.
VIEW = ".output_area .output_subarea.jupyter-widgets-view"


@pytest.mark.browser
def test_every_widget_renders_in_classic_notebook_with_colab_pins(tmp_path: Path) -> None:
    start = time.monotonic()
    env = colab_env()
    built = time.monotonic()
    cells = [CHECK_KERNEL, SLIDER, SETUP, *WIDGETS.values()]
    with lab_notebook(tmp_path, cells, f"{VIEW} .visloupe-box-explorer rect.vl-box",
                      name="classic.ipynb", frontend="classic", env=env,
                      ready_timeout=180) as lab:
        page = lab.page
        kernel = page.locator("#notebook .cell").nth(0).locator(".output_area").inner_text()
        assert f"KERNEL {env / 'bin' / 'python'} ipywidgets 7.7.1 anywidget 0.9." in kernel, kernel

        baseline = page.locator(f"{VIEW} .classic-baseline.widget-slider")
        baseline.wait_for(state="visible", timeout=30_000)
        assert baseline.locator(".widget-readout").inner_text().strip() == "3"

        check_every_widget(page, f"{VIEW} >", lab.shots, "classic")

        assert page.locator(".output_area .output_error").count() == 0, (
            page.locator(".output_area .output_error").first.inner_text())
        assert page.locator("text=Error displaying widget").count() == 0
        assert page.locator(".visloupe-error").count() == 0
        assert lab.widget_errors() == [], lab.widget_errors()
    print(f"classic Notebook 6: environment {built - start:.0f} s, "
          f"notebook {time.monotonic() - built:.0f} s")
