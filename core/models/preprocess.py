"""Preprocess callables returned by ``models.pretrained``.

They implement the shared contract ``preprocess(PIL.Image) -> Tensor (C, H, W)`` (images) or
``preprocess(str) -> LongTensor (T,)`` (text). Both are small picklable classes whose attributes
(``size``, ``mode``, ``mean``, ``std``; ``tokenizer``, ``max_len``) widgets may read, and both
round-trip through ``to_dict``/``from_dict`` (JSON) for the weight cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..checks import check_int
from ..data.source import HIGH_BIT_MODES, to_rgb

__all__ = ["ImagePreprocess", "TextPreprocess"]

_CHANNELS = {"RGB": 3, "L": 1}
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
             "nearest": Image.Resampling.NEAREST}


def _as_pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int | np.integer):
        pair = (int(size), int(size))
    else:
        pair = tuple(int(s) for s in size)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"size: expected a positive int or (height, width), got {size!r}")
    return pair  # type: ignore[return-value]


class ImagePreprocess:
    """PIL image -> normalised float tensor ``(C, H, W)`` for a built-in image model.

    Converts any PIL mode (RGBA, P, L, ...) to ``mode`` (``"RGB"`` or ``"L"``; high-bit modes
    I;16, I, F are first scaled to 8 bits by their range, as ``data.to_rgb`` shows them -- PIL's
    own conversion clips them; a source's ``max_value`` reaches this through
    ``ImageSource.model_image``), resizes to
    ``size`` = (height, width) with ``resample`` filtering when needed, scales to [0, 1] and
    applies ``(x - mean) / std`` per channel. ``denormalize`` undoes the last step for display.
    Also accepts uint8 ``(H, W)``/``(H, W, C)`` numpy arrays, which are read as PIL images.

    ``crop_padding`` > 0 first takes the centred square crop the TensorFlow ImageNet evaluation
    of EfficientNet uses (Tan & Le, ICML 2019; ``preprocessing.py``, ``CROP_PADDING = 32``): side
    ``int(size / (size + crop_padding) * min(height, width))``, offset ``(extent - side + 1) // 2``.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        mode: str = "RGB",
        mean: Sequence[float] | float = 0.5,
        std: Sequence[float] | float = 0.5,
        *,
        resample: str = "bilinear",
        crop_padding: int = 0,
    ) -> None:
        if mode not in _CHANNELS:
            raise ValueError(f"mode: expected one of {list(_CHANNELS)}, got {mode!r}")
        channels = _CHANNELS[mode]
        self.size = _as_pair(size)
        self.mode = mode
        self.mean = self._per_channel("mean", mean, channels)
        self.std = self._per_channel("std", std, channels)
        if min(self.std) <= 0:
            raise ValueError(f"std: expected positive values, got {self.std}")
        if resample not in _RESAMPLE:
            raise ValueError(f"resample: expected one of {list(_RESAMPLE)}, got {resample!r}")
        self.resample = resample
        self.crop_padding = check_int("crop_padding", crop_padding, 0, "pixels")

    @staticmethod
    def _per_channel(name: str, value: Sequence[float] | float, channels: int) -> tuple:
        values = (float(value),) * channels if np.isscalar(value) else tuple(map(float, value))
        if len(values) != channels:
            raise ValueError(f"{name}: expected {channels} value(s), got {len(values)}")
        return values

    @property
    def channels(self) -> int:
        """Number of channels of the output tensor."""
        return _CHANNELS[self.mode]

    def __call__(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        """``image``: PIL image (any mode) -> float32 tensor ``(C, H, W)``."""
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim not in (2, 3):
                raise TypeError(
                    f"image: expected a PIL.Image or a uint8 (H, W[, C]) array, got "
                    f"{image.dtype} array of shape {image.shape}"
                )
            image = Image.fromarray(image)
        if not isinstance(image, Image.Image):
            raise TypeError(f"image: expected a PIL.Image, got {type(image).__name__}")
        if image.mode in HIGH_BIT_MODES:  # PIL's convert clips 16-bit/float values, never scales
            image = to_rgb(image)  # scaled by the mode's range, as it is shown
        if image.mode != self.mode:
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and
                                                      "transparency" in image.info):
                image = image.convert("RGBA")  # drop alpha, keep colour values
            image = image.convert(self.mode)
        height, width = self.size
        if self.crop_padding:
            image = self._centre_crop(image)
        if image.size != (width, height):
            image = image.resize((width, height), _RESAMPLE[self.resample])
        array = np.asarray(image, dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array.reshape(height, width, -1)).permute(2, 0, 1).contiguous()
        return (tensor - self._stat(self.mean)) / self._stat(self.std)

    def pixels(self) -> ImagePreprocess:
        """The same crop, resize and mode without the normalisation: PIL -> pixels in [0, 1]."""
        return ImagePreprocess(self.size, self.mode, 0.0, 1.0, resample=self.resample,
                               crop_padding=self.crop_padding)

    def _centre_crop(self, image: Image.Image) -> Image.Image:
        fraction = min(self.size) / (min(self.size) + self.crop_padding)
        side = max(1, int(fraction * min(image.size)))
        left = (image.width - side + 1) // 2
        top = (image.height - side + 1) // 2
        return image.crop((left, top, left + side, top + side))

    def batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """A list of images -> ``(N, C, H, W)``."""
        return torch.stack([self(image) for image in images])

    def _stat(self, values: tuple) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1)

    def denormalize(self, tensor: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation: ``(C, H, W)`` or ``(N, C, H, W)`` -> values in [0, 1]."""
        if tensor.dim() not in (3, 4) or tensor.shape[-3] != self.channels:
            raise ValueError(
                f"tensor: expected (C, H, W) or (N, C, H, W) with C={self.channels}, got "
                f"{tuple(tensor.shape)}"
            )
        mean = self._stat(self.mean).to(tensor)
        std = self._stat(self.std).to(tensor)
        return (tensor * std + mean).clamp(0.0, 1.0)

    inverse = denormalize

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (``ImagePreprocess.from_dict`` rebuilds it)."""
        return {"kind": "image", "size": list(self.size), "mode": self.mode,
                "mean": list(self.mean), "std": list(self.std), "resample": self.resample,
                "crop_padding": self.crop_padding}

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> ImagePreprocess:
        return cls(spec["size"], spec["mode"], spec["mean"], spec["std"],
                   resample=spec.get("resample", "bilinear"),
                   crop_padding=spec.get("crop_padding", 0))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImagePreprocess) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.size, self.mode, self.mean, self.std, self.resample, self.crop_padding))

    def __repr__(self) -> str:
        extra = "" if (self.resample, self.crop_padding) == ("bilinear", 0) else (
            f", resample={self.resample!r}, crop_padding={self.crop_padding}")
        return (f"ImagePreprocess(size={self.size}, mode={self.mode!r}, mean={self.mean}, "
                f"std={self.std}{extra})")


