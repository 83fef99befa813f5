"""SSIM with COSE's conventions: equality with scikit-image (masked and unmasked), identities."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from visloupe.core.evaluation.ssim import ssim, ssim_map
from visloupe.core.evaluation.transforms import validity_mask


def _erode_like_skimage(mask: np.ndarray, win: int) -> np.ndarray:
    # skimage.morphology.binary_erosion(mask, np.ones((win, win))): border counted valid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from skimage.morphology import binary_erosion

        return binary_erosion(mask, footprint=np.ones((win, win), dtype=bool))


def _pairs(seed: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random((h, w))
    b = 0.6 * a + 0.4 * rng.random((h, w)) * (1 + seed)  # correlated, other range
    return a, b


@pytest.mark.parametrize("shape", [(16, 16), (13, 22), (32, 32)])
@pytest.mark.parametrize("win", [5, 7])
def test_unmasked_equals_skimage(shape: tuple[int, int], win: int) -> None:
    for seed in range(3):
        a, b = _pairs(seed, *shape)
        r = max(np.ptp(a), np.ptp(b))
        ref, ref_map = structural_similarity(a, b, win_size=win, data_range=r, full=True)
        assert float(ssim(torch.tensor(a), torch.tensor(b), win)) == pytest.approx(ref, abs=1e-6)
        np.testing.assert_allclose(ssim_map(torch.tensor(a), torch.tensor(b), win)[0].numpy(),
                                   ref_map, atol=1e-6)


@pytest.mark.parametrize("op,mag", [("Rotate", 31.5), ("Rotate", -121.5), ("TranslateX", 2.0),
                                    ("TranslateY", -2.0)])
def test_masked_equals_skimage_over_eroded_mask(op: str, mag: float) -> None:
    h, w = 20, 24
    mask = validity_mask(op, (1, h, w), mag)[0].numpy()
    for seed in range(3):
        a, b = _pairs(seed, h, w)
        r = max(np.ptp(a), np.ptp(b))
        _, full = structural_similarity(a, b, win_size=5, data_range=r, full=True)
        ref = full[_erode_like_skimage(mask, 5)].mean()
        ours = ssim(torch.tensor(a), torch.tensor(b), 5, valid=torch.tensor(mask))
        assert float(ours) == pytest.approx(ref, abs=1e-6)


def test_border_of_the_image_is_not_eroded() -> None:
    a, b = _pairs(0, 12, 12)
    everything = torch.ones(12, 12, dtype=torch.bool)
    full = ssim_map(torch.tensor(a), torch.tensor(b))[0]
    assert float(ssim(torch.tensor(a), torch.tensor(b), valid=everything)) == \
        pytest.approx(float(full.mean()), abs=1e-12)


def test_identities_and_batching() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(4, 16, 16, generator=g, dtype=torch.float64)
    b = torch.rand(4, 16, 16, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ssim(a, a), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(ssim(a, b), ssim(b, a))
    torch.testing.assert_close(ssim(3 * a, 3 * b), ssim(a, b))  # common rescale
    assert not torch.allclose(ssim(a + 5, b + 5), ssim(a, b))  # luminance term moves
    one_by_one = torch.stack([ssim(a[i], b[i]) for i in range(4)])
    torch.testing.assert_close(ssim(a, b), one_by_one)
    assert (ssim(a, b) < 0.5).all()


def test_constant_maps_give_numbers_not_nan() -> None:
    c = torch.full((10, 10), 0.5)
    assert float(ssim(c, c)) == pytest.approx(1.0)
    assert float(ssim(torch.zeros(10, 10), torch.zeros(10, 10))) == pytest.approx(1.0)
    other = float(ssim(c, torch.full((10, 10), 1.0)))
    assert np.isfinite(other) and other < 1
    noisy = float(ssim(c, torch.rand(10, 10, generator=torch.Generator().manual_seed(0))))
    assert np.isfinite(noisy) and noisy < 0.1


def test_empty_eroded_mask_gives_nan() -> None:
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask[5, 5] = True
    assert torch.isnan(ssim(torch.rand(10, 10), torch.rand(10, 10), valid=mask))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="b: expected the shape"):
        ssim(torch.rand(8, 8), torch.rand(8, 9))
    with pytest.raises(ValueError, match="win_size"):
        ssim(torch.rand(8, 8), torch.rand(8, 8), win_size=4)
    with pytest.raises(ValueError, match="win_size"):
        ssim(torch.rand(4, 4), torch.rand(4, 4), win_size=5)
    with pytest.raises(ValueError, match="a: expected finite"):
        ssim(torch.full((8, 8), float("nan")), torch.rand(8, 8))
    with pytest.raises(ValueError, match="valid"):
        ssim(torch.rand(8, 8), torch.rand(8, 8), valid=torch.ones(7, 8, dtype=torch.bool))
