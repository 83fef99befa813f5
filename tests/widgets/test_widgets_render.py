"""Rendering helpers of the widgets: overlays, colormaps, grids and PNG bytes."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from PIL import Image
from visloupe.widgets import render


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)


def test_png_round_trip_is_lossless(image: np.ndarray) -> None:
    data = render.to_png(image)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(np.asarray(render.from_png(data)), image)


def test_colormap_lut_samples_matplotlib() -> None:
    lut = render.colormap_lut("viridis")
    ref = matplotlib.colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert np.abs(lut.astype(float) - ref).max() <= 0.5 + 1e-9
    with pytest.raises(ValueError, match="cmap"):
        render.colormap_lut("no-such-map")


def test_blend_interpolates_between_image_and_heatmap(image: np.ndarray) -> None:
    sal = np.random.default_rng(1).random((6, 8))
    heat = render.overlay(image, sal, mode="heatmap", cmap="magma")
    assert np.array_equal(render.overlay(image, sal, alpha=0.0, cmap="magma"), image)
    assert np.array_equal(render.overlay(image, sal, alpha=1.0, cmap="magma"), heat)
    half = render.overlay(image, sal, alpha=0.5, cmap="magma").astype(int)
    expected = (image.astype(float) + heat.astype(float)) / 2
    assert np.abs(half - expected).max() <= 1.0
    # the heatmap does not depend on the image, only on the map
    assert np.array_equal(render.overlay(image[::-1], sal, mode="heatmap", cmap="magma"), heat)


def test_heatmap_uses_the_colormap_ends() -> None:
    img = np.zeros((2, 2, 3), np.uint8)
    sal = np.array([[0.0, 1.0], [0.0, 1.0]])
    out = render.overlay(img, sal, mode="heatmap", cmap="gray")
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() == [255, 255, 255]
    signed = render.overlay(img, np.array([[-2.0, 0.0], [2.0, 0.0]]), mode="heatmap",
                            cmap="gray", signed=True)
    assert signed[0, 0].tolist() == [0, 0, 0]          # most negative -> low end
    assert signed[1, 0].tolist() == [255, 255, 255]    # most positive -> high end
    assert abs(int(signed[0, 1, 0]) - 128) <= 1          # zero sits mid-colormap


def test_masked_mode_dims_where_the_map_is_low() -> None:
    img = np.full((2, 2, 3), 200, np.uint8)
    sal = np.array([[0.0, 1.0], [0.5, 1.0]])
    out = render.overlay(img, sal, alpha=1.0, mode="masked")
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() == [200, 200, 200]
    assert out[1, 0, 0] == 100
    assert np.array_equal(render.overlay(img, sal, alpha=0.0, mode="masked"), img)


def test_map_is_upsampled_to_the_image_and_vmax_clips(image: np.ndarray) -> None:
    out = render.overlay(image, np.ones((3, 4)), mode="heatmap", cmap="gray")
    assert out.shape == image.shape and (out == 255).all()
    clipped = render.overlay(image, np.array([[1.0, 10.0]]), mode="heatmap", cmap="gray",
                             vmax=1.0)
    assert (clipped == 255).all()


def test_overlay_rejects_bad_arguments(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="mode"):
        render.overlay(image, np.zeros((2, 2)), mode="nope")
    with pytest.raises(ValueError, match="alpha"):
        render.overlay(image, np.zeros((2, 2)), alpha=2.0)
    with pytest.raises(ValueError, match="saliency"):
        render.overlay(image, np.zeros((1, 2, 2)))


def test_grayscale_rgba_and_float_inputs_become_rgb() -> None:
    gray = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4), "L")
    rgb = render.to_rgb_array(gray)
    assert rgb.shape == (3, 4, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque pixel kept, transparent ones composited on white
    out = render.to_rgb_array(rgba)
    assert out[0, 0].tolist() == [10, 20, 30] and out[1, 1].tolist() == [255, 255, 255]
    assert render.to_rgb_array(np.ones((2, 2), np.float32)).max() == 255
    with pytest.raises(ValueError, match="img"):
        render.to_rgb_array(np.zeros((2, 2, 5), np.uint8))


def test_image_grid_places_cells_and_captions() -> None:
    red = np.zeros((10, 20, 3), np.uint8)
    red[..., 0] = 255
    grid = render.image_grid([red, None, red], ["one", "two", "three"], ncols=2, cell=40, pad=4)
    arr = np.asarray(grid)
    assert grid.size == (2 * 44 + 4, 2 * (40 + 14 + 4) + 4)
    # first cell: the 10x20 image fitted to 20x40 and centred vertically in its 40x40 box
    assert arr[4 + 20, 4 + 20].tolist() == [255, 0, 0]
    assert arr[4 + 2, 4 + 20].tolist() == [255, 255, 255]
    assert arr[4 + 20, 48 + 20].tolist() == [230, 230, 230]  # None -> grey placeholder
    caption_band = arr[4 + 40 + 1: 4 + 40 + 13, 4:44]
    assert (caption_band < 128).any()  # some text was drawn
    with pytest.raises(ValueError, match="captions"):
        render.image_grid([red], ["a", "b"])


def test_tables_read_as_a_product() -> None:
    """Readable headers, right-aligned fixed-decimal numbers, escaped text, no wraps."""
    import pandas as pd
    from visloupe.widgets.base import table_html

    df = pd.DataFrame({"n_consistency": [3, 12], "cose": [0.61234, float("nan")],
                       "method": ["<b>grad_cam</b>", "ig"], "exact": [True, False]})
    html = table_html(df, "t", decimals=2)
    assert ">n consistency</th>" in html and "n_consistency" not in html
    assert "text-align:right;font-variant-numeric:tabular-nums'>0.61</td>" in html
    assert ">–</td>" in html and ">yes</td>" in html
    assert "&lt;b&gt;grad_cam&lt;/b&gt;" in html and "<b>grad_cam" not in html
    assert html.count("white-space:nowrap") == 2 * 4 + 4
    assert "more rows" in table_html(pd.concat([df] * 20), max_rows=30)
