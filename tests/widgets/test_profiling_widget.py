"""Widget-state tests (testing layer 2) of DatasetExplorer: tabs are built from the core results,
colour-by re-renders the map, a selection set as the browser sets it reaches
``selected_indices`` and ``selection``, errors land in the error area, ``close`` releases.

The data is a small in-memory HF dataset with a planted exact duplicate; the model a tiny seeded
CNN (no training). Expected values are computed here independently of the widget.
"""

from __future__ import annotations

import io
import json

import datasets
import ipywidgets as w
import numpy as np
import pytest
import torch
from bokeh.palettes import Viridis256
from PIL import Image
from torch import nn
from visloupe.core.data import as_image_source
from visloupe.core.profiling import embed, knn_scores, project, thumbnail
from visloupe.widgets.datasets import STATISTICS, TABS, DatasetExplorer
from visloupe.widgets.plots import COLUMNS, BokehPlot, bokeh_js, linear_colour_index

N, K, SIDE = 40, 4, 16
DUP = (3, 29)  # item 29 is an exact copy of item 3
SAMPLE, SEED = 30, 0
NAMES = ["red", "green", "blue", "grey"]


def _images() -> tuple[list[Image.Image], list[int]]:
    rng = np.random.default_rng(0)
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [128, 128, 128]], np.float64)
    images, labels = [], []
    for i in range(N):
        k = i % K
        arr = base[k] + rng.normal(0, 25, size=(SIDE, SIDE, 3)) * rng.uniform(0.3, 1.5)
        images.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
        labels.append(k)
    images[DUP[1]] = images[DUP[0]].copy()
    labels[DUP[1]] = labels[DUP[0]]
    return images, labels


