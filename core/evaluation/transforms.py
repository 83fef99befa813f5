"""Image transformations of the COSE augmentation space, in torch alone, batched with one
magnitude per sample.

COSE (Daroya, Sun, Maji, "COSE: A Consistency-Sensitivity Metric for Saliency on Image
Classification", ICCV 2023 Workshops) perturbs each test image with a TrivialAugment-Wide-like
space: geometric ops (TranslateX/Y, Rotate, FlipLR/UD) whose saliency maps are brought back into
the original frame by an inverse warp, and photometric ops (Brightness, Color, Contrast,
Sharpness, AutoContrast, Equalize, Blur, Smooth) under which the map should stay the same.

Images are float ``(N, C, H, W)`` in *pixel space* [0, 1] (before the model's normalisation), as
in the official code, so the black fill of geometric ops is 0. Photometric ops reproduce PIL's
``ImageEnhance`` / ``ImageOps`` / ``ImageFilter`` on uint8 images to within 2/255. Geometric ops
use nearest-neighbour sampling for images (as the paper); maps go back with an exact inverse for
flips and translations and a bilinear inverse rotation, plus a mask of the pixels visible in both
frames.

The official code transforms uint8 PIL images, so every transformed pixel it feeds the model is
an 8-bit level. ``apply_transform(..., quantize=True)`` follows it for 8-bit data (see
:func:`is_8bit`): it computes on the levels as PIL does -- degenerate images (grey, mean,
smoothed) as uint8 images first, blends and AutoContrast truncated, filters rounded -- and
returns pixels on the 1/255 grid (pixel-exact against Pillow on the tested images).

Magnitudes follow the paper: 31 bins ``linspace(0, max, 31)``; signed ops take both signs.
Translations are scaled to the image: ``32/224`` of the width (height) at the top bin, applied as
whole pixels (``sign(m) * max(1, trunc(|m|))``, which equals the official ``int(m)`` on 224-pixel
images and never degenerates to a zero shift on small ones).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "GEOMETRIC",
    "N_BINS",
    "PHOTOMETRIC",
    "TRANSFORMS",
    "TRANSLATE_FRACTION",
    "TransformSpec",
    "apply_transform",
    "describe_magnitude",
    "invert_map",
    "is_8bit",
    "magnitude_bins",
    "pixel_shift",
    "quantize_8bit",
    "resolve_transforms",
    "sample_magnitudes",
    "transform_spec",
    "validity_mask",
]

N_BINS = 31
TRANSLATE_FRACTION = 32 / 224


@dataclass(frozen=True)
class TransformSpec:
    """One op of the augmentation space.

    ``kind``: "geometric" or "photometric". ``signed``: magnitudes take both signs (six values per
    image are drawn from the 60 non-zero signed bins); unsigned ops are applied once with no
    magnitude. ``max_magnitude``: the top bin (for translations a fraction of the image side).
    ``masked``: the inverse map has pixels that were outside the transformed image.
    """

    name: str
    kind: str
    signed: bool
    max_magnitude: float | None = None
    unit: str = ""
    masked: bool = False

    @property
    def geometric(self) -> bool:
        return self.kind == "geometric"


_SPECS: dict[str, TransformSpec] = {
    s.name: s
    for s in (
        TransformSpec("TranslateX", "geometric", True, TRANSLATE_FRACTION, "px", True),
        TransformSpec("TranslateY", "geometric", True, TRANSLATE_FRACTION, "px", True),
        TransformSpec("Rotate", "geometric", True, 135.0, "deg", True),
        TransformSpec("FlipLR", "geometric", False),
        TransformSpec("FlipUD", "geometric", False),
        TransformSpec("Brightness", "photometric", True, 0.99, "factor-1"),
        TransformSpec("Color", "photometric", True, 0.99, "factor-1"),
        TransformSpec("Contrast", "photometric", True, 0.99, "factor-1"),
        TransformSpec("Sharpness", "photometric", True, 0.99, "factor-1"),
        TransformSpec("AutoContrast", "photometric", False),
        TransformSpec("Equalize", "photometric", False),
        TransformSpec("Blur", "photometric", False),
        TransformSpec("Smooth", "photometric", False),
    )
}

GEOMETRIC: tuple[str, ...] = ("TranslateX", "TranslateY", "Rotate", "FlipLR", "FlipUD")
PHOTOMETRIC: tuple[str, ...] = ("Brightness", "Color", "Contrast", "Sharpness", "AutoContrast",
                                "Equalize", "Blur", "Smooth")
TRANSFORMS: tuple[str, ...] = GEOMETRIC + PHOTOMETRIC

# PIL's ImageFilter kernels (Blur: 5x5 ring / 16; Smooth: 3x3 centre-weighted / 13).
_BLUR = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1],
                      [1, 1, 1, 1, 1]], dtype=torch.float64) / 16
_SMOOTH = torch.tensor([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=torch.float64) / 13
# ITU-R 601-2 luma, as PIL's convert("L").
_LUMA = (0.299, 0.587, 0.114)
# PIL's fixed-point weights for convert("L") on uint8 images: (R*19595 + G*38470 + B*7471
# + 2**15) >> 16.
_LUMA_FIXED = (19595, 38470, 7471)


def transform_spec(op: str) -> TransformSpec:
    """The ``TransformSpec`` of ``op`` (one of ``TRANSFORMS``)."""
    if isinstance(op, TransformSpec):
        return op
    if not isinstance(op, str) or op not in _SPECS:
        raise ValueError(f"transform: expected one of {list(TRANSFORMS)}, got {op!r}")
    return _SPECS[op]


def resolve_transforms(transforms: str | Sequence[str] | None) -> tuple[str, ...]:
    """None -> all of ``TRANSFORMS``; "geometric"/"photometric" -> that family; else the
    listed op names, validated and de-duplicated in order."""
    if transforms is None:
        return TRANSFORMS
    if isinstance(transforms, str):
        if transforms == "geometric":
            return GEOMETRIC
        if transforms == "photometric":
            return PHOTOMETRIC
        transforms = [transforms]
    if not isinstance(transforms, Sequence) or not transforms:
        raise ValueError(f"transforms: expected None, 'geometric', 'photometric' or a non-empty "
                         f"list of {list(TRANSFORMS)}, got {transforms!r}")
    out: list[str] = []
    for op in transforms:
        name = transform_spec(op).name
        if name not in out:
            out.append(name)
    return tuple(out)


def _side(spec: TransformSpec, size: tuple[int, int] | None) -> int:
    if size is None:
        raise ValueError(f"size: {spec.name} scales its magnitude with the image; pass "
                         "size=(H, W)")
    h, w = size
    return int(w if spec.name == "TranslateX" else h)


def _max_magnitude(spec: TransformSpec, size: tuple[int, int] | None) -> float:
    if spec.max_magnitude is None:
        return 0.0
    if spec.unit == "px":
        return spec.max_magnitude * _side(spec, size)
    return spec.max_magnitude


def magnitude_bins(op: str, size: tuple[int, int] | None = None) -> Tensor:
    """The paper's 31 non-negative bins ``linspace(0, max, 31)`` (float64) of a signed op; an
    empty tensor for unsigned ops. Translations need ``size=(H, W)``."""
    spec = transform_spec(op)
    if not spec.signed:
        return torch.zeros(0, dtype=torch.float64)
    return torch.linspace(0.0, _max_magnitude(spec, size), N_BINS, dtype=torch.float64)


def sample_magnitudes(
    op: str,
    n_images: int,
    k: int,
    *,
    size: tuple[int, int] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``(n_images, k)`` magnitudes: for each image ``k`` draws *without replacement* from the
    60 non-zero signed bins (as the official code's ``np.random.choice(..., replace=False)``).
    Unsigned ops give ``(n_images, 1)`` NaN (applied once, no magnitude)."""
    spec = transform_spec(op)
    if not spec.signed:
        return torch.full((n_images, 1), float("nan"), dtype=torch.float64)
    bins = magnitude_bins(op, size)[1:]
    signed = torch.cat([bins, -bins])
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= signed.numel():
        raise ValueError(f"magnitudes_per_transform: expected an int in [1, {signed.numel()}], "
                         f"got {k!r}")
    rows = [signed[torch.randperm(signed.numel(), generator=generator)[:k]]
            for _ in range(n_images)]
    return torch.stack(rows) if rows else torch.zeros(0, k, dtype=torch.float64)


