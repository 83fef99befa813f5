"""One adapter so that every widget and metric reads any image data the same way.

:func:`as_image_source` takes a Hugging Face ``Dataset`` or ``IterableDataset``, a torch
map-style dataset, a folder of images, a list of paths or PIL images, or arrays, and returns an
:class:`ImageSource` of :class:`Sample` objects. Samples carry the *raw* image (original mode and
size) for display and geometric transforms; model inputs are made only on request, through the
``preprocess`` contract (``preprocess(PIL.Image) -> Tensor (C, H, W)``). Keeping the two apart
avoids showing normalised tensors as images and the grayscale-permute bugs that hit Captum
Insights (pytorch/captum PR #1044).

**The one stream policy.** A ``datasets.IterableDataset`` is shuffled once with a buffer
(``buffer_size``, ``seed``; ``buffer_size <= 1`` keeps stream order) and read lazily; its length
stays unknown until its end. Whatever runs over "all" items of a stream (embeddings,
confusion, profiles, class views, dataset-scale metrics) takes its first ``limit`` items in that
order, ``limit`` defaulting to :data:`STREAM_LIMIT`; :meth:`ImageSource.indices` applies it.

Everything a capability needs from data is public :class:`ImageSource` behaviour: rows by index,
:meth:`~ImageSource.select` (a subset that remembers the original row ids),
:meth:`~ImageSource.label_values` (labels without decoding images),
:meth:`~ImageSource.fingerprint` (a cache key of the rows), :meth:`~ImageSource.rgb_array`
(display pixels, without a PIL round trip for in-memory arrays), :meth:`~ImageSource.images`
and :meth:`~ImageSource.batches` (model inputs through a preprocess). :func:`model_inputs`
also takes a ready ``(N, C, H, W)`` tensor. Raw records for profiling live in :mod:`.records`.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image

LABEL_NAMES = ("label", "labels", "target", "targets", "class", "y")
STREAM_LIMIT = 1000
"""Items a stream contributes when the caller gives no ``limit`` (see the module docstring)."""
_IMAGE_NAMES = ("image", "img", "pixel_values", "images", "x", "input")


@dataclass(frozen=True)
class Sample:
    """One example: ``image`` raw as stored (any mode and size), ``label`` a class index or None,
    ``mask`` an optional ground-truth "L" image (255 on the object), ``index`` its position in
    the source, ``row_id`` its row in the original data (differs from ``index`` in a
    :meth:`ImageSource.select` subset; None means the same as ``index``)."""

    index: int
    image: Image.Image
    label: int | None = None
    mask: Image.Image | None = None
    row_id: int | None = None

    def __post_init__(self) -> None:
        if self.row_id is None:
            object.__setattr__(self, "row_id", self.index)


# ---------------------------------------------------------------------------------------------
# Conversions to PIL


def _array_to_u8(arr: np.ndarray, arg: str) -> np.ndarray:
    """HW, HWC or CHW array (uint8, bool, int, or float in [0, 1]) -> uint8 HW or HWC (C in 3,
    4), checked: the pixels :func:`to_pil` makes its image of."""
    if arr.ndim == 3:
        if arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
            arr = np.moveaxis(arr, 0, -1)
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"{arg}: expected an image of shape (H, W), (H, W, C) or (C, H, W) with "
                         f"C in 1, 3, 4, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo < -1e-3 or hi > 1 + 1e-3 or not np.isfinite([lo, hi]).all():
            raise ValueError(f"{arg}: expected float pixel values in [0, 1], got range "
                             f"[{lo:.3g}, {hi:.3g}] (normalised tensors are not images; pass "
                             "the raw images and give the normalisation to preprocess=)")
        arr = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer):
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 255:
            raise ValueError(f"{arg}: expected integer pixel values in [0, 255], got range "
                             f"[{lo}, {hi}] with dtype {arr.dtype} (gray uint16 arrays are read "
                             "as 16-bit images, with max_value= for their white level; scale "
                             "others to uint8 or to floats in [0, 1])")
        arr = arr.astype(np.uint8)
    else:
        raise TypeError(f"{arg}: unsupported pixel dtype {arr.dtype}")
    return arr


def _sixteen_bit_gray(arr: np.ndarray) -> np.ndarray | None:
    """A uint16 gray array ``(H, W)`` (or ``(H, W, 1)``, ``(1, H, W)``), else None: a 16-bit
    image, kept at its depth (``to_rgb`` scales it by the data set's ``max_value``)."""
    if arr.dtype != np.uint16:
        return None
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr.reshape(arr.shape[1:] if arr.shape[0] == 1 else arr.shape[:2])
    return arr if arr.ndim == 2 else None


def _array_to_pil(arr: np.ndarray, arg: str) -> Image.Image:
    gray16 = _sixteen_bit_gray(arr)
    if gray16 is not None:
        return Image.fromarray(np.ascontiguousarray(gray16))  # mode I;16
    return Image.fromarray(np.ascontiguousarray(_array_to_u8(arr, arg)))


def to_pil(obj: Any, arg: str = "data") -> Image.Image:
    """A PIL image from a PIL image, a path, an HF ``{"bytes", "path"}`` dict or an array/tensor.

    Arrays: ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` (channel-first when the first dim is 1, 3
    or 4 and the last is not); uint8 as is, floats must lie in [0, 1].
    """
    if isinstance(obj, Image.Image):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if not path.is_file():
            raise ValueError(f"{arg}: image file {str(path)!r} does not exist")
        try:
            with Image.open(path) as img:
                img.load()
                return img
        except OSError as e:  # PIL's UnidentifiedImageError, truncated files
            raise ValueError(f"{arg}: cannot read image file {str(path)!r} "
                             f"({type(e).__name__}: {e})") from e
    if isinstance(obj, Mapping) and ("bytes" in obj or "path" in obj):
        if obj.get("bytes") is not None:
            import io
            try:
                img = Image.open(io.BytesIO(obj["bytes"]))
                img.load()
            except OSError as e:
                raise ValueError(f"{arg}: cannot decode the image bytes "
                                 f"({type(e).__name__}: {e})") from e
            return img
        return to_pil(obj["path"], arg)
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return _array_to_pil(obj, arg)
    raise TypeError(f"{arg}: expected an image (PIL.Image, file path, array or tensor), got "
                    f"{type(obj).__name__}")


HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
"""PIL modes with more than 8 bits per pixel; :func:`to_rgb` scales them by ``max_value``."""


def mode_max(mode: str) -> float:
    """The value shown as white for a high-bit PIL mode: 65535 for integer modes ("I;16*",
    and "I", which 16-bit PNG/TIFF files decode to), 1.0 for float images ("F")."""
    return 1.0 if mode == "F" else 65535.0


def _warn_if_eight_bit(arr: np.ndarray, mode: str, max_value: float | None) -> None:
    """Warn (once per call site) when an integer high-bit image scaled by its mode's range holds
    only 0..255: 8-bit data stored wide (HF decodes integer arrays as mode "I"), which would
    look -- and reach the model -- 257 times too dark."""
    if max_value is None and mode != "F" and arr.size and 0 < float(arr.max()) <= 255:
        warnings.warn(f"data: a {mode!r} image holds values 0..{int(arr.max())} only and is "
                      "scaled by the 16-bit range (65535 is white); if the data are 8-bit, pass "
                      "max_value=255 to as_image_source (or store them as uint8)", stacklevel=3)


def _high_bit_unit(img: Image.Image, max_value: float | None = None,
                  dtype: type = np.float32) -> np.ndarray:
    """The values of a high-bit image divided by the white level (``max_value``, else the
    mode's range) and clipped to [0, 1]: the one scaling rule of display and model inputs."""
    arr = np.asarray(img, dtype=dtype)
    _warn_if_eight_bit(arr, img.mode, max_value)
    hi = mode_max(img.mode) if max_value is None else float(max_value)
    return np.clip(arr / dtype(hi), 0.0, 1.0)


def check_max_value(max_value: Any) -> float | None:
    """``max_value`` (the white level of high-bit images) as a float, or None; else
    ValueError naming it."""
    if max_value is None:
        return None
    if isinstance(max_value, bool) or not isinstance(max_value, (int, float, np.number)) \
            or not max_value > 0:
        raise ValueError(f"max_value: expected a positive number (the white level of "
                         f"high-bit images), got {max_value!r}")
    return float(max_value)


def to_rgb(img: Image.Image, max_value: float | None = None) -> Image.Image:
    """Display conversion: grayscale -> RGB, transparency composited on white.

    High-bit images (16-bit, 32-bit int, float) are scaled by one rule for the whole data set,
    never by each image's own maximum: ``value / max_value`` with ``max_value`` the mode's
    range (:func:`mode_max`) unless given (e.g. ``4095`` for 12-bit data stored in 16 bits).
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode in HIGH_BIT_MODES:
        arr = (_high_bit_unit(img, max_value, np.float64) * 255.0).round().astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    return img.convert("RGB")


def rgb_pixels(image: Any, max_value: float | None = None, arg: str = "data"
               ) -> tuple[str, np.ndarray]:
    """``(stored mode, RGB uint8 (H, W, 3))`` of one stored image: the pixels of
    ``to_rgb(to_pil(image), max_value)``, with the mode ``to_pil`` gives.

    Gray and RGB arrays and tensors skip the PIL round trip (array -> image -> array), which
    dominated profiling and mapping 100 000 small in-memory images (issue 17); the pixels are
    the same, since PIL's "L" -> "RGB" conversion copies the gray value to each channel. A
    uint8 RGB array comes back as itself (or a view of it): read it, do not write to it.
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray) and _sixteen_bit_gray(image) is None:
        u8 = _array_to_u8(image, arg)
        if u8.ndim == 2:
            return "L", np.repeat(u8[..., None], 3, axis=2)
        if u8.shape[-1] == 3:
            return "RGB", u8
        img = Image.fromarray(np.ascontiguousarray(u8))  # RGBA: composite on white
    else:  # PIL images, paths, bytes and 16-bit gray arrays
        img = to_pil(image, arg)
    return img.mode, np.asarray(to_rgb(img, max_value), dtype=np.uint8)


