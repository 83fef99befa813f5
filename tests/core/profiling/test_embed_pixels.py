"""Pixel embeddings, the dataset map's space without a model (moved from the widget, issue 14)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image
from visloupe.core.profiling import pixel_embeddings


def test_pixel_embeddings_are_resized_rgb_in_unit_range() -> None:
    red = Image.new("RGB", (40, 20), (255, 0, 0))
    grey = Image.new("L", (8, 8), 128)
    emb = pixel_embeddings([red, grey], size=4)
    assert emb.shape == (2, 48) and emb.dtype == np.float32
    np.testing.assert_allclose(emb[0].reshape(4, 4, 3), np.broadcast_to([1.0, 0, 0], (4, 4, 3)))
    np.testing.assert_allclose(emb[1], 128 / 255, atol=1e-6)  # grey read as RGB
    np.testing.assert_array_equal(pixel_embeddings([red, grey], [1], size=4), emb[1:])


@pytest.mark.parametrize("shape", [(8, 8), (40, 20), (33, 57), (100, 64), (5, 5), (16, 16)])
def test_pixel_embeddings_follow_pil_bilinear(shape: tuple[int, int]) -> None:
    """Batched resizing agrees with PIL's BILINEAR resize within one grey level (PIL rounds
    each of its two passes to 8 bits), when enlarging and when shrinking (antialiased)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, *shape, 3)).astype(np.uint8)
    emb = pixel_embeddings(images, size=16)
    ref = np.stack([np.asarray(Image.fromarray(a).resize((16, 16), Image.BILINEAR),
                               dtype=np.float32).reshape(-1) / 255 for a in images])
    assert np.abs(emb - ref).max() <= 1 / 255 + 1e-6
    if shape != (16, 16):
        assert np.abs(emb - ref).max() > 0  # not PIL's pixels: the check above can fail
    else:
        np.testing.assert_array_equal(emb, ref)  # same size: the pixels themselves


def test_pixel_embeddings_of_arrays_equal_those_of_the_same_pil_images() -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, size=(20, 9, 7, 3)).astype(np.uint8)
    np.testing.assert_array_equal(pixel_embeddings(arr, size=6),
                                  pixel_embeddings([Image.fromarray(a) for a in arr], size=6))


def test_a_broken_image_keeps_a_zero_row_and_the_rest_are_embedded(
        caplog: pytest.LogCaptureFixture) -> None:
    good = Image.new("RGB", (8, 8), (0, 255, 0))
    with caplog.at_level(logging.WARNING):
        emb = pixel_embeddings([good, np.full((8, 8, 3), 7.0), good], size=2)
    assert (emb[1] == 0).all() and np.allclose(emb[[0, 2]].reshape(2, 4, 3), [0, 1, 0])
    assert "item 1 failed" in caplog.text and "float pixel values" in caplog.text


def test_flushing_in_small_batches_keeps_each_row_with_its_image(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Images of mixed sizes resized in many small batches (a tiny pixel budget, as a data set
    of large photos reaches) land in the same rows as when resized all at once."""
    import importlib

    embed = importlib.import_module("visloupe.core.profiling.embed")

    rng = np.random.default_rng(4)
    images = [Image.fromarray(rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8))
              for h, w in [(9, 7), (12, 12), (9, 7), (5, 20), (12, 12), (9, 7)] * 3]
    whole = pixel_embeddings(images, size=4)
    monkeypatch.setattr(embed, "_PIXEL_BUDGET", 150)
    np.testing.assert_array_equal(pixel_embeddings(images, size=4), whole)
    assert len({row.tobytes() for row in whole}) == len(images)  # every row its own image
