"""COSE's photometric transformations as PIL applies them to uint8 images: the reference our
tensor versions are checked against (``factor`` is PIL's enhance factor, 1 + magnitude)."""

from __future__ import annotations

from PIL import ImageEnhance, ImageFilter, ImageOps

PIL_OPS = {
    "Brightness": lambda im, f: ImageEnhance.Brightness(im).enhance(f),
    "Color": lambda im, f: ImageEnhance.Color(im).enhance(f),
    "Contrast": lambda im, f: ImageEnhance.Contrast(im).enhance(f),
    "Sharpness": lambda im, f: ImageEnhance.Sharpness(im).enhance(f),
    "AutoContrast": lambda im, f: ImageOps.autocontrast(im),
    "Equalize": lambda im, f: ImageOps.equalize(im),
    "Blur": lambda im, f: im.filter(ImageFilter.BLUR),
    "Smooth": lambda im, f: im.filter(ImageFilter.SMOOTH),
}
