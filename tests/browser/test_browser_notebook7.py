"""Every widget in Notebook 7 (issue 17): the seven explorers render in one notebook with no
widget or console error, each root is visible with a non-empty size, and the kernel round trip
works there too (SaliencyExplorer's next button brings a new image, BoxExplorer's anywidget
draws its boxes, DatasetExplorer's Map and Classes tabs open). A screenshot of each widget is
saved (``$VISLOUPE_SCREENSHOTS``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.labserver import lab_notebook
from helpers.widget_cells import SETUP, WIDGETS, check_every_widget


@pytest.mark.browser
def test_every_widget_renders_and_reacts_in_notebook_7(tmp_path: Path) -> None:
    cells = [SETUP, *WIDGETS.values()]
    with lab_notebook(tmp_path, cells, ".visloupe-box-explorer rect.vl-box", name="nb7.ipynb",
                      frontend="notebook", ready_timeout=180) as lab:
        page = lab.page
        check_every_widget(page, ".jp-OutputArea-output", lab.shots, "nb7")

        # DatasetExplorer's other tabs: the map (embedded by the model on opening) and classes
        explorer = page.locator(".visloupe-dataset-explorer").first
        for tab, ready in (("Map", ".visloupe-legend"), ("Classes", "img")):
            explorer.locator(".lm-TabBar-tab, .p-TabBar-tab", has_text=tab).first.click()
            panel = explorer.locator(".widget-tab-contents > :not(.lm-mod-hidden)").first
            panel.locator(ready).first.wait_for(state="visible", timeout=120_000)
            if tab == "Map":
                panel.locator("canvas").first.wait_for(state="visible", timeout=60_000)
            page.wait_for_timeout(1000)  # BokehJS draws on the next frames
            explorer.screenshot(path=str(lab.shots / f"nb7_dataset-explorer-{tab.lower()}.png"))
        assert lab.widget_errors() == [], lab.widget_errors()