@pytest.fixture(scope="module")
def data() -> datasets.Dataset:
    images, labels = _images()
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=NAMES)})
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)  # noqa: NPY002 - test-local, seeded weights
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def preprocess(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


@pytest.fixture(scope="module")
def model() -> Tiny:
    return Tiny().eval()


@pytest.fixture(scope="module")
def explorer(data: datasets.Dataset, model: Tiny) -> DatasetExplorer:
    ex = DatasetExplorer(data, model=model, preprocess=preprocess, sample=SAMPLE, seed=SEED)
    for name in TABS:
        ex.show_tab(name)
    yield ex
    ex.close()


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _sampled() -> list[int]:
    """Which items a seeded sample of SAMPLE out of N holds (the documented draw)."""
    rng = np.random.default_rng(SEED)
    return sorted(int(i) for i in rng.choice(N, size=SAMPLE, replace=False))


def _source(fig, name: str = "visloupe-points"):
    return next(m for m in fig.references() if getattr(m, "name", None) == name)


def _points(explorer: DatasetExplorer) -> dict[str, np.ndarray]:
    """The map's points as the browser receives them: one float32 buffer of columns."""
    plot = explorer.map_plot
    flat = np.frombuffer(plot.points, dtype="<f4")
    assert flat.size == len(COLUMNS) * plot.n_points
    return dict(zip(COLUMNS, flat.reshape(len(COLUMNS), plot.n_points), strict=True))


def _hover(explorer: DatasetExplorer, point: int, monkeypatch) -> tuple[dict, list]:
    """What the kernel answers when the browser says the mouse is over ``point``."""
    sent = []
    monkeypatch.setattr(explorer.map_plot, "send",
                        lambda content, buffers=None: sent.append((content, buffers)))
    explorer.map_plot._on_custom(explorer.map_plot, {"type": "hover", "point": point}, [])
    assert len(sent) == 1
    return sent[0]


def test_overview_counts_and_histograms(explorer: DatasetExplorer, data) -> None:
    assert explorer.error_area.value == ""
    rows = _sampled()
    assert explorer.profile["index"].tolist() == rows
    assert "30 of 40" in explorer.summary.value
    bars = explorer.balance_plot.figure.renderers[0].data_source.data
    labels = np.asarray(data["label"])[rows]
    expected = {NAMES[k]: int((labels == k).sum()) for k in range(K)}
    assert dict(zip(bars["class_name"], bars["count"], strict=True)) == expected
    hists = [f for f in explorer.hist_plot.figure.children]
    titles = [f[0].title.text for f in hists]
    assert titles == list(STATISTICS)
    for fig, *_ in hists:  # every finite value counted once
        tops = fig.renderers[0].data_source.data["top"]
        assert int(np.sum(tops)) == SAMPLE
    assert json.loads(explorer.balance_plot.item)["doc"]["roots"]  # a Bokeh document


def test_classes_tab_one_row_per_class(explorer: DatasetExplorer) -> None:
    rows = explorer.classes_box.children
    assert len(rows) == K
    for k, row in enumerate(rows):
        head, image = row.children
        assert NAMES[k] in head.value
        grid = _decode(image.value)
        assert grid.shape[0] >= 64 and grid.shape[1] > 64 * 8


def test_map_matches_core_projection(explorer: DatasetExplorer, data, model,
                                     monkeypatch) -> None:
    rows = _sampled()
    emb = embed(model, data, preprocess=preprocess, indices=rows, cache=False)
    np.testing.assert_allclose(explorer.embeddings, emb, rtol=1e-5, atol=1e-6)
    pts = _points(explorer)
    shown = pts["index"].astype(int).tolist()
    labels = [int(data[i]["label"]) for i in shown]
    assert sorted(shown) == rows and labels == sorted(labels)  # points grouped by class
    xy = project(emb[[rows.index(i) for i in shown]], "pca", seed=SEED)
    np.testing.assert_allclose(np.c_[pts["x"], pts["y"]], xy, rtol=1e-4, atol=1e-5)
    table = explorer.map_points  # what the map shows, as Python sees it
    assert table["index"].tolist() == shown
    assert table["class_name"].tolist() == [NAMES[k] for k in labels]
    np.testing.assert_array_equal(pts["c"], [sorted(set(labels)).index(k) for k in labels])
    # the document carries no point (they travel as binary) and draws with WebGL
    item = json.loads(explorer.map_plot.item)
    assert explorer.map_plot.figure.output_backend == "webgl"
    assert len(_source(explorer.map_plot.figure).data["x"]) == 0
    assert "cdn.bokeh.org" not in explorer.map_plot.item and item["doc"]["roots"]
    # hover: the kernel makes that point's thumbnail on request and names it
    content, buffers = _hover(explorer, 3, monkeypatch)
    assert content["type"] == "hover" and content["point"] == 3
    assert content["fields"]["title"] == f"#{shown[3]} · {NAMES[labels[3]]}"
    img = Image.open(io.BytesIO(buffers[0]))
    assert max(img.size) == 48
    assert np.array_equal(np.asarray(img), np.asarray(thumbnail(data[shown[3]]["image"], 48)))
    for name in NAMES:
        assert name in explorer.map_legend.value
    page = explorer.to_html()  # standalone export: inline BokehJS, the points inline
    thumbs = page.count("data:image/png;base64,") - "".join(bokeh_js()).count(
        "data:image/png;base64,")
    assert "cdn.bokeh.org" not in page and thumbs == SAMPLE  # one per point
    assert len(page) > 500_000


def test_colour_by_statistic_rerenders(explorer: DatasetExplorer, monkeypatch) -> None:
    before = explorer.map_plot.item
    explorer.colour_by.value = "brightness"
    try:
        assert explorer.map_plot.item != before
        table = explorer.map_points
        bright = explorer.profile.set_index("index").loc[table["index"], "brightness"]
        bright = bright.to_numpy()
        colours = table["colour"].to_numpy()
        assert colours[np.argmax(bright)] == Viridis256[-1]
        assert colours[np.argmin(bright)] == Viridis256[0]
        # the browser colours the sent values with this mapper: the same slots
        np.testing.assert_allclose(_points(explorer)["c"], bright, rtol=1e-6)
        mapper = next(m for m in explorer.map_plot.figure.references()
                      if type(m).__name__ == "LinearColorMapper")
        assert (mapper.low, mapper.high) == (bright.min(), bright.max())
        assert any(type(m).__name__ == "ColorBar" for m in explorer.map_plot.figure.references())
        content, _ = _hover(explorer, 0, monkeypatch)
        assert content["fields"]["brightness"] == f"{bright[0]:.4g}"
        assert explorer.map_legend.value == ""  # the colour bar is the legend
    finally:
        explorer.colour_by.value = "class"
    assert len(set(explorer.map_points["colour"])) == K


def test_linear_colour_index_follows_bokeh_binning() -> None:
    # BokehJS LinearColorMapper: n equal bins over [low, high], high in the last, clipped
    got = linear_colour_index(np.array([0.0, 0.24, 0.25, 0.5, 0.99, 1.0, -3.0, 7.0, np.nan]),
                              0.0, 1.0, 4)
    assert got.tolist() == [0, 0, 1, 2, 3, 3, 0, 3, -1]


def test_simulated_selection_reaches_python(explorer: DatasetExplorer, data, model) -> None:
    from visloupe.widgets import SaliencyExplorer

    points = [2, 5, 11]
    expected = [int(explorer.map_points["index"][p]) for p in points]
    explorer.map_plot.selected = points  # what the browser sends after a box select
    try:
        assert explorer.selected_indices == expected
        assert "3 selected" in explorer.selection_info.value
        assert f'data-indices="{",".join(map(str, expected))}"' in explorer.selection_info.value
        assert _decode(explorer.selection_image.value).shape[1] >= 3 * 64
        chosen = as_image_source(explorer.selection)
        assert len(chosen) == 3
        for k, i in enumerate(expected):
            assert chosen[k].label == data[i]["label"]
            assert np.array_equal(np.asarray(chosen[k].image), np.asarray(data[i]["image"]))
        sal = SaliencyExplorer(model, explorer.selection, preprocess=preprocess,
                               methods=["saliency"], auto_explain=False)
        sal.close()
        explorer.select([expected[0]])  # the Python-side setter redraws with the selection
        assert explorer.selected_indices == [expected[0]]
        assert _source(explorer.map_plot.figure).selected.indices == [points[0]]
    finally:
        explorer.map_plot.selected = []
    assert explorer.selected_indices == []
    with pytest.raises(ValueError, match="nothing is selected"):
        _ = explorer.selection


def test_duplicates_and_outliers_map_rows_to_items(explorer: DatasetExplorer, data,
                                                  model) -> None:
    rows = _sampled()
    assert DUP[0] in rows and DUP[1] in rows
    dups = explorer.duplicates
    exact = dups[dups["exact"]]
    assert [tuple(r) for r in exact[["i", "j"]].to_numpy()] == [DUP]
    every = embed(model, data, preprocess=preprocess, indices=list(range(N)), cache=False)
    unit = every / np.linalg.norm(every, axis=1, keepdims=True)
    assert len(dups) > 1
    for i, j, d in dups[["i", "j", "distance"]].itertuples(index=False):  # dataset indices
        assert i in rows and j in rows
        cos = 1.0 - float(unit[i] @ unit[j])
        assert cos <= explorer.threshold.value + 1e-5
        assert d == pytest.approx(cos, abs=1e-4) or (i, j) == DUP
    emb = every[rows]
    assert explorer.outliers["index"].iloc[0] == rows[int(np.argmax(knn_scores(emb, 10)))]
    n_before = len(dups)
    explorer.threshold.value = 0.0  # only the exact copy is left
    try:
        assert len(explorer.duplicates) <= n_before
        assert (explorer.duplicates["distance"] == 0).all()
    finally:
        explorer.threshold.value = 0.05


def test_errors_tab_cell_lists_its_samples(explorer: DatasetExplorer, data, model) -> None:
    rows = _sampled()
    x = torch.stack([preprocess(data[i]["image"]) for i in rows])
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    labels = np.asarray(data["label"])[rows]
    grid = explorer.matrix_box.children[0].children[0]
    buttons = [c for c in grid.children if isinstance(c, w.Button)]
    assert len(buttons) == K * K
    counts = np.array([int(b.description) for b in buttons]).reshape(K, K)
    expected = np.zeros((K, K), int)
    np.add.at(expected, (labels, pred), 1)
    assert np.array_equal(counts, expected)
    t, p = np.unravel_index(np.argmax(expected), expected.shape)
    buttons[t * K + p].click()  # what a click in the browser triggers
    want = [i for i, y, q in zip(rows, labels, pred, strict=True) if y == t and q == p]
    assert explorer.cell_indices == want
    assert f'data-indices="{",".join(map(str, want))}"' in explorer.cell_info.value
    assert explorer.show_confusion_cell(int(t), int(p)) == want
    # the progress bar was driven by core's progress(done, total) callback of the last pass
    assert explorer.progress.description == "predicting"
    assert explorer.progress.max == explorer.progress.value == SAMPLE
    assert explorer.progress_label.value == f"{SAMPLE} / {SAMPLE} images"


def test_without_model_uses_pixels_and_says_errors_need_one(data) -> None:
    ex = DatasetExplorer(data)
    try:
        ex.show_tab("map")  # any case
        assert TABS[ex.tabs.selected_index] == "Map"
        with pytest.raises(ValueError, match=r"name: expected one of .*got 'mapp'"):
            ex.show_tab("mapp")
        # the bar says what ran last and how far, in what it counts
        assert ex.progress.description == "projecting (PCA)"
        assert ex.progress_label.value == f"{N} / {N} points"
        ex.show_tab("Errors")
        assert ex.error_area.value == ""
        assert ex.embeddings.shape == (N, 16 * 16 * 3)
        pix = np.asarray(data[7]["image"].convert("RGB").resize((16, 16), Image.BILINEAR))
        np.testing.assert_allclose(ex.embeddings[7], pix.reshape(-1) / 255.0, atol=1e-6)
        assert "pixels" in ex.map_plot.figure.title.text
        assert "needs a model" in ex.errors_info.value
    finally:
        ex.close()


def test_unreadable_and_unlabelled_items_are_reported_not_fatal() -> None:
    rng = np.random.default_rng(1)
    images = []
    for _ in range(12):
        buf = io.BytesIO()
        Image.fromarray((rng.random((10, 10, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
        images.append({"bytes": buf.getvalue(), "path": None})
    images[4] = {"bytes": b"not an image", "path": None}
    ds = datasets.Dataset.from_dict({"image": images},
                                    features=datasets.Features({"image": datasets.Image()}))
    ex = DatasetExplorer(ds)
    try:
        for name in TABS:
            ex.show_tab(name)
        assert ex.error_area.value == ""
        assert "1 unreadable" in ex.summary.value and "0 classes" in ex.summary.value
        assert 4 not in ex.map_points["index"].tolist()
        assert len(ex.map_points) == ex.map_plot.n_points == 11
        assert "no labels" in ex.classes_box.children[0].value
        assert "needs a model" in ex.errors_info.value
    finally:
        ex.close()


def test_errors_show_in_the_error_area(data, model) -> None:
    def broken(img: Image.Image) -> torch.Tensor:
        raise RuntimeError("preprocess exploded")

    ex = DatasetExplorer(data, model=model, preprocess=broken)
    try:
        ex.show_tab("Map")  # embed fails: reported, not raised
        assert "preprocess exploded" in ex.error_area.value
        assert "visloupe-error" in ex.error_area.value
        assert ex.embeddings is None
    finally:
        ex.close()
    with pytest.raises(ValueError, match="projection"):
        DatasetExplorer(data, projection="mds")
    with pytest.raises(TypeError, match="model"):
        DatasetExplorer(data, model="resnet")
    with pytest.raises(ValueError, match="sample"):
        DatasetExplorer(data, sample=0)


def test_bokehjs_is_sent_inline(monkeypatch) -> None:
    plot = BokehPlot()
    sent = []
    monkeypatch.setattr(plot, "send", lambda content, buffers=None: sent.append(content))
    plot._on_custom(plot, {"type": "need-bokeh"}, [])
    import bokeh

    assert sent and sent[0]["type"] == "bokeh-js"
    code = "".join(sent[0]["code"])
    assert len(code) > 500_000 and bokeh.__version__ in code and "Bokeh" in code
    plot.close()


def _live_widgets() -> int:
    from ipywidgets.widgets import widget as widget_module

    registry = getattr(widget_module, "_instances", None)  # ipywidgets 8
    return len(registry if registry is not None else w.Widget.widgets)  # 7


def test_close_releases_widgets_and_caches(data, model) -> None:
    before = _live_widgets()
    ex = DatasetExplorer(data, model=model, preprocess=preprocess, sample=12)
    ex.show_tab("Map")
    ex.show_tab("Errors")
    assert _live_widgets() > before
    ex.close()
    assert _live_widgets() == before
    assert ex.profile is None and ex.embeddings is None
    assert ex.map_plot.comm is None
    ex.close()  # idempotent


def test_map_sends_points_as_binary_and_makes_thumbnails_only_on_hover(monkeypatch) -> None:
    import visloupe.core.profiling as profiling

    made = []
    real = profiling.thumbnail
    monkeypatch.setattr(profiling, "thumbnail", lambda *a, **k: made.append(1) or real(*a, **k))
    rng = np.random.default_rng(3)
    n, shown = 3000, 2500
    images = rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)
    ex = DatasetExplorer((images, [i % 7 for i in range(n)]), max_points=shown)
    try:
        ex.show_tab("Map")
        assert ex.error_area.value == ""
        assert ex.map_plot.n_points == len(ex.map_points) == shown
        assert len(ex.map_plot.points) == 4 * len(COLUMNS) * shown  # float32 columns
        assert len(ex.map_plot.item) < 40_000  # the document carries no point
        assert made == []  # no thumbnail until a point is hovered
        pts = _points(ex)
        assert len(set(pts["index"].astype(int))) == shown
        assert set(pts["index"].astype(int)) <= set(range(n))
        content, buffers = _hover(ex, shown - 1, monkeypatch)
        assert made == [1] and buffers and content["point"] == shown - 1
        assert content["fields"]["title"].startswith(f"#{int(pts['index'][-1])} · ")
    finally:
        ex.close()