def pil_to_tensor(img: Image.Image, max_value: float | None = None) -> torch.Tensor:
    """Float tensor ``(C, H, W)`` in [0, 1] keeping the image's channels ("L" -> 1, "RGB" -> 3,
    "RGBA" -> 4); other modes go through :func:`to_rgb`. High-bit modes keep their precision,
    scaled by ``max_value`` (the data set's white level) or else their range. The default
    ``preprocess``."""
    if img.mode in HIGH_BIT_MODES:
        return torch.from_numpy(np.ascontiguousarray(_high_bit_unit(img, max_value)[None]))
    if img.mode not in ("L", "RGB", "RGBA"):
        img = to_rgb(img)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = np.moveaxis(arr, -1, 0)
    return torch.from_numpy(np.ascontiguousarray(arr))


# ---------------------------------------------------------------------------------------------
# Readers: each knows how to fetch raw record i of one kind of input.


class Reader:
    kind = "?"
    length: int | None = None
    class_names: list[str] | None = None

    def get(self, i: int) -> tuple[Any, Any, Any]:
        """(image-like, label-like or None, mask-like or None) of record ``i`` (0 <= i)."""
        raise NotImplementedError


def _feature_kinds(features: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} ({type(v).__name__})" for k, v in features.items())


def pick_columns(features: Mapping[str, Any], image_column: str | None,
                 label_column: str | None) -> tuple[str, str | None, str | None]:
    """Image column, label column, mask column from HF ``features`` (or the overrides)."""
    cols = list(features)
    if image_column is not None:
        if image_column not in features:
            raise ValueError(f"image_column: {image_column!r} is not a column; available columns: "
                             f"{_feature_kinds(features)}")
        if not isinstance(features[image_column], datasets.Image):
            raise ValueError(f"image_column: {image_column!r} is a "
                             f"{type(features[image_column]).__name__} feature, not an Image; "
                             f"available columns: {_feature_kinds(features)}")
        image = image_column
    else:
        images = [c for c in cols if isinstance(features[c], datasets.Image)]
        if not images:
            raise ValueError("data: no Image feature among the columns "
                             f"({_feature_kinds(features)}); cast one with "
                             "ds.cast_column(name, datasets.Image()) or pass image_column=")
        image = images[0]
    if label_column is not None:
        if label_column not in features:
            raise ValueError(f"label_column: {label_column!r} is not a column; available columns: "
                             f"{_feature_kinds(features)}")
        feat = features[label_column]
        if not (isinstance(feat, datasets.ClassLabel) or (
                isinstance(feat, datasets.Value) and feat.dtype.startswith(("int", "uint")))):
            raise ValueError(f"label_column: {label_column!r} is {feat!r}; expected a ClassLabel "
                             "or an integer Value column")
        label: str | None = label_column
    else:
        labels = [c for c in cols if isinstance(features[c], datasets.ClassLabel)]
        ints = [c for c in cols if c in LABEL_NAMES and isinstance(features[c], datasets.Value)
                and features[c].dtype.startswith(("int", "uint"))]
        label = (labels or ints or [None])[0]
        odd = [c for c in cols if c in LABEL_NAMES and c != image and label is None]
        if odd:
            warnings.warn(
                f"label_column: column {odd[0]!r} is {features[odd[0]]!r}, not categorical "
                "(ClassLabel or integer); treating the data as unlabelled. Encode it with "
                f"ds.class_encode_column({odd[0]!r}) to use it as the label.", stacklevel=3)
    mask = "mask" if ("mask" in features and isinstance(features["mask"], datasets.Image)
                      and image != "mask") else None
    return image, label, mask