class TextPreprocess:
    """Text -> token ids with a tokenizer that has ``encode(texts, max_len) -> LongTensor (N, T)``.

    ``preprocess("a review")`` gives ``LongTensor (T,)``; a list of strings gives ``(N, T)``,
    padded with ``tokenizer.pad_id`` and truncated to ``max_len``.
    """

    def __init__(self, tokenizer: Any, max_len: int | None = None) -> None:
        if not callable(getattr(tokenizer, "encode", None)):
            raise TypeError(
                f"tokenizer: expected an object with encode(texts, max_len), got "
                f"{type(tokenizer).__name__}"
            )
        if max_len is not None and int(max_len) < 1:
            raise ValueError(f"max_len: expected a positive int or None, got {max_len!r}")
        self.tokenizer = tokenizer
        self.max_len = None if max_len is None else int(max_len)

    @property
    def pad_id(self) -> int:
        return int(getattr(self.tokenizer, "pad_id", 0))

    def __call__(self, text: str | Sequence[str]) -> torch.Tensor:
        """``str`` -> ``LongTensor (T,)``; list of ``str`` -> ``LongTensor (N, T)``."""
        if isinstance(text, str):
            return self.tokenizer.encode([text], max_len=self.max_len)[0].long()
        texts = list(text)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("text: expected a str or a sequence of str")
        return self.tokenizer.encode(texts, max_len=self.max_len).long()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "text", "max_len": self.max_len, "vocab_size": len(self.tokenizer)}

    def __repr__(self) -> str:
        return f"TextPreprocess(vocab_size={len(self.tokenizer)}, max_len={self.max_len})"