# --------------------------------------------------------------------------- validation


def _check_images(images: Any) -> Tensor:
    if not isinstance(images, Tensor) or not images.is_floating_point() or images.dim() != 4:
        got = (f"{images.dtype} tensor of shape {tuple(images.shape)}"
               if isinstance(images, Tensor) else type(images).__name__)
        raise ValueError(f"images: expected a float tensor (N, C, H, W) in [0, 1], got {got}")
    if images.numel() and (images.min() < -1e-6 or images.max() > 1 + 1e-6):
        raise ValueError(
            f"images: expected pixel values in [0, 1] (transforms act before the model's "
            f"normalisation), got range [{float(images.min()):.3g}, {float(images.max()):.3g}]"
        )
    return images


def _magnitudes(spec: TransformSpec, magnitude: Any, n: int, size: tuple[int, int],
                device: torch.device) -> Tensor:
    """Per-sample magnitudes ``(n,)`` float64, checked against the op's range."""
    if not spec.signed:
        return torch.zeros(n, dtype=torch.float64, device=device)
    if magnitude is None:
        raise ValueError(f"magnitude: {spec.name} needs a magnitude (number or (N,) tensor)")
    m = torch.as_tensor(magnitude, dtype=torch.float64).to(device).reshape(-1)
    if m.numel() == 1:
        m = m.expand(n)
    if m.numel() != n:
        raise ValueError(f"magnitude: expected a number or one value per image ({n}), "
                         f"got {m.numel()}")
    top = _max_magnitude(spec, size)
    if not torch.isfinite(m).all() or (m.abs() > top * (1 + 1e-9) + 1e-12).any():
        raise ValueError(f"magnitude: {spec.name} expects values in [-{top:.4g}, {top:.4g}] "
                         f"({spec.unit}), got {m.tolist()}")
    return m


