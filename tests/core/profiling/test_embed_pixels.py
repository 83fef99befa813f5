"""Pixel embeddings, the dataset map's space without a model (moved from the widget, issue 14)."""

from __future__ import annotations

import numpy as np
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
