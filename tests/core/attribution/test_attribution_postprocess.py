"""Post-processing identities: channel reductions, percentile clipping, normalising, resizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from visloupe.core.attribution import clip_percentile, normalize, reduce_channels, upsample


def maps(n=3, h=6, w=7, seed=0) -> torch.Tensor:
    return torch.randn(n, h, w, generator=torch.Generator().manual_seed(seed))


def test_reduce_channels():
    a = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(reduce_channels(a, "sum"), a[:, 0] + a[:, 1] + a[:, 2])
    torch.testing.assert_close(reduce_channels(a, "abs_sum"),
                               a[:, 0].abs() + a[:, 1].abs() + a[:, 2].abs())
    torch.testing.assert_close(reduce_channels(a, "max_abs"),
                               torch.maximum(torch.maximum(a[:, 0].abs(), a[:, 1].abs()),
                                             a[:, 2].abs()))
    torch.testing.assert_close(reduce_channels(a, "l2"), torch.linalg.vector_norm(a, dim=1))
    with pytest.raises(ValueError, match=r"how: expected one of \['sum'"):
        reduce_channels(a, "mean")
    with pytest.raises(ValueError, match=r"attr: expected \(N, C, H, W\)"):
        reduce_channels(a[0], "sum")


def test_normalize_unit_and_signed():
    m = maps()
    unit = normalize(m, "unit")
    assert torch.allclose(unit.flatten(1).amin(1), torch.zeros(3))
    assert torch.allclose(unit.flatten(1).amax(1), torch.ones(3))
    # order preserved per map (monotone affine map)
    assert torch.equal(unit.flatten(1).argsort(1), m.flatten(1).argsort(1))
    signed = normalize(m, "signed")
    assert torch.allclose(signed.abs().flatten(1).amax(1), torch.ones(3))
    assert torch.equal(torch.sign(signed), torch.sign(m))
    torch.testing.assert_close(signed * m.abs().flatten(1).amax(1).view(-1, 1, 1), m)
    # per map: scaling one map does not change another's normalisation
    m2 = m.clone()
    m2[0] *= 100
    torch.testing.assert_close(normalize(m2, "signed")[1:], signed[1:])
    # constant maps -> zeros, no NaN; (H, W) in -> (H, W) out
    assert torch.equal(normalize(torch.full((2, 3, 3), 5.0)), torch.zeros(2, 3, 3))
    assert torch.equal(normalize(torch.zeros(3, 3), "signed"), torch.zeros(3, 3))
    assert normalize(m[0]).shape == (6, 7)
    with pytest.raises(ValueError, match="mode: expected 'unit' or 'signed'"):
        normalize(m, "minmax")


def test_clip_percentile_agrees_with_numpy():
    m = maps(seed=2)
    m[0, 0, 0] = 50.0  # an outlier
    clipped = clip_percentile(m, 90)
    for i in range(3):
        p = np.percentile(m[i].abs().numpy(), 90)
        np.testing.assert_allclose(clipped[i].numpy(), np.clip(m[i].numpy(), -p, p), rtol=1e-6)
    assert torch.equal(clip_percentile(m, 100), m)
    positive = m.abs()
    assert (clip_percentile(positive, 50) >= 0).all()
    with pytest.raises(ValueError, match=r"q: expected a percentile in \(0, 100\]"):
        clip_percentile(m, 0)
    with pytest.raises(ValueError, match=r"maps: expected \(N, H, W\)"):
        clip_percentile(torch.zeros(1, 1, 2, 2), 99)
    with pytest.raises(TypeError, match="floating"):
        clip_percentile(torch.zeros(2, 2, dtype=torch.long), 99)


def test_upsample():
    m = maps()
    assert upsample(m, (6, 7)) is m or torch.equal(upsample(m, (6, 7)), m)
    assert upsample(m, (12, 14)).shape == (3, 12, 14)
    assert upsample(m[0], 9).shape == (9, 9)
    assert upsample(m[:, None], (3, 4)).shape == (3, 1, 3, 4)
    const = torch.full((1, 4, 4), 2.5)
    torch.testing.assert_close(upsample(const, (9, 13)), torch.full((1, 9, 13), 2.5))
    # 2x nearest upsampling repeats each cell into a 2x2 block
    up = upsample(m, (12, 14), mode="nearest")
    torch.testing.assert_close(up[:, ::2, ::2], m)
    torch.testing.assert_close(up[:, 1::2, 1::2], m)
    # bilinear (align_corners=False) keeps the mean of a 2x upsampled map
    torch.testing.assert_close(upsample(m, (12, 14)).mean(dim=(1, 2)), m.mean(dim=(1, 2)),
                               rtol=0.05, atol=0.05)
    with pytest.raises(ValueError, match="size: expected"):
        upsample(m, (0, 4))
    with pytest.raises(ValueError, match="mode"):
        upsample(m, 4, mode="bicubic")


@pytest.mark.parametrize(("shape", "size"), [
    ((16, 1, 8, 8), (32, 32)),     # CAM of a 32x32 input
    ((2, 1, 7, 7), (224, 224)),    # ResNet-style 7x7 CAM
    ((3, 2, 13, 9), (37, 50)),     # odd, non-integer factors, two channels
    ((1, 1, 1, 5), (4, 11)),       # a one-row map
    ((2, 1, 6, 6), (6, 13)),       # one side kept
    ((2, 1, 40, 40), (16, 16)),    # reduction (goes through F.interpolate)
    ((2, 1, 9, 40), (20, 16)),     # enlarged one way, reduced the other
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bilinear_upsample_matches_interpolate(shape, size, dtype):
    """The separable matrix form of bilinear enlargement gives F.interpolate's values."""
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    ref = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    got = upsample(x, size)
    assert got.shape == ref.shape and got.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got, ref, rtol=tol, atol=tol)