def pixel_shift(m: Tensor) -> Tensor:
    """Whole-pixel shifts of Translate magnitudes ``m``: ``sign(m) * max(1, trunc(|m|))`` (0
    stays 0) -- what ``apply_transform`` moves the image by, for code that inverts it."""
    mag = m.abs().trunc().clamp_min(1.0)
    return torch.where(m == 0, torch.zeros_like(m), torch.sign(m) * mag)


# --------------------------------------------------------------------------- geometry


def _theta(spec: TransformSpec, m: Tensor, size: tuple[int, int], inverse: bool) -> Tensor:
    """``(n, 2, 3)`` affine_grid matrices (output -> input sampling, ``align_corners=False``).

    Translation by (dx, dy) pixels moves the content right/down; rotation by ``a`` degrees is
    counter-clockwise on screen (torchvision and skimage agree on that sign); the aspect ratio
    is corrected so non-square images rotate rigidly."""
    h, w = size
    n = m.shape[0]
    theta = torch.zeros(n, 2, 3, dtype=torch.float64, device=m.device)
    sign = -1.0 if inverse else 1.0
    if spec.name in ("TranslateX", "TranslateY"):
        shift = pixel_shift(m) * sign
        theta[:, 0, 0] = 1.0
        theta[:, 1, 1] = 1.0
        if spec.name == "TranslateX":
            theta[:, 0, 2] = -2.0 * shift / w
        else:
            theta[:, 1, 2] = -2.0 * shift / h
    else:  # Rotate
        a = torch.deg2rad(m * sign)
        c, s = torch.cos(a), torch.sin(a)
        theta[:, 0, 0] = c
        theta[:, 0, 1] = -s * h / w
        theta[:, 1, 0] = s * w / h
        theta[:, 1, 1] = c
    return theta


def _warp(x: Tensor, theta: Tensor, mode: str) -> Tensor:
    """Sample ``x (n, C, H, W)`` through ``theta`` with zero fill."""
    grid = F.affine_grid(theta.to(torch.float64), list(x.shape), align_corners=False)
    out = F.grid_sample(x.to(torch.float64), grid, mode=mode, padding_mode="zeros",
                        align_corners=False)
    return out.to(x.dtype)


