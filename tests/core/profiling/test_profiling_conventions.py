"""Dataset-view conventions on hand-computed values: BT.601 luma, population contrast, Hasler &
Süsstrunk's colourfulness on 0..255, the 4-neighbour Laplacian variance, class means, and PCA
scores of centred embeddings (Alsallakh et al., arXiv:2204.08601, fix no formulas of their own)."""

from __future__ import annotations

import math

import datasets
import numpy as np
import pytest
from PIL import Image
from visloupe.core.profiling import class_means, image_stats, project

pytestmark = pytest.mark.usefixtures("one_thread")


def test_brightness_contrast_colourfulness_by_hand() -> None:
    img = Image.fromarray(np.array([[[255, 0, 0], [0, 0, 0]]], dtype=np.uint8))  # red, black
    s = image_stats(img)
    assert s["brightness"] == pytest.approx(0.299 / 2, rel=1e-6)   # mean of BT.601 luma
    assert s["contrast"] == pytest.approx(0.299 / 2, rel=1e-6)     # population std (ddof 0)
    # rg = (255, 0), yb = (127.5, 0): std and mean both (127.5, 63.75) -> 63.75 sqrt(5) each
    assert s["colourfulness"] == pytest.approx(1.3 * 63.75 * math.sqrt(5), rel=1e-6)


def test_sharpness_is_the_variance_of_the_four_neighbour_laplacian() -> None:
    grey = np.zeros((3, 4), dtype=np.uint8)
    grey[1, 1] = 255
    s = image_stats(Image.fromarray(grey))
    # interior pixels (1, 1) and (1, 2): Laplacians -4 * 255 and +255; variance 637.5²
    assert s["sharpness"] == pytest.approx(637.5 ** 2, rel=1e-5)


def test_class_means_average_rgb_in_unit_range() -> None:
    images = [Image.new("RGB", (2, 2), c) for c in ((0, 0, 0), (255, 255, 255), (255, 0, 0))]
    ds = datasets.Dataset.from_dict(
        {"image": images, "label": [0, 0, 1]},
        features=datasets.Features({"image": datasets.Image(),
                                    "label": datasets.ClassLabel(names=["a", "b"])}))
    means = class_means(ds, size=2)
    np.testing.assert_allclose(means[0], np.full((2, 2, 3), 0.5), rtol=0, atol=1e-6)
    np.testing.assert_allclose(means[1][..., 0], 1.0, atol=1e-6)


def test_pca_projection_is_unscaled_scores_of_centred_data() -> None:
    x = np.array([[1.0, -2.0], [-1.0, 2.0], [3.0, -6.0]])
    # mean (1, -2), centred rows (0, 0), (-2, 4), (2, -4); the leading direction signed so its
    # largest loading is positive is (-1, 2)/sqrt(5): scores 0, 2 sqrt(5), -2 sqrt(5) (not
    # whitened, not scaled to unit variance)
    xy = project(x, "pca")
    np.testing.assert_allclose(xy[:, 0], [0.0, 2 * math.sqrt(5), -2 * math.sqrt(5)],
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose(xy[:, 1], 0.0, atol=1e-5)