def infer_features(row: Mapping[str, Any]) -> datasets.Features:
    """A schema guessed from one row of a stream whose features are unknown (e.g. after
    ``.map``): PIL images are ``Image``, ints ``int64``, everything else ``string``."""
    return datasets.Features({
        k: datasets.Image() if isinstance(v, Image.Image) else datasets.Value("int64")
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool)
        else datasets.Value("string") for k, v in row.items()})


class HFReader(Reader):
    kind = "datasets.Dataset"

    def __init__(self, ds: datasets.Dataset, image_column: str | None,
                 label_column: str | None) -> None:
        self.ds = ds.with_format(None)  # raw PIL rows, whatever format/transform the user set
        self.image, self.label, self.mask = pick_columns(ds.features, image_column, label_column)
        self.length = len(ds)
        feat = ds.features[self.label] if self.label else None
        self.class_names = list(feat.names) if isinstance(feat, datasets.ClassLabel) else None

    def get(self, i: int) -> tuple[Any, Any, Any]:
        row = self.ds[i]  # row first: decodes only this row's images
        return (row[self.image], row[self.label] if self.label else None,
                row[self.mask] if self.mask else None)


class StreamReader(Reader):
    """Buffered pages over an ``IterableDataset``: items are pulled lazily as indices are asked."""

    kind = "datasets.IterableDataset"

    def __init__(self, ds: datasets.IterableDataset, image_column: str | None,
                 label_column: str | None, buffer_size: int, seed: int) -> None:
        ds = ds.with_format(None)
        if buffer_size > 1:
            ds = ds.shuffle(seed=seed, buffer_size=buffer_size)
        features = ds.features
        if features is not None:  # images stay encoded until asked for: a file that cannot be
            # decoded spoils its own item, not the stream (HF's decode error ends the iterator)
            image = pick_columns(features, image_column, label_column)[0]
            if isinstance(features[image], datasets.Image):
                ds = ds.cast_column(image, datasets.Image(decode=False))
        self._it: Iterator[dict[str, Any]] | None = iter(ds)
        self._buf: list[dict[str, Any]] = []
        self.length = None
        if features is None:  # unknown schema (e.g. after .map): infer from the first item
            first = self._pull(0)
            if first is None:
                raise ValueError("data: the IterableDataset is empty")
            features = infer_features(first)
        self.image, self.label, self.mask = pick_columns(features, image_column, label_column)
        feat = features[self.label] if self.label else None
        self.class_names = list(feat.names) if isinstance(feat, datasets.ClassLabel) else None
        if self._pull(0) is None:
            raise ValueError("data: the IterableDataset is empty")

    def _pull(self, i: int) -> dict[str, Any] | None:
        while len(self._buf) <= i and self._it is not None:
            try:
                self._buf.append(next(self._it))
            except StopIteration:
                self._it = None
                self.length = len(self._buf)
        return self._buf[i] if i < len(self._buf) else None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def get(self, i: int) -> tuple[Any, Any, Any]:
        row = self._pull(i)
        if row is None:
            raise IndexError(f"index {i} is past the end of the stream ({len(self._buf)} items)")
        return (row[self.image], row[self.label] if self.label else None,
                row[self.mask] if self.mask else None)


def _is_image_like(x: Any) -> bool:
    if isinstance(x, (Image.Image, str, os.PathLike)):
        return True
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return x.ndim in (2, 3)
    return isinstance(x, Mapping) and ("bytes" in x or "path" in x)


