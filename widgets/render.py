"""Fast display helpers shared by the widgets: saliency overlays, image grids and PNG bytes.

Everything here is numpy + PIL so that a widget can re-render a view on every slider tick
(tens of milliseconds) without creating matplotlib figures. Colormaps come from matplotlib's
colormap registry (``matplotlib.colormaps``), sampled once into a 256-entry lookup table; pyplot is
never imported.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MODES = ("blend", "heatmap", "masked")
"""Overlay modes: colormap blended over the image, colormap only, or the image dimmed by the map."""

ImageLike = Image.Image | np.ndarray


def to_rgb_array(img: ImageLike) -> np.ndarray:
    """Return ``img`` as a uint8 ``(H, W, 3)`` array; grayscale, RGBA, palette and float inputs
    are converted for display (RGBA is composited on white, floats in [0, 1] are scaled)."""
    if isinstance(img, Image.Image):
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
        return np.asarray(img.convert("RGB"))
    if not isinstance(img, np.ndarray):
        raise TypeError(f"img: expected a PIL.Image or a numpy array, got {type(img).__name__}")
    arr = img
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.nan_to_num(arr) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        elif arr.dtype == bool:
            arr = arr.astype(np.uint8) * np.uint8(255)
        elif np.issubdtype(arr.dtype, np.integer):
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        else:
            raise TypeError(f"img: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return arr
    if arr.ndim == 3 and arr.shape[2] == 4:
        return to_rgb_array(Image.fromarray(np.ascontiguousarray(arr), "RGBA"))
    raise ValueError(f"img: expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {arr.shape}")


def to_png(img: ImageLike, compress_level: int = 1) -> bytes:
    """Encode ``img`` (PIL image or uint8 array) as PNG bytes for ``ipywidgets.Image``.

    ``compress_level=1`` trades a little size for speed: widgets re-encode on every slider move.
    """
    pil = img if isinstance(img, Image.Image) else Image.fromarray(to_rgb_array(img))
    buf = io.BytesIO()
    pil.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def from_png(data: bytes) -> Image.Image:
    """Decode PNG bytes (the inverse of :func:`to_png`); used by tests and exports."""
    return Image.open(io.BytesIO(data)).convert("RGB")


@lru_cache(maxsize=64)
def colormap_lut(name: str) -> np.ndarray:
    """A ``(256, 3)`` uint8 lookup table sampled from matplotlib's colormap ``name``."""
    import matplotlib  # the registry only; no pyplot, no figures

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"cmap: unknown matplotlib colormap {name!r}") from None
    lut = (cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def resize_map(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize a float map ``(h, w)`` to ``size = (H, W)`` (display upsampling)."""
    sal = np.asarray(saliency, dtype=np.float32)
    if sal.shape == tuple(size):
        return sal
    pil = Image.fromarray(np.ascontiguousarray(sal), mode="F")
    return np.asarray(pil.resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32)


def scale_map(saliency: np.ndarray, signed: bool, vmax: float | None = None) -> np.ndarray:
    """Map a saliency array to [0, 1] for a colormap.

    ``signed=True`` keeps the sign: ``0.5 + s / (2 vmax)`` (so zero sits mid-colormap, use a
    diverging map); otherwise ``|s| / vmax``. ``vmax`` defaults to ``max |s|``.
    """
    sal = np.nan_to_num(np.asarray(saliency, dtype=np.float32))
    mag = np.abs(sal)
    top = float(mag.max()) if vmax is None else float(vmax)
    if top <= 0.0 or not np.isfinite(top):
        return np.full(sal.shape, 0.5 if signed else 0.0, dtype=np.float32)
    if signed:
        return np.clip(0.5 + sal / (2.0 * top), 0.0, 1.0)
    return np.clip(mag / top, 0.0, 1.0)


def overlay(
    image_rgb: ImageLike,
    saliency: np.ndarray,
    alpha: float = 0.5,
    cmap: str = "inferno",
    mode: str = "blend",
    signed: bool = False,
    vmax: float | None = None,
) -> np.ndarray:
    """Draw ``saliency (h, w)`` over ``image_rgb (H, W, 3)`` and return a uint8 ``(H, W, 3)`` array.

    The map is upsampled to the image size. ``mode``: ``"blend"`` mixes the colormapped map into
    the image with weight ``alpha``; ``"heatmap"`` shows the colormapped map alone; ``"masked"``
    keeps the image where the map is strong and dims it elsewhere by ``alpha``. With ``signed``
    the colormap is centred on zero (use a diverging map such as ``"RdBu_r"``).
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha: expected a value in [0, 1], got {alpha}")
    img = to_rgb_array(image_rgb)
    sal = np.asarray(saliency)
    if sal.ndim != 2:
        raise ValueError(f"saliency: expected a 2-D (H, W) map, got shape {sal.shape}")
    scaled = scale_map(resize_map(sal, img.shape[:2]), signed=signed, vmax=vmax)
    if mode == "masked":
        weight = np.abs(scaled - 0.5) * 2.0 if signed else scaled
        factor = 1.0 - float(alpha) * (1.0 - weight)
        return (img.astype(np.float32) * factor[:, :, None] + 0.5).astype(np.uint8)
    heat = colormap_lut(cmap)[(scaled * 255.0 + 0.5).astype(np.uint8)]
    if mode == "heatmap":
        return heat
    a = np.float32(alpha)
    out = img.astype(np.float32) * (1.0 - a) + heat.astype(np.float32) * a
    return (out + 0.5).astype(np.uint8)


def fit_image(img: ImageLike, size: int | tuple[int, int]) -> Image.Image:
    """Resize ``img`` to fit in ``size`` keeping its aspect ratio (nearest-neighbour when
    enlarging, so small images stay crisp; Lanczos when shrinking)."""
    pil = img if isinstance(img, Image.Image) else Image.fromarray(to_rgb_array(img))
    if pil.mode != "RGB":
        pil = Image.fromarray(to_rgb_array(pil))
    box_w, box_h = (size, size) if isinstance(size, int) else (size[1], size[0])
    scale = min(box_w / pil.width, box_h / pil.height)
    new = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
    if new == pil.size:
        return pil
    return pil.resize(new, Image.NEAREST if scale > 1 else Image.LANCZOS)


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, width: int) -> str:
    if draw.textlength(text, font=_font()) <= width:
        return text
    while text and draw.textlength(text + "…", font=_font()) > width:
        text = text[:-1]
    return text + "…"


def image_grid(
    images: Sequence[ImageLike | None],
    captions: Sequence[str] | None = None,
    ncols: int = 8,
    cell: int | tuple[int, int] = 96,
    pad: int = 4,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Tile ``images`` into one RGB image, ``ncols`` per row, each fitted into a ``cell`` box
    (an int or ``(H, W)``) and centred, with its caption (may hold ``\\n``) drawn below it.

    ``None`` entries leave an empty grey cell (used for failed or pending views).
    """
    if ncols < 1:
        raise ValueError(f"ncols: expected a positive int, got {ncols}")
    if captions is not None and len(captions) != len(images):
        raise ValueError(
            f"captions: expected {len(images)} captions (one per image), got {len(captions)}"
        )
    cell_h, cell_w = (cell, cell) if isinstance(cell, int) else cell
    n = len(images)
    rows = max(1, -(-n // ncols))
    cols = min(ncols, max(n, 1))
    lines = max((c.count("\n") + 1 for c in captions), default=0) if captions else 0
    line_h = 12
    cap_h = lines * line_h + (2 if lines else 0)
    width = cols * (cell_w + pad) + pad
    height = rows * (cell_h + cap_h + pad) + pad
    canvas = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(canvas)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        x0 = pad + c * (cell_w + pad)
        y0 = pad + r * (cell_h + cap_h + pad)
        if img is None:
            draw.rectangle([x0, y0, x0 + cell_w - 1, y0 + cell_h - 1], fill=(230, 230, 230))
        else:
            tile = fit_image(img, (cell_h, cell_w))
            canvas.paste(tile, (x0 + (cell_w - tile.width) // 2, y0 + (cell_h - tile.height) // 2))
        if captions:
            for k, line in enumerate(captions[i].split("\n")):
                draw.text(
                    (x0, y0 + cell_h + 1 + k * line_h),
                    _fit_text(draw, line, cell_w),
                    fill=(20, 20, 20),
                    font=_font(),
                )
    return canvas


def colorbar(cmap: str, signed: bool, width: int = 160, height: int = 10) -> np.ndarray:
    """A horizontal colormap strip ``(height, width, 3)`` uint8, left = low, right = high."""
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)
    return np.repeat(colormap_lut(cmap)[(ramp * 255 + 0.5).astype(np.uint8)][None], height, axis=0)
