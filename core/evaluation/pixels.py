"""Pixel-space images for the evaluations that transform inputs (COSE, sanity checks), and
the explorers that show them.

Transformations (rotations, blur, colour jitter) act on pixels in [0, 1], *before* the model's
normalisation. So these explorers need two things from the user: how to read an image into
pixels and how pixels become model inputs. :func:`split_preprocess` gets both from

- a visloupe ``ImagePreprocess`` (``models.pretrained``): its ``mean``/``std`` are read
  (core ``evaluation.pixel_data`` splits it);
- a Hugging Face image processor (``image_mean``/``image_std``): called with
  ``do_normalize=False`` for pixels, its mean/std as the normalisation;
- any preprocess with ``normalize=(mean, std)``: the preprocess is taken to end with
  ``(x - mean) / std``, which is undone to get pixels and applied again for the model;
- a pixel preprocess (or None) with ``normalize=`` a callable on ``(N, C, H, W)`` tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from PIL import Image

__all__ = ["MeanStd", "model_view", "pixel_inputs", "split_preprocess"]

Normalize = Callable[[torch.Tensor], torch.Tensor]


class MeanStd:
    """``x -> (x - mean) / std`` per channel on ``(N, C, H, W)`` or ``(C, H, W)`` tensors."""

    def __init__(self, mean: Any, std: Any) -> None:
        self.mean = _per_channel("normalize", mean, "mean")
        self.std = _per_channel("normalize", std, "std")
        if len(self.mean) != len(self.std) and 1 not in (len(self.mean), len(self.std)):
            raise ValueError(f"normalize: expected mean and std of one length, got "
                             f"{len(self.mean)} and {len(self.std)} values")
        if min(self.std) <= 0:
            raise ValueError(f"normalize: expected a positive std, got {self.std}")

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return mean, std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return (x - mean) / std

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return x * std + mean

    def __repr__(self) -> str:
        return f"MeanStd(mean={self.mean}, std={self.std})"


def _per_channel(arg: str, value: Any, what: str) -> tuple[float, ...]:
    if isinstance(value, torch.Tensor):
        value = value.flatten().tolist()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),)
    if isinstance(value, Sequence) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return tuple(float(v) for v in value)
    raise TypeError(f"{arg}: expected {what} as a number or a sequence of numbers, got "
                    f"{value!r}")


def _as_normalize(normalize: Any) -> Normalize | MeanStd | None:
    if normalize is None or isinstance(normalize, MeanStd):
        return normalize
    if isinstance(normalize, (tuple, list)) and len(normalize) == 2:
        return MeanStd(normalize[0], normalize[1])
    if callable(normalize):
        return normalize
    raise TypeError("normalize: expected None, a callable on (N, C, H, W) tensors or a pair "
                    f"(mean, std), got {type(normalize).__name__}")


def _is_hf_processor(preprocess: Any) -> bool:
    return (callable(preprocess) and hasattr(preprocess, "image_mean")
            and hasattr(preprocess, "image_std"))


class _Undo:
    """A preprocess that ends with ``(x - mean) / std``, with that last step undone."""

    def __init__(self, preprocess: Callable, norm: MeanStd) -> None:
        self.preprocess, self.norm = preprocess, norm

    def __call__(self, image: Image.Image) -> torch.Tensor:
        x = self.preprocess(image)
        return self.norm.inverse(x if x.is_floating_point() else x.float())  # keeps float64


class _HFPixels:
    """A Hugging Face image processor without its normalisation: PIL -> ``(C, H, W)``."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        out = self.processor(images=image.convert("RGB"), return_tensors="pt",
                             do_normalize=False)
        values = out["pixel_values"] if isinstance(out, Mapping) or hasattr(out, "keys") \
            else out
        values = torch.as_tensor(values)
        values = values if values.is_floating_point() else values.float()
        return values[0] if values.dim() == 4 else values


def split_preprocess(preprocess: Any, normalize: Any = None) -> tuple[Callable | None,
                                                                      Normalize | None]:
    """``(pixel preprocess, normalisation)`` for core ``evaluation.pixel_data``: the first
    maps a PIL image to ``(C, H, W)`` pixels in [0, 1] (None: core's own split or the stored
    pixels), the second pixels ``(N, C, H, W)`` to model inputs (None: identity / core's)."""
    norm = _as_normalize(normalize)
    if preprocess is not None and not callable(preprocess):
        raise TypeError("preprocess: expected None or a callable PIL.Image -> Tensor (C, H, W), "
                        f"got {type(preprocess).__name__}")
    if norm is None and _is_hf_processor(preprocess):
        hf_norm = (MeanStd(preprocess.image_mean, preprocess.image_std)
                   if getattr(preprocess, "do_normalize", True) else None)
        return _HFPixels(preprocess), hf_norm
    if isinstance(norm, MeanStd) and preprocess is not None:
        return _Undo(preprocess, norm), norm
    return preprocess, norm


def pixel_inputs(data: Any, preprocess: Any = None, normalize: Any = None, *,
                 n_images: int | None = None) -> Any:
    """Core ``evaluation.pixel_data`` of ``data`` after :func:`split_preprocess`, with an error
    that names ``normalize=`` when the pixels leave [0, 1]."""
    from .cose import pixel_data

    pixel_fn, norm = split_preprocess(preprocess, normalize)
    try:
        return pixel_data(data, pixel_fn, normalize=norm, n_images=n_images)
    except ValueError as error:
        if "[0, 1]" not in str(error):
            raise
        raise ValueError(
            "preprocess: these explorers transform pixels in [0, 1] before the model's "
            "normalisation, and this preprocess gives values outside [0, 1]; pass "
            "normalize=(mean, std) with the normalisation it applies (it is undone for the "
            "transforms and applied again for the model), or a pixel preprocess with "
            f"normalize=<callable on (N, C, H, W)> ({error})") from None


def model_view(image: Image.Image, preprocess: Any, normalize: Any = None) -> Image.Image | None:
    """``image`` as the model sees it (the preprocess's crop and resize, without its
    normalisation), as an RGB PIL image: the frame a saliency map of that input belongs on.

    None when the preprocess cannot be split into pixels + normalisation (see
    :func:`split_preprocess`) or its pixels leave [0, 1]; then only the raw image is known.
    """
    if preprocess is None:
        return None
    pixels_of = getattr(preprocess, "pixels", None)  # a visloupe ImagePreprocess
    if callable(pixels_of):
        pixel_fn: Callable | None = pixels_of()
    else:
        pixel_fn, norm = split_preprocess(preprocess, normalize)
        if pixel_fn is preprocess and norm is None:
            return None  # nothing says where the normalisation is
    values = pixel_fn(image) if pixel_fn is not None else None
    if not isinstance(values, torch.Tensor) or values.dim() != 3 or values.shape[0] not in (1, 3):
        return None
    if values.min() < -1e-3 or values.max() > 1 + 1e-3:
        return None
    array = (values.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).convert("RGB")