class TorchReader(Reader):
    """A map-style torch dataset returning ``(image, label)``, ``image`` or a dict."""

    kind = "torch Dataset"

    def __init__(self, ds: Any, image_column: str | None, label_column: str | None) -> None:
        self.ds = ds
        self.length = len(ds)
        self.image_column, self.label_column = image_column, label_column
        names = getattr(ds, "classes", None)
        if isinstance(names, Sequence) and names and all(isinstance(c, str) for c in names):
            self.class_names = list(names)

    def get(self, i: int) -> tuple[Any, Any, Any]:
        item = self.ds[i]
        if isinstance(item, Mapping):
            keys = list(item)
            img_key = self.image_column or next(
                (k for k in _IMAGE_NAMES if k in item),
                next((k for k in keys if _is_image_like(item[k])), None))
            if img_key is None or img_key not in item:
                raise ValueError(f"image_column: cannot find the image in the dataset's dict "
                                 f"items; keys are {keys}")
            lab_key = self.label_column or next((k for k in LABEL_NAMES if k in item), None)
            if lab_key is not None and lab_key not in item:
                raise ValueError(f"label_column: {lab_key!r} is not a key; keys are {keys}")
            return (item[img_key], item[lab_key] if lab_key else None,
                    item.get("mask") if img_key != "mask" else None)
        if isinstance(item, (tuple, list)):
            if not item:
                raise ValueError(f"data: item {i} of the torch dataset is empty")
            return item[0], (item[1] if len(item) > 1 else None), None
        return item, None, None


class ListReader(Reader):
    kind = "list"

    def __init__(self, images: Sequence[Any], labels: Sequence[Any] | None) -> None:
        self.images, self.labels = images, labels
        self.length = len(images)

    def get(self, i: int) -> tuple[Any, Any, Any]:
        return self.images[i], (self.labels[i] if self.labels is not None else None), None


class ArrayReader(Reader):
    kind = "array"

    def __init__(self, arr: np.ndarray | torch.Tensor, labels: Sequence[Any] | None) -> None:
        if arr.ndim == 4 and arr.shape[1] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
            arr = arr.permute(0, 2, 3, 1) if isinstance(arr, torch.Tensor) else \
                np.moveaxis(arr, 1, -1)
        if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (1, 3, 4)):
            raise ValueError("data: expected an array of shape (N, H, W), (N, H, W, C) or "
                             f"(N, C, H, W) with C in 1, 3, 4, got shape {tuple(arr.shape)}")
        self.arr, self.labels = arr, labels
        self.length = int(arr.shape[0])

    def get(self, i: int) -> tuple[Any, Any, Any]:
        return self.arr[i], (self.labels[i] if self.labels is not None else None), None


def _label_int(value: Any, i: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"data: label of item {i} is a tensor of shape "
                             f"{tuple(value.shape)}; expected one class index")
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float)):
        raise TypeError(f"data: label of item {i} is {type(value).__name__} {value!r}; expected "
                        "an int class index")
    if isinstance(value, float) and not value.is_integer():
        raise TypeError(f"data: label of item {i} is the non-integer {value}")
    return None if int(value) < 0 else int(value)  # ClassLabel uses -1 for "no label"


# ---------------------------------------------------------------------------------------------


class SubsetReader(Reader):
    """Rows ``ids`` of another reader, in that order (what :meth:`ImageSource.select` builds
    for data that has no cheaper native subset)."""

    def __init__(self, parent: Reader, ids: Sequence[int]) -> None:
        self.parent, self.ids = parent, list(ids)
        self.kind, self.class_names = parent.kind, parent.class_names
        self.length = len(self.ids)

    def get(self, i: int) -> tuple[Any, Any, Any]:
        return self.parent.get(self.ids[i])