def _flip(spec: TransformSpec, x: Tensor) -> Tensor:
    return torch.flip(x, dims=(-1,) if spec.name == "FlipLR" else (-2,))


# --------------------------------------------------------------------------- photometry


def _gray(x: Tensor) -> Tensor:
    """Luma ``(n, 1, H, W)`` as PIL's convert("L") (RGB) or the image itself (one channel)."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"images: Color/Contrast expect 1 or 3 channels, got {x.shape[1]}")
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def _filter(x: Tensor, kernel: Tensor) -> Tensor:
    """PIL-style ``ImageFilter.Kernel``: correlate inside, keep the border pixels unchanged."""
    k = kernel.shape[-1]
    r = k // 2
    n, c, h, w = x.shape
    if h < k or w < k:
        return x.clone()
    weight = kernel.to(x).view(1, 1, k, k).expand(c, 1, k, k)
    inner = F.conv2d(x, weight, groups=c)
    out = x.clone()
    out[:, :, r:h - r, r:w - r] = inner
    return out


def _blend(degenerate: Tensor, x: Tensor, factor: Tensor) -> Tensor:
    """PIL's ``Image.blend(degenerate, x, factor)`` clipped to [0, 1]."""
    f = factor.to(x).view(-1, 1, 1, 1)
    return (degenerate + f * (x - degenerate)).clamp(0.0, 1.0)


def _autocontrast(x: Tensor) -> Tensor:
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    ok = span > 0.5 / 255
    return torch.where(ok, (x - lo) / span.clamp_min(1e-12), x).clamp(0.0, 1.0)


