"""COSE's augmentation space in torch: geometry identities, inverses and masks against the official
code's scikit-image construction, photometric ops against PIL."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.pil_ops import PIL_OPS
from PIL import Image
from skimage.transform import AffineTransform, rotate, warp
from visloupe.core.evaluation.transforms import (
    GEOMETRIC,
    N_BINS,
    PHOTOMETRIC,
    TRANSFORMS,
    apply_transform,
    invert_map,
    magnitude_bins,
    resolve_transforms,
    sample_magnitudes,
    validity_mask,
)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_families_partition_the_space() -> None:
    assert set(GEOMETRIC) | set(PHOTOMETRIC) == set(TRANSFORMS)
    assert not set(GEOMETRIC) & set(PHOTOMETRIC)
    assert len(TRANSFORMS) == 13
    assert resolve_transforms("geometric") == GEOMETRIC
    assert resolve_transforms(["Rotate", "Rotate", "Blur"]) == ("Rotate", "Blur")


@pytest.mark.parametrize("k", [1, -1])
def test_rotate_multiples_of_90_equal_rot90(k: int) -> None:
    x = _rand(2, 3, 9, 9)
    out = apply_transform("Rotate", x, 90.0 * k)
    assert torch.equal(out, torch.rot90(x, k, dims=(-2, -1)))


def test_rotate_keeps_non_square_images_rigid() -> None:
    # a 90° turn of an 8x12 image shows the central 8x8 block rotated, black on the sides
    x = _rand(1, 1, 8, 12)
    out = apply_transform("Rotate", x, 90.0)[0, 0]
    assert torch.equal(out[:, 2:10], torch.rot90(x[0, 0, :, 2:10], 1))
    assert (out[:, :2] == 0).all() and (out[:, 10:] == 0).all()


def test_flips_are_involutions_and_exact() -> None:
    x = _rand(3, 3, 7, 10)
    for op, dim in (("FlipLR", -1), ("FlipUD", -2)):
        once = apply_transform(op, x)
        assert torch.equal(once, torch.flip(x, dims=(dim,)))
        assert torch.equal(apply_transform(op, once), x)
        assert torch.equal(invert_map(op, once[:, 0]), x[:, 0])
        assert validity_mask(op, (3, 7, 10)).all()


@pytest.mark.parametrize("op", ["TranslateX", "TranslateY"])
def test_translation_is_a_roll_with_black_band_and_exact_inverse(op: str) -> None:
    n, h, w = 4, 14, 20
    x = _rand(n, 3, h, w)
    top = float(magnitude_bins(op, (h, w))[-1])
    mags = torch.tensor([top, -top, 1.0, -0.2], dtype=torch.float64)
    shifts = [int(top), -int(top), 1, -1]  # trunc, at least one pixel
    out = apply_transform(op, x, mags)
    dim = -1 if op == "TranslateX" else -2
    side = w if op == "TranslateX" else h
    for i, s in enumerate(shifts):
        rolled = torch.roll(x[i], s, dims=dim)
        band = torch.zeros(side, dtype=torch.bool)
        band[:s] = True if s > 0 else band[:s]
        if s < 0:
            band[s:] = True
        keep = ~band.view(1, -1) if dim == -1 else ~band.view(-1, 1)
        assert torch.equal(out[i] * keep, rolled * keep)
        assert (out[i][:, ~keep.expand(h, w)] == 0).all()
    maps = x[:, 0]
    back = invert_map(op, apply_transform(op, maps[:, None], mags)[:, 0], mags)
    valid = validity_mask(op, (n, h, w), mags)
    assert torch.equal(back[valid], maps[valid])
    other = h if op == "TranslateX" else w
    assert valid.sum(dim=(1, 2)).tolist() == [(side - abs(s)) * other for s in shifts]


@pytest.mark.parametrize("op", ["TranslateX", "TranslateY"])
def test_translation_inverse_matches_official_skimage_warp(op: str) -> None:
    maps = _rand(2, 24, 24, seed=1)
    for mag in (2.0, -3.0):
        ours = invert_map(op, maps, mag).numpy()
        shift = [-int(mag), 0] if op == "TranslateX" else [0, -int(mag)]
        ref = np.stack([warp(s.numpy(), AffineTransform(translation=shift).inverse,
                             mode="constant", cval=0) for s in maps])
        np.testing.assert_allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize("angle", [4.5, -58.5, 135.0])
def test_rotation_inverse_and_mask_match_official_skimage(angle: float) -> None:
    maps = _rand(2, 16, 20, seed=2)
    ours = invert_map("Rotate", maps, angle).numpy()
    ref = np.stack([rotate(s.numpy(), -angle, resize=False, mode="constant", cval=0, order=1)
                    for s in maps])
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    # official mask: push ones through the forward op, then warp back, then astype(bool)
    ones = apply_transform("Rotate", torch.ones(2, 1, 16, 20, dtype=torch.float64), angle)[:, 0]
    ref_mask = np.stack([rotate(o.numpy(), -angle, resize=False, mode="constant", cval=0,
                                order=1).astype(bool) for o in ones])
    assert np.array_equal(validity_mask("Rotate", (2, 16, 20), angle).numpy(), ref_mask)


def test_rotation_round_trip_is_identity_where_exact() -> None:
    # transform∘inverse is the identity on the valid region for quarter turns
    maps = _rand(2, 12, 12, seed=3)
    for a in (90.0, -90.0):
        back = invert_map("Rotate", apply_transform("Rotate", maps[:, None], a)[:, 0], a)
        valid = validity_mask("Rotate", (2, 12, 12), a)
        assert valid.all()
        torch.testing.assert_close(back[valid], maps[valid], atol=1e-12, rtol=0)


@pytest.mark.parametrize("op", ["Brightness", "Color", "Contrast", "Sharpness"])
def test_photometric_factor_one_is_identity(op: str) -> None:
    x = _rand(2, 3, 10, 11)
    torch.testing.assert_close(apply_transform(op, x, 0.0), x, atol=1e-12, rtol=0)


def _pil_image(seed: int, mode: str) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = (rng.random((21, 26, 3)) * 180 + 30).astype(np.uint8)
    arr[4:12, 6:15] = [240, 20, 90]  # a saturated object with edges
    img = Image.fromarray(arr)
    return img.convert(mode)


def _ours(op: str, img: Image.Image, mag: float | None) -> np.ndarray:
    arr = np.asarray(img, dtype=np.float64)
    arr = arr[..., None] if arr.ndim == 2 else arr
    x = torch.from_numpy(arr).permute(2, 0, 1)[None] / 255
    out = apply_transform(op, x, mag)[0].permute(1, 2, 0).numpy()
    return np.round(out * 255).astype(int).squeeze()




@pytest.mark.parametrize("op", PHOTOMETRIC)
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_photometric_ops_agree_with_pil_within_2_levels(op: str, mode: str) -> None:
    img = _pil_image(0, mode)
    mags = [-0.99, -0.4, 0.33, 0.99] if op in _SIGNED else [None]
    for m in mags:
        ref = np.asarray(PIL_OPS[op](img, None if m is None else 1 + m)).astype(int)
        diff = np.abs(_ours(op, img, m) - ref)
        assert diff.max() <= 2, (op, mode, m, diff.max())


_SIGNED = {"Brightness", "Color", "Contrast", "Sharpness"}


def test_autocontrast_is_idempotent_and_equalize_is_quantised() -> None:
    x = _rand(2, 3, 12, 12) * 0.5 + 0.2
    once = apply_transform("AutoContrast", x)
    assert once.amin(dim=(2, 3)).max() == 0 and once.amax(dim=(2, 3)).min() == 1
    torch.testing.assert_close(apply_transform("AutoContrast", once), once)
    eq = apply_transform("Equalize", x)
    torch.testing.assert_close(eq * 255, (eq * 255).round(), atol=1e-9, rtol=0)


def test_magnitude_bins_follow_the_paper() -> None:
    rot = magnitude_bins("Rotate")
    assert rot.numel() == N_BINS and rot[0] == 0 and rot[-1] == 135 and rot[1] == 4.5
    assert float(magnitude_bins("TranslateX", (224, 224))[-1]) == pytest.approx(32)
    assert float(magnitude_bins("TranslateY", (64, 32))[-1]) == pytest.approx(64 * 32 / 224)
    assert float(magnitude_bins("Contrast")[-1]) == pytest.approx(0.99)
    assert magnitude_bins("FlipLR").numel() == 0


def test_sampling_without_replacement_is_seeded() -> None:
    g = torch.Generator().manual_seed(0)
    m = sample_magnitudes("Rotate", 50, 6, generator=g)
    assert m.shape == (50, 6)
    assert all(len(set(row.tolist())) == 6 for row in m)
    assert (m != 0).all() and (m > 0).any() and (m < 0).any()
    allowed = set(torch.cat([magnitude_bins("Rotate")[1:], -magnitude_bins("Rotate")[1:]])
                  .tolist())
    assert set(m.flatten().tolist()) <= allowed
    again = sample_magnitudes("Rotate", 50, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m, again)
    assert sample_magnitudes("Blur", 3, 6).shape == (3, 1)
    full = sample_magnitudes("Rotate", 2, 60, generator=g)
    assert all(len(set(row.tolist())) == 60 for row in full)


def test_bad_input_raises_naming_the_argument() -> None:
    x = _rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="transform"):
        apply_transform("Shear", x, 1.0)
    with pytest.raises(ValueError, match="magnitude"):
        apply_transform("Rotate", x, 200.0)
    with pytest.raises(ValueError, match="magnitude"):
        apply_transform("Rotate", x)
    with pytest.raises(ValueError, match="images"):
        apply_transform("Blur", x * 3)
    with pytest.raises(ValueError, match="maps"):
        invert_map("Rotate", x, 10.0)
    with pytest.raises(ValueError, match="magnitudes_per_transform"):
        sample_magnitudes("Rotate", 2, 61)