def _digest_item(h: Any, item: Any) -> bool:
    """Feed a cheap, complete description of one stored item to ``h``; False if there is none."""
    if isinstance(item, Image.Image):
        h.update(repr((item.mode, item.size)).encode())
        h.update(item.tobytes())
    elif isinstance(item, (str, os.PathLike)):
        try:
            st = os.stat(item)
        except OSError:
            return False
        h.update(repr((str(item), st.st_size, st.st_mtime_ns)).encode())
    elif isinstance(item, (np.ndarray, torch.Tensor)):
        arr = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else item
        h.update(repr((arr.shape, str(arr.dtype))).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    elif isinstance(item, Mapping) and item.get("bytes") is not None:
        h.update(item["bytes"])
    elif isinstance(item, Mapping) and item.get("path") is not None:
        return _digest_item(h, item["path"])
    else:
        return False
    return True


def check_image_tensor(x: Any, item: int, first: torch.Tensor | None, first_item: int, *,
                       modes: tuple[str, str] | None = None, default: bool = False) -> None:
    """What ``preprocess`` returned for ``item`` is a ``(C, H, W)`` tensor shaped like the
    first item's. ``modes``: the PIL modes of ``item`` and ``first_item``, named when the
    channel counts differ; ``default``: the default preprocess ran (so the data, not a
    user's preprocess, is what differs)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        got = (f"a tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor)
               else type(x).__name__)
        raise TypeError(f"preprocess: expected it to return a Tensor (C, H, W), got {got}")
    if first is None or x.shape == first.shape:
        return
    if x.shape[0] != first.shape[0]:
        what = (f" (a {modes[0]!r} image)", f" (a {modes[1]!r} image)") if modes else ("", "")
        if default:
            raise ValueError(
                f"data: item {item} has {x.shape[0]} channels{what[0]} but item {first_item} "
                f"has {first.shape[0]}{what[1]}; the data mixes image modes and the default "
                "preprocess keeps each image's channels: pass one that converts, e.g. "
                "preprocess=models.ImagePreprocess(size, 'RGB', 0.0, 1.0)")
        raise ValueError(
            f"preprocess: returned {x.shape[0]} channels for item {item}{what[0]} but "
            f"{first.shape[0]} for item {first_item}{what[1]}; convert every image to one mode "
            "in preprocess (e.g. img.convert('RGB') first)")
    if default:
        raise ValueError(
            f"data: item {item} is {x.shape[1]}x{x.shape[2]} but item {first_item} is "
            f"{first.shape[1]}x{first.shape[2]}; the default preprocess keeps each image's "
            "size: pass one that resizes, e.g. "
            "preprocess=models.ImagePreprocess(size, 'RGB', 0.0, 1.0)")
    raise ValueError(
        f"preprocess: returned shape {tuple(x.shape)} for item {item} but "
        f"{tuple(first.shape)} for item {first_item}; images of different sizes "
        "need a resize in preprocess")


class ImageSource:
    """Uniform random access to images, labels and masks of any supported input.

    ``length`` is the number of items, or None for a stream that has not been read to its end
    (then ``len()`` raises TypeError). ``source[i]`` is a :class:`Sample` with the raw image;
    :meth:`rgb` gives the display version and :meth:`tensors` / :meth:`batches` the model input.
    ``max_value`` is the data set's white level for high-bit images (see :func:`to_rgb`).
    """

    def __init__(self, reader: Reader, class_names: Sequence[str] | None,
                 max_value: float | None = None, *, parent: ImageSource | None = None,
                 ids: Sequence[int] | None = None) -> None:
        self._reader = reader
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            known = reader.class_names
            if known is not None and len(known) != len(class_names):
                raise ValueError(f"class_names: got {len(class_names)} names but the data "
                                 f"declares {len(known)} classes ({known})")
        self.class_names: list[str] | None = (list(class_names) if class_names is not None
                                              else reader.class_names)
        self.kind: str = reader.kind
        self.max_value = check_max_value(max_value)
        self._parent = parent
        self._ids = list(ids) if ids is not None else None

    @property
    def length(self) -> int | None:
        return self._reader.length

    @property
    def is_stream(self) -> bool:
        """True for a stream (``IterableDataset``): no random access before it is read."""
        return isinstance(self._reader, StreamReader)

    def __len__(self) -> int:
        if self._reader.length is None:
            raise TypeError("this ImageSource streams an IterableDataset whose length is unknown "
                            "until it has been read to the end; use .length (None here) or "
                            "iterate instead of len()")
        return self._reader.length

    def __repr__(self) -> str:
        n = self.length if self.length is not None else "unknown"
        sub = ", subset" if self._ids is not None else ""
        return f"ImageSource(kind={self.kind!r}, length={n}, class_names={self.class_names}{sub})"

    def _index(self, i: Any) -> int:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"index: expected an int, got {type(i).__name__}")
        i = int(i)
        n = self._reader.length
        if i < 0:
            if n is None:
                raise IndexError(f"index: negative index {i} on a stream of unknown length")
            i += n
        if i < 0 or (n is not None and i >= n):
            raise IndexError(f"index {i} is out of range for {n} items")
        return i

    def row_id(self, i: int) -> int:
        """The row of item ``i`` in the original data (``i`` itself unless this is a subset)."""
        return self._ids[i] if self._ids is not None else i

    def raw(self, i: int) -> tuple[Any, Any, Any]:
        """Item ``i`` as stored: ``(image-like, label-like, mask-like)``, nothing decoded."""
        return self._reader.get(self._index(i))

    def __getitem__(self, i: int) -> Sample:
        i = self._index(i)
        try:
            image, label, mask = self._reader.get(i)
        except OSError as e:  # e.g. PIL's UnidentifiedImageError while a data set decodes
            raise ValueError(f"data item {i}: cannot read the image "
                             f"({type(e).__name__}: {e})") from e
        return Sample(index=i, image=to_pil(image, f"data item {i}"), label=_label_int(label, i),
                      mask=None if mask is None else to_pil(mask, f"data item {i} (mask)"),
                      row_id=self.row_id(i))

    def __iter__(self) -> Iterator[Sample]:
        i = 0
        while self._reader.length is None or i < self._reader.length:
            try:
                yield self[i]
            except IndexError:
                return
            i += 1

    def rgb(self, i: int) -> Image.Image:
        """The image of item ``i`` for display: RGB, transparency composited on white, high-bit
        images scaled by the data set's ``max_value``."""
        return to_rgb(self[i].image, self.max_value)

    def rgb_array(self, i: int) -> np.ndarray:
        """:meth:`rgb` of item ``i`` as a uint8 ``(H, W, 3)`` array (no PIL round trip for
        in-memory arrays, see :func:`rgb_pixels`; it may be a view of the stored array)."""
        return rgb_pixels(self.raw(i)[0], self.max_value)[1]

    # ------------------------------------------------------------------ which items

    def indices(self, indices: Sequence[int] | None = None, limit: int | None = None,
                name: str = "indices") -> list[int]:
        """The items to process: ``indices`` as given (checked), else every item, else (a
        stream) its first ``limit`` items, default :data:`STREAM_LIMIT` -- the one stream
        policy. ``limit`` also caps sized data."""
        if indices is not None:
            if isinstance(indices, (str, bytes)) or not hasattr(indices, "__iter__"):
                raise TypeError(f"{name}: expected a sequence of ints, got "
                                f"{type(indices).__name__}")
            arr = np.asarray(list(indices))
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise TypeError(f"{name}: expected ints, got dtype {arr.dtype}")
            out = [int(i) for i in arr.reshape(-1)]
            if not out:
                raise ValueError(f"{name}: expected at least one index, got none")
            n = self.length
            bad = [i for i in out if i < 0 or (n is not None and i >= n)]
            if bad:
                raise ValueError(f"{name}: indices {bad[:5]} are out of range for {n} items")
            return out
        if limit is not None and (isinstance(limit, bool) or not isinstance(
                limit, (int, np.integer)) or limit < 1):
            raise ValueError(f"limit: expected a positive int or None, got {limit!r}")
        n = self.length
        if n is None:
            count = STREAM_LIMIT if limit is None else int(limit)
            got = 0
            for i in range(count):  # pull lazily; stop at the end of a short stream
                try:
                    self._reader.get(i)
                except IndexError:
                    break
                got += 1
            return list(range(got))
        return list(range(n if limit is None else min(n, int(limit))))

    def select(self, indices: Sequence[int]) -> ImageSource:
        """Items ``indices`` (in that order) as a new source with the same class names and
        ``max_value``; each sample's ``row_id`` is its row in the original data."""
        idx = self.indices(indices)
        root = self._parent if self._parent is not None else self
        ids = [self.row_id(i) for i in idx]
        reader: Reader
        if isinstance(self._reader, HFReader):  # a native HF subset keeps batched reads
            old = self._reader
            reader = HFReader(old.ds.select(idx), old.image, old.label)
        else:
            reader = SubsetReader(self._reader, idx)
        return ImageSource(reader, self.class_names, self.max_value, parent=root, ids=ids)

    # ------------------------------------------------------------------ labels, fingerprint

    def labels(self, indices: Sequence[int]) -> torch.Tensor:
        """LongTensor ``(N,)`` of the labels of ``indices``; ValueError if one has no label."""
        values = self.label_values(indices)
        missing = [i for i, v in zip(indices, values, strict=True) if v is None]
        if missing:
            raise ValueError(f"indices: item {missing[0]} has no label (pass label_column=, or "
                             "labels with the images)")
        return torch.tensor(values, dtype=torch.long)

    def label_values(self, indices: Sequence[int]) -> list[int | None]:
        """Labels of ``indices`` (None where an item has none or it is unreadable). HF data
        sets read only the label column: no image is decoded."""
        from .records import label_value

        indices = [self._index(i) for i in indices]
        reader = self._reader
        if isinstance(reader, HFReader):
            if reader.label is None:
                return [None] * len(indices)
            col = reader.ds.select_columns([reader.label])
            values = col[indices][reader.label] if indices else []
            return [label_value(v)[0] for v in values]
        out = []
        for i in indices:
            try:
                out.append(label_value(reader.get(i)[1])[0])
            except Exception:  # noqa: BLE001 - an unreadable item has no usable label
                out.append(None)
        return out

    def column_values(self, name: str, indices: Sequence[int]) -> list[Any] | None:
        """Values of the extra column ``name`` for ``indices`` (e.g. the built-in photos'
        ``imagenet_accept``), or None when the data is not an HF ``Dataset`` with that column."""
        reader = self._reader
        if not isinstance(reader, HFReader) or name not in reader.ds.column_names:
            return None
        rows = [self._index(i) for i in indices]
        return list(reader.ds.select_columns([name])[rows][name]) if rows else []

    def fingerprint(self, indices: Sequence[int]) -> str:
        """A cache key for the data behind ``indices``.

        HF data sets: their ``_fingerprint`` plus the columns. In-memory lists and arrays: every
        item (pixels, or path + size + modification time), so an edited item changes the key.
        Torch datasets and streams: the length, kind and a hash of 8 evenly spaced items (an
        edit elsewhere is not seen; pass ``cache=False`` after changing such data in place).
        A subset's key is its parent's key of the same original rows.
        """
        if self._parent is not None:
            return self._parent.fingerprint([self.row_id(int(i)) for i in indices])
        h = hashlib.blake2b(digest_size=16)
        reader = self._reader
        h.update(repr((self.kind, self.length, self.class_names, self.max_value)).encode())
        idx = np.asarray(indices, dtype=np.int64)
        h.update(hashlib.blake2b(idx.tobytes(), digest_size=16).digest())
        fp = getattr(getattr(reader, "ds", None), "_fingerprint", None)
        if isinstance(reader, HFReader) and fp:
            h.update(repr((fp, reader.image, reader.label)).encode())
            return h.hexdigest()
        if isinstance(reader, ArrayReader):
            _digest_item(h, reader.arr)
            if reader.labels is not None:
                h.update(repr(list(reader.labels)).encode())
            return h.hexdigest()
        if isinstance(reader, ListReader):
            full = hashlib.blake2b(digest_size=16)
            if all(_digest_item(full, reader.images[int(i)]) for i in idx):
                h.update(full.digest())
                if reader.labels is not None:
                    h.update(repr([reader.labels[int(i)] for i in idx]).encode())
                return h.hexdigest()
        picks = sorted(set(np.linspace(0, len(idx) - 1, num=min(8, len(idx))).round()
                           .astype(int)))
        for p in picks:
            sample = self[int(idx[p])]
            img = sample.image
            h.update(repr((int(idx[p]), img.mode, img.size, sample.label)).encode())
            h.update(img.tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ model inputs

    def images(self, indices: Sequence[int]) -> list[Image.Image]:
        """Decoded raw images of ``indices``. HF data sets read the rows at once and decode
        only the image column (not masks or other images)."""
        indices = [self._index(i) for i in indices]
        reader = self._reader
        if isinstance(reader, HFReader) and len(indices) > 1:
            col = reader.ds.select_columns([reader.image])
            try:
                values = col[indices][reader.image]
            except OSError:  # a row that cannot be decoded: read one by one to name it
                return [self[i].image for i in indices]
            return [to_pil(v, f"data item {i}") for i, v in zip(indices, values, strict=True)]
        return [self[i].image for i in indices]

    def model_image(self, image: Image.Image) -> Image.Image:
        """``image`` (one of this source's) as a ``preprocess`` receives it: unchanged, except
        a high-bit image (16-bit, float) of a source with a ``max_value``, which becomes the
        8-bit RGB image it is shown as (:func:`to_rgb`), so the model sees the data set's white
        level too -- a preprocess cannot know it."""
        if self.max_value is not None and image.mode in HIGH_BIT_MODES:
            return to_rgb(image, self.max_value)
        return image

    def tensors(self, indices: Sequence[int],
                preprocess: Callable[[Image.Image], torch.Tensor] | None = None) -> torch.Tensor:
        """Model inputs ``(N, C, H, W)``: ``preprocess`` applied to each raw image.

        ``preprocess(PIL.Image) -> Tensor (C, H, W)`` receives the image in its stored mode
        (convert inside it if the model needs RGB), except high-bit images of a source with a
        ``max_value``, which it receives as shown (:meth:`model_image`). None uses
        :func:`pil_to_tensor` (floats in [0, 1], channels as stored, high-bit ones scaled by
        ``max_value``), which needs all images to share one size.
        """
        if preprocess is not None and not callable(preprocess):
            raise TypeError(f"preprocess: expected a callable PIL.Image -> Tensor (C, H, W), got "
                            f"{type(preprocess).__name__}")
        indices = list(indices)
        if not indices:
            raise ValueError("indices: expected at least one index")
        out: list[torch.Tensor] = []
        first_mode = ""
        for i, img in zip(indices, self.images(indices), strict=True):
            x = (pil_to_tensor(img, self.max_value) if preprocess is None
                 else preprocess(self.model_image(img)))
            first_mode = first_mode or img.mode
            check_image_tensor(x, i, out[0] if out else None, indices[0],
                               modes=(img.mode, first_mode), default=preprocess is None)
            out.append(x)
        return torch.stack(out)

    def batches(self, indices: Sequence[int] | None = None,
                preprocess: Callable[[Image.Image], torch.Tensor] | None = None, *,
                batch_size: int = 64, limit: int | None = None
                ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """``(item indices, inputs (n, C, H, W))`` in chunks of ``batch_size`` over
        :meth:`indices` ``(indices, limit)``."""
        from ..checks import check_int

        bs = check_int("batch_size", batch_size)
        idx = self.indices(indices, limit)
        for start in range(0, len(idx), bs):
            chunk = idx[start:start + bs]
            yield chunk, self.tensors(chunk, preprocess)


def model_inputs(data: Any, preprocess: Callable[[Image.Image], torch.Tensor] | None = None, *,
                 batch_size: int = 64, limit: int | None = None, name: str = "data"
                 ) -> Iterator[torch.Tensor]:
    """Batches ``(n, C, H, W)`` of model inputs from ``data``: a ready float tensor
    ``(N, C, H, W)`` is split as it is (``preprocess`` must then be None: the tensor is already
    what the model takes); anything :func:`as_image_source` accepts goes through ``preprocess``.
    ``limit`` caps the number of items (and is the stream limit)."""
    from ..checks import check_int

    bs = check_int("batch_size", batch_size)
    if isinstance(data, torch.Tensor) and data.is_floating_point():
        if data.dim() != 4:
            raise ValueError(f"{name}: a float tensor is read as model inputs (N, C, H, W), got "
                             f"shape {tuple(data.shape)} (add a batch dimension with "
                             "x.unsqueeze(0), or pass raw images)")
        if data.shape[-1] in (1, 3, 4) and data.shape[1] not in (1, 3, 4):
            raise ValueError(f"{name}: a float tensor is read as model inputs (N, C, H, W), and "
                             f"shape {tuple(data.shape)} looks channels-last (N, H, W, C): move "
                             "the channels first with x.permute(0, 3, 1, 2)")
        if preprocess is not None:
            raise ValueError(f"preprocess: {name} is already a model-input tensor "
                             f"{tuple(data.shape)}; pass preprocess=None or give the raw images")
        n = data.shape[0] if limit is None else min(int(limit), data.shape[0])
        for start in range(0, n, bs):
            yield data[start:min(n, start + bs)]
        return
    src = as_image_source(data, name=name)
    for _, x in src.batches(None, preprocess, batch_size=bs, limit=limit):
        yield x


def _is_torch_dataset(obj: Any) -> bool:
    return isinstance(obj, torch.utils.data.Dataset) and hasattr(obj, "__getitem__") \
        and hasattr(obj, "__len__")


def _from_dataset_dict(dd: datasets.DatasetDict, split: str | None) -> datasets.Dataset:
    if split is None:
        if len(dd) != 1:
            first = next(iter(dd))
            raise ValueError(f"split: the data has splits {list(dd)}; pick one, e.g. "
                             f"data[{first!r}] (or split={first!r} where the function takes it)")
        split = next(iter(dd))
    if split not in dd:
        raise ValueError(f"split: expected one of {list(dd)}, got {split!r}")
    return dd[split]


def _open_folder(folder: Path, name: str) -> Any:
    files = [p for p in folder.rglob("*") if p.is_file()]
    if not files:
        raise ValueError(f"{name}: folder {str(folder)!r} contains no files")
    if any((folder / f).is_file() for f in ("dataset_info.json", "dataset_dict.json")):
        return datasets.load_from_disk(str(folder))  # written by save_to_disk
    images = set(Image.registered_extensions())
    if any(p.suffix.lower() in images for p in files):
        return datasets.load_dataset("imagefolder", data_dir=str(folder))
    try:
        return datasets.load_dataset(str(folder))
    except Exception as err:  # noqa: BLE001 - re-raised naming the argument
        kinds = sorted({p.suffix or p.name for p in files})[:6]
        raise ValueError(f"{name}: folder {str(folder)!r} holds no image files (found "
                         f"{kinds}) and datasets.load_dataset cannot read it either "
                         f"({type(err).__name__}: {err})") from err


def open_dataset(data: Any, split: str | None, name: str = "data") -> Any:
    """A folder path -> its data set: one saved with ``save_to_disk`` is loaded from disk, one
    holding image files is read as ``imagefolder`` (class subfolders), any other (Parquet,
    Arrow, CSV, JSON files) with ``datasets.load_dataset(folder)``; a ``DatasetDict`` -> the
    ``split`` asked for (or its only one); anything else unchanged."""
    if isinstance(data, (str, os.PathLike)) and Path(data).is_dir():
        data = _open_folder(Path(data), name)
    if isinstance(data, datasets.DatasetDict):
        data = _from_dataset_dict(data, split)
    return data


def as_image_source(data: Any, image_column: str | None = None,
                    label_column: str | None = None, class_names: Sequence[str] | None = None,
                    *, labels: Sequence[Any] | None = None, split: str | None = None,
                    buffer_size: int = 256, seed: int = 0, max_value: float | None = None,
                    name: str = "data") -> ImageSource:
    """Wrap any supported image data as an :class:`ImageSource`.

    Accepted ``data``:

    - ``datasets.Dataset``: the first ``Image`` feature and first ``ClassLabel`` feature (or an
      int column named ``label``/``labels``) unless ``image_column``/``label_column`` say
      otherwise; an ``Image`` column named ``mask`` is read as the mask. Rows are read row
      first (``ds[i][col]``), so only the requested images are decoded.
    - ``datasets.IterableDataset``: shuffled with ``shuffle(seed=seed, buffer_size=buffer_size)``
      (``buffer_size <= 1``: stream order), read lazily into a buffer as indices are requested.
      ``length`` stays None until the end is reached.
    - ``datasets.DatasetDict`` and a folder path (``str``/``Path``; read with
      ``datasets.load_dataset("imagefolder", data_dir=...)``, labels from sub-folder names):
      the split named by ``split``, or the only one.
    - a torch map-style ``Dataset`` whose items are ``(image, label)``, an image, or a dict;
      ``class_names`` default to its ``classes`` attribute.
    - a list/tuple of file paths, PIL images or arrays, or of ``(image, label)`` pairs.
    - a numpy array / torch tensor ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` (channel
      first when dim 1 is 1, 3 or 4 and the last dim is not), uint8 or floats in [0, 1]; or a
      pair ``(images, labels)``.

    ``labels`` gives labels for lists and arrays. ``max_value``: the white level of high-bit
    images (:func:`to_rgb`). Raises ValueError for empty data; error messages name the
    argument as ``name`` (the caller's parameter name).
    """
    if isinstance(data, ImageSource):
        return data
    try:
        return _as_image_source(data, image_column, label_column, class_names, labels, split,
                                buffer_size, seed, max_value)
    except (TypeError, ValueError) as err:
        msg = str(err)
        if name != "data" and msg.startswith("data:"):
            raise type(err)(f"{name}:" + msg[len("data:"):]) from err
        raise


def _as_image_source(data: Any, image_column: str | None, label_column: str | None,
                     class_names: Sequence[str] | None, labels: Sequence[Any] | None,
                     split: str | None, buffer_size: int, seed: int,
                     max_value: float | None) -> ImageSource:
    if not isinstance(buffer_size, int) or buffer_size < 0:
        raise ValueError(f"buffer_size: expected an int >= 0, got {buffer_size!r}")
    if class_names is not None:
        if isinstance(class_names, (str, bytes)):
            raise TypeError(f"class_names: expected a sequence of names, got the string "
                            f"{class_names!r}")
        names = [str(c) for c in class_names]
        if len(set(names)) != len(names):
            raise ValueError(f"class_names: expected distinct names, got repeats "
                             f"{sorted({n for n in names if names.count(n) > 1})[:5]}")
    reader: Reader
    data = open_dataset(data, split)
    if isinstance(data, datasets.Dataset):
        if len(data) == 0:
            raise ValueError("data: the Dataset is empty")
        reader = HFReader(data, image_column, label_column)
    elif isinstance(data, datasets.IterableDataset):
        reader = StreamReader(data, image_column, label_column, buffer_size, seed)
    elif isinstance(data, (str, os.PathLike)):
        if not Path(data).exists():
            raise ValueError(f"data: path {str(data)!r} does not exist")
        reader = ListReader([data], labels)
    elif isinstance(data, (np.ndarray, torch.Tensor)):
        if data.ndim == 0 or data.shape[0] == 0:
            raise ValueError(f"data: the array is empty (shape {tuple(data.shape)})")
        reader = ArrayReader(data, labels)
    elif (isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], (np.ndarray,
          torch.Tensor)) and data[0].ndim >= 3 and hasattr(data[1], "__len__")
          and not _is_image_like(data[1]) and len(data[1]) == len(data[0])):
        return _as_image_source(data[0], image_column, label_column, class_names, data[1],
                                split, buffer_size, seed, max_value)
    elif _is_torch_dataset(data):
        if len(data) == 0:
            raise ValueError("data: the torch Dataset is empty")
        reader = TorchReader(data, image_column, label_column)
    elif isinstance(data, (list, tuple)):
        if len(data) == 0:
            raise ValueError("data: the list is empty")
        items = list(data)
        if labels is None and all(isinstance(x, (tuple, list)) and len(x) == 2 for x in items):
            labels = [x[1] for x in items]
            items = [x[0] for x in items]
        if not _is_image_like(items[0]):
            raise TypeError("data: expected a list of images (PIL, paths, arrays), got a list of "
                            f"{type(items[0]).__name__}")
        reader = ListReader(items, labels)
    else:
        raise TypeError("data: expected a datasets.Dataset/IterableDataset, a torch Dataset, a "
                        "folder path, a list of images or an array, got "
                        f"{type(data).__name__}")
    if labels is not None and not isinstance(reader, (ListReader, ArrayReader)):
        raise ValueError(f"labels: only lists and arrays take labels=; {reader.kind} data "
                         "carries its own (use label_column=)")
    if labels is not None and reader.length is not None and len(labels) != reader.length:
        raise ValueError(f"labels: got {len(labels)} labels for {reader.length} images")
    if labels is not None:
        _check_labels(labels, class_names)
    return ImageSource(reader, class_names, max_value)


def _check_labels(labels: Sequence[Any], class_names: Sequence[str] | None) -> None:
    """Labels given with a list or an array: class indices ``>= 0`` (None: no label), below
    ``len(class_names)`` when names are given. Anything else used to be dropped in silence."""
    values = labels.tolist() if isinstance(labels, (np.ndarray, torch.Tensor)) else list(labels)
    bad = [v for v in values if v is not None and (isinstance(v, (bool, np.bool_)) or not
                                                   isinstance(v, (int, np.integer)) or v < 0)]
    if bad:
        raise TypeError(f"labels: expected class indices (ints >= 0, or None for no label), got "
                        f"{bad[:3]!r}; map names to indices and pass the names as class_names=")
    if class_names is not None:
        high = [v for v in values if v is not None and v >= len(class_names)]
        if high:
            raise ValueError(f"labels: {sorted(set(high))[:5]} out of range for "
                             f"{len(class_names)} class_names")