def _equalize(x: Tensor) -> Tensor:
    """PIL's ``ImageOps.equalize`` per channel on the uint8-quantised image (exact LUT)."""
    n, c, h, w = x.shape
    q = (x * 255).round().clamp(0, 255).long().reshape(n * c, h * w)
    hist = torch.zeros(n * c, 256, dtype=torch.long, device=x.device)
    hist.scatter_add_(1, q, torch.ones_like(q))
    nonzero = hist > 0
    n_levels = nonzero.sum(dim=1)
    last_level = torch.where(nonzero, torch.arange(256, device=x.device), -1).amax(dim=1)
    last_count = hist.gather(1, last_level.clamp_min(0).view(-1, 1)).squeeze(1)
    step = (h * w - last_count) // 255
    identity = (n_levels <= 1) | (step == 0)
    safe = step.clamp_min(1).view(-1, 1)
    before = torch.cumsum(hist, dim=1) - hist  # pixels strictly below each level
    lut = ((safe // 2 + before) // safe).clamp(max=255)
    lut = torch.where(identity.view(-1, 1), torch.arange(256, device=x.device), lut)
    out = lut.gather(1, q).to(x.dtype) / 255
    return out.reshape(n, c, h, w)


def _photometric(spec: TransformSpec, x: Tensor, m: Tensor) -> Tensor:
    factor = 1.0 + m
    name = spec.name
    if name == "Brightness":
        return _blend(torch.zeros_like(x), x, factor)
    if name == "Color":
        return _blend(_gray(x).expand_as(x), x, factor)
    if name == "Contrast":
        mean = (_gray(x).mean(dim=(1, 2, 3), keepdim=True) * 255).round() / 255
        return _blend(mean.expand_as(x), x, factor)
    if name == "Sharpness":
        return _blend(_filter(x, _SMOOTH), x, factor)
    if name == "AutoContrast":
        return _autocontrast(x)
    if name == "Equalize":
        return _equalize(x)
    if name == "Blur":
        return _filter(x, _BLUR)
    if name == "Smooth":
        return _filter(x, _SMOOTH)
    raise AssertionError(name)


# --------------------------------------------------------------------------- 8-bit images


def quantize_8bit(images: Tensor) -> Tensor:
    """Pixels in [0, 1] rounded to the nearest 8-bit level ``k / 255`` (same dtype)."""
    return (images * 255).round().clamp(0, 255) / 255


def is_8bit(images: Tensor, tol: float = 1e-3) -> bool:
    """Whether every pixel of ``images`` (in [0, 1]) lies on the 1/255 grid within ``tol``
    levels: the images are 8-bit data (read from uint8 images and not resampled in float)."""
    if not isinstance(images, Tensor) or not images.is_floating_point():
        raise TypeError(f"images: expected a float tensor, got {type(images).__name__}")
    if not images.numel():
        return False
    flat = images.detach().reshape(-1)
    dtype = torch.promote_types(flat.dtype, torch.float32)  # half cannot hold k / 255 exactly
    for start in range(0, flat.numel(), 1 << 22):  # bounded memory on large data sets
        levels = flat[start:start + (1 << 22)].to(dtype) * 255
        if not bool(((levels - levels.round()).abs() <= tol).all()):
            return False
    return True


def _blend_8bit(degenerate: Tensor, levels: Tensor, factor: Tensor) -> Tensor:
    """PIL's uint8 ``Image.blend``: ``d + f (x - d)`` in C float (float32) arithmetic, clipped
    to [0, 255] and truncated."""
    f = factor.to(torch.float32).view(-1, 1, 1, 1)
    d = degenerate.to(torch.float32)
    out = d + f * (levels.to(torch.float32) - d)
    return out.clamp(0, 255).floor().to(levels.dtype)


def _gray_8bit(levels: Tensor) -> Tensor:
    """PIL's uint8 ``convert("L")`` (fixed-point luma, rounded) or the image itself."""
    if levels.shape[1] == 1:
        return levels
    if levels.shape[1] != 3:
        raise ValueError(f"images: Color/Contrast expect 1 or 3 channels, got {levels.shape[1]}")
    w = torch.tensor(_LUMA_FIXED, dtype=levels.dtype, device=levels.device).view(1, 3, 1, 1)
    return torch.floor(((levels * w).sum(dim=1, keepdim=True) + 2 ** 15) / 2 ** 16)


def _filter_8bit(levels: Tensor, kernel: Tensor) -> Tensor:
    """PIL's uint8 ``ImageFilter.Kernel``: the correlation rounded half up, borders kept."""
    return _filter(levels, kernel).add(0.5).floor().clamp(0, 255)


def _photometric_8bit(spec: TransformSpec, levels: Tensor, m: Tensor) -> Tensor:
    """``_photometric`` on 8-bit levels (float64 integers in [0, 255]) with PIL's uint8
    arithmetic; returns levels."""
    factor = 1.0 + m
    name = spec.name
    if name == "Brightness":
        return _blend_8bit(torch.zeros_like(levels), levels, factor)
    if name == "Color":
        return _blend_8bit(_gray_8bit(levels).expand_as(levels), levels, factor)
    if name == "Contrast":
        mean = torch.floor(_gray_8bit(levels).mean(dim=(1, 2, 3), keepdim=True) + 0.5)
        return _blend_8bit(mean.expand_as(levels), levels, factor)
    if name == "Sharpness":
        return _blend_8bit(_filter_8bit(levels, _SMOOTH), levels, factor)
    if name == "AutoContrast":  # ImageOps.autocontrast's LUT: int(v * scale + offset)
        lo = levels.amin(dim=(2, 3), keepdim=True)
        hi = levels.amax(dim=(2, 3), keepdim=True)
        scale = 255.0 / (hi - lo).clamp_min(1.0)
        out = (levels * scale - lo * scale).floor().clamp(0, 255)
        return torch.where(hi > lo, out, levels)
    if name == "Equalize":
        return (_equalize(levels / 255) * 255).round()
    if name == "Blur":
        return _filter_8bit(levels, _BLUR)
    if name == "Smooth":
        return _filter_8bit(levels, _SMOOTH)
    raise AssertionError(name)


# --------------------------------------------------------------------------- public API


def apply_transform(op: str, images: Tensor, magnitude: Any = None, *,
                    quantize: bool = False) -> Tensor:
    """``op`` applied to pixel-space ``images (N, C, H, W)`` in [0, 1] with ``magnitude`` a
    number or ``(N,)`` tensor (one per image; ignored by unsigned ops). Geometric ops sample
    nearest-neighbour with black (0) fill; photometric ops follow PIL (factor = 1 + magnitude).

    ``quantize=True`` treats the images as 8-bit (they are rounded to the 1/255 grid first) and
    computes as PIL does on uint8 images, as the official COSE code does: the result lies on
    the 1/255 grid. The output keeps the images' dtype.
    """
    spec = transform_spec(op)
    x = _check_images(images)
    if not isinstance(quantize, bool):
        raise TypeError(f"quantize: expected a bool, got {quantize!r}")
    n, _, h, w = x.shape
    m = _magnitudes(spec, magnitude, n, (h, w), x.device)
    if quantize:
        x = quantize_8bit(x)
    if spec.name in ("FlipLR", "FlipUD"):
        return _flip(spec, x)
    if spec.geometric:  # nearest sampling with black fill keeps 8-bit levels
        return _warp(x, _theta(spec, m, (h, w), inverse=False), "nearest")
    if quantize:
        levels = (x.to(torch.float64) * 255).round()
        return (_photometric_8bit(spec, levels, m) / 255).to(x.dtype)
    return _photometric(spec, x, m)


def _check_maps(maps: Any) -> Tensor:
    if not isinstance(maps, Tensor) or maps.dim() != 3 or not maps.is_floating_point():
        got = (f"{maps.dtype} tensor of shape {tuple(maps.shape)}"
               if isinstance(maps, Tensor) else type(maps).__name__)
        raise ValueError(f"maps: expected a float tensor (N, H, W), got {got}")
    return maps


def invert_map(op: str, maps: Tensor, magnitude: Any = None) -> Tensor:
    """Saliency ``maps (N, H, W)`` of transformed images brought back into the original frame:
    exact for flips and (whole-pixel) translations, bilinear for rotations, 0 outside. Photometric
    ops leave the frame unchanged (the map is returned as is)."""
    spec = transform_spec(op)
    s = _check_maps(maps)
    n, h, w = s.shape
    m = _magnitudes(spec, magnitude, n, (h, w), s.device)
    if spec.name in ("FlipLR", "FlipUD"):
        return _flip(spec, s)
    if not spec.geometric:
        return s
    mode = "nearest" if spec.name != "Rotate" else "bilinear"
    return _warp(s[:, None], _theta(spec, m, (h, w), inverse=True), mode)[:, 0]


def validity_mask(op: str, shape: tuple[int, int, int], magnitude: Any = None,
                  device: torch.device | str | None = None) -> Tensor:
    """Bool ``(N, H, W)``: pixels of the original frame that were inside the transformed image,
    i.e. ``invert_map(op, forward(ones)) > 0`` as the official code builds it. All True for
    flips and photometric ops."""
    spec = transform_spec(op)
    n, h, w = (int(v) for v in shape)
    if not spec.masked:
        return torch.ones(n, h, w, dtype=torch.bool, device=device)
    m = _magnitudes(spec, magnitude, n, (h, w), torch.device(device or "cpu"))
    ones = torch.ones(n, 1, h, w, dtype=torch.float64, device=m.device)
    fwd = _warp(ones, _theta(spec, m, (h, w), inverse=False), "nearest")
    mode = "nearest" if spec.name != "Rotate" else "bilinear"
    back = _warp(fwd, _theta(spec, m, (h, w), inverse=True), mode)
    return back[:, 0] > 0


def describe_magnitude(op: str, magnitude: float, size: tuple[int, int] | None = None) -> str:
    """Human-readable magnitude, e.g. ``"+3 px"``, ``"-45.0°"``, ``"factor 1.50"``."""
    spec = transform_spec(op)
    if not spec.signed or magnitude is None or (isinstance(magnitude, float)
                                                and math.isnan(magnitude)):
        return "-"
    if spec.unit == "px":
        shift = int(pixel_shift(torch.tensor([float(magnitude)]))[0])
        return f"{shift:+d} px"
    if spec.unit == "deg":
        return f"{float(magnitude):+.1f}°"
    return f"factor {1 + float(magnitude):.2f}"
