"""Reading raw records from any data ``as_image_source`` accepts, without decoding more than needed.

Profiling needs what the image adapter hides: the encoded bytes or file path (for the file size),
a per-row place to catch decoding errors, and sampling without ``len`` on streams. These helpers
give that, and fall back to :class:`~visloupe.core.data.ImageSource` for everything else.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image
from visloupe.core.data import ImageSource, as_image_source
from visloupe.core.data.source import (
    LABEL_NAMES,
    ArrayReader,
    HFReader,
    ListReader,
    StreamReader,
    open_dataset,
    pick_columns,
)

logger = logging.getLogger(__name__)

DEFAULT_STREAM_SAMPLE = 1000
"""Rows read from a stream (``IterableDataset``) when the caller gives no ``sample``/``limit``."""


@dataclass
class RawRecord:
    """One record before decoding: ``image`` as stored (bytes dict, path, PIL, array),
    ``label`` as stored, or ``error`` when even fetching the record failed."""

    index: int
    image: Any = None
    label: Any = None
    error: str | None = None


@dataclass
class RecordStream:
    """Records to profile plus what is known about the whole data set."""

    records: Iterator[RawRecord]
    total: int | None        # rows that will be yielded (None: unknown until the stream ends)
    n_total: int | None      # rows in the whole data set (None: unknown, a stream)
    sampled: bool
    class_names: list[str] | None
    kind: str
    label_column: str | None = None
    requested: int | None = None  # rows asked of a stream (fewer came: it was read whole)


def hf_columns(features: Mapping[str, Any], image_column: str | None,
               label_column: str | None) -> tuple[str, str | None]:
    """Image and label column of an HF schema.

    An explicit ``label_column`` that is not categorical (ClassLabel or integer) raises
    ValueError naming it; an auto-detected label-named column that is not categorical (float,
    string) is ignored with a warning, so the profile has no labels rather than wrong ones.
    """
    image, label, _ = pick_columns(features, image_column, label_column)
    if label is None and label_column is None:
        odd = [c for c in features if c in LABEL_NAMES and c != image]
        if odd:
            col = odd[0]
            warnings.warn(
                f"label_column: column {col!r} is {features[col]!r}, not categorical (ClassLabel "
                "or integer); treating the data as unlabelled. Encode it with "
                f"ds.class_encode_column({col!r}) to use it as the label.", stacklevel=3)
    return image, label


def label_value(value: Any) -> tuple[int | None, bool]:
    """(class index or None, ok): ints (and integral floats/tensors) are labels, negative means
    "no label" (ClassLabel's -1); anything else is not a categorical label (ok=False)."""
    if value is None:
        return None, True
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None, False
        value = value.item()
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        return None, False
    if isinstance(value, (int, np.integer)):
        return (None if int(value) < 0 else int(value)), True
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return (None if value < 0 else int(value)), True
    return None, False


def _sample_indices(n: int, sample: int | None, seed: int) -> tuple[list[int], bool]:
    if sample is None or sample >= n:
        return list(range(n)), False
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=sample, replace=False)), True


def _hf_records(ds: datasets.Dataset, image: str, label: str | None, indices: list[int],
                batch_size: int = 64) -> Iterator[RawRecord]:
    cols = [image] + ([label] if label else [])
    raw = ds.with_format(None).select_columns(cols).cast_column(
        image, datasets.Image(decode=False))
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        try:
            batch = raw[chunk] if len(chunk) > 1 else {k: [v] for k, v in raw[chunk[0]].items()}
        except Exception as err:  # noqa: BLE001 - fall back to row by row to isolate the bad one
            logger.debug("batch read failed (%s); reading rows one by one", err)
            for i in chunk:
                try:
                    row = raw[i]
                    yield RawRecord(i, row[image], row[label] if label else None)
                except Exception as row_err:  # noqa: BLE001 - reported per row
                    yield RawRecord(i, error=f"cannot read row: {row_err}")
            continue
        for k, i in enumerate(chunk):
            yield RawRecord(i, batch[image][k], batch[label][k] if label else None)


def _stream_records(ds: datasets.IterableDataset, image_column: str | None,
                    label_column: str | None, sample: int, seed: int,
                    buffer_size: int) -> tuple[Iterator[RawRecord], list[str] | None, str | None]:
    ds = ds.with_format(None)
    if buffer_size > 1:
        ds = ds.shuffle(seed=seed, buffer_size=buffer_size)
    features = ds.features
    if features is not None:
        image, label = hf_columns(features, image_column, label_column)
        if isinstance(features[image], datasets.Image):
            ds = ds.cast_column(image, datasets.Image(decode=False))
        feat = features[label] if label else None
        names = list(feat.names) if isinstance(feat, datasets.ClassLabel) else None
    else:  # schema unknown (e.g. after .map): infer it from the first row, as the adapter does
        first = next(iter(ds), None)
        if first is None:
            raise ValueError("source: the IterableDataset is empty")
        features = datasets.Features({
            k: datasets.Image() if isinstance(v, Image.Image) else datasets.Value("int64")
            if isinstance(v, (int, np.integer)) and not isinstance(v, bool)
            else datasets.Value("string") for k, v in first.items()})
        image, label = hf_columns(features, image_column, label_column)
        names = None

    def gen() -> Iterator[RawRecord]:
        for i, row in enumerate(itertools.islice(iter(ds), sample)):
            yield RawRecord(i, row.get(image), row.get(label) if label else None)

    return gen(), names, label


def _source_records(src: ImageSource, sample: int | None, seed: int) -> RecordStream:
    reader = src._reader
    n = src.length
    if n is None:  # a stream already wrapped: read its first `sample` rows in buffer order
        count = DEFAULT_STREAM_SAMPLE if sample is None else sample

        def gen_stream() -> Iterator[RawRecord]:
            for i in range(count):
                try:
                    image, label, _ = reader.get(i)
                except IndexError:
                    return
                except Exception as err:  # noqa: BLE001 - reported per row
                    yield RawRecord(i, error=f"cannot read item: {err}")
                    continue
                yield RawRecord(i, image, label)

        return RecordStream(gen_stream(), None, None, True, src.class_names, src.kind,
                            requested=count)
    indices, sampled = _sample_indices(n, sample, seed)

    def gen() -> Iterator[RawRecord]:
        for i in indices:
            try:
                image, label, _ = reader.get(i)
            except Exception as err:  # noqa: BLE001 - reported per row
                yield RawRecord(i, error=f"cannot read item: {type(err).__name__}: {err}")
                continue
            yield RawRecord(i, image, label)

    return RecordStream(gen(), len(indices), n, sampled, src.class_names, src.kind)


def records(source: Any, sample: int | None, seed: int, image_column: str | None,
            label_column: str | None, buffer_size: int, split: str | None = None
            ) -> RecordStream:
    """Raw records of ``source`` for profiling (see :func:`profile_dataset` for the rules)."""
    data = open_dataset(source, split, "source")
    is_folder = isinstance(source, (str, os.PathLike)) and data is not source
    kind_prefix = f"folder {str(source)!r}: " if is_folder else ""
    if isinstance(data, ImageSource) and isinstance(data._reader, HFReader):
        reader = data._reader
        ds, image, label = reader.ds, reader.image, reader.label
        names = data.class_names
    elif isinstance(data, datasets.Dataset):
        if len(data) == 0:
            raise ValueError("source: the Dataset is empty")
        ds = data
        image, label = hf_columns(ds.features, image_column, label_column)
        feat = ds.features[label] if label else None
        names = list(feat.names) if isinstance(feat, datasets.ClassLabel) else None
    elif isinstance(data, datasets.IterableDataset):
        count = DEFAULT_STREAM_SAMPLE if sample is None else sample
        if sample is None:
            logger.info("profiling the first %d rows of the stream (pass sample= for more)",
                        count)
        gen, names, label = _stream_records(data, image_column, label_column, count, seed,
                                            buffer_size)
        return RecordStream(gen, None, None, True, names, "datasets.IterableDataset", label,
                            requested=count)
    else:
        src = as_image_source(data, image_column, label_column, buffer_size=buffer_size,
                              seed=seed)
        stream = _source_records(src, sample, seed)
        stream.kind = kind_prefix + stream.kind
        return stream
    indices, sampled = _sample_indices(len(ds), sample, seed)
    return RecordStream(_hf_records(ds, image, label, indices), len(indices), len(ds), sampled,
                        names, kind_prefix + "datasets.Dataset", label)


# ---------------------------------------------------------------------------------------------
# ImageSource helpers shared by embed / confusion / class views


def as_source(source: Any, *, arg: str = "source", buffer_size: int = 256,
              seed: int = 0) -> ImageSource:
    """``as_image_source`` with a folder read once and errors naming ``arg``."""
    if isinstance(source, ImageSource):
        return source
    try:
        return as_image_source(open_dataset(source, None, "source"), buffer_size=buffer_size,
                               seed=seed)
    except (TypeError, ValueError) as err:
        msg = str(err)
        if msg.startswith("data:"):
            msg = f"{arg}:" + msg[len("data:"):]
        raise type(err)(msg) from err


def resolve_indices(src: ImageSource, indices: Sequence[int] | None, limit: int | None,
                    arg: str = "indices") -> list[int]:
    """The item indices to process: ``indices`` as given (checked), else every item, else the
    first ``limit`` (default :data:`DEFAULT_STREAM_SAMPLE`) of a stream."""
    if indices is not None:
        out = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        if not out:
            raise ValueError(f"{arg}: expected at least one index, got none")
        n = src.length
        bad = [i for i in out if i < 0 or (n is not None and i >= n)]
        if bad:
            raise ValueError(f"{arg}: indices {bad[:5]} are out of range for {n} items")
        return out
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"limit: expected a positive int or None, got {limit!r}")
    n = src.length
    if n is None:
        count = DEFAULT_STREAM_SAMPLE if limit is None else int(limit)
        got = 0
        for i in range(count):  # pull lazily; stop at the end of a short stream
            try:
                src._reader.get(i)
            except IndexError:
                break
            got += 1
        return list(range(got))
    return list(range(n if limit is None else min(n, int(limit))))


def all_labels(src: ImageSource, indices: Sequence[int]) -> list[int | None]:
    """Labels of ``indices``; HF data sets read only the label column (no image decoding)."""
    reader = src._reader
    if isinstance(reader, HFReader):
        if reader.label is None:
            return [None] * len(indices)
        col = reader.ds.select_columns([reader.label])
        values = col[list(indices)][reader.label] if len(indices) else []
        return [label_value(v)[0] for v in values]
    out = []
    for i in indices:
        try:
            out.append(label_value(reader.get(i)[1])[0])
        except Exception:  # noqa: BLE001 - an unreadable item has no usable label
            out.append(None)
    return out


def _item_digest(h: Any, item: Any) -> bool:
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
        return _item_digest(h, item["path"])
    else:
        return False
    return True


def data_fingerprint(src: ImageSource, indices: Sequence[int]) -> str:
    """A key for the data behind ``indices``.

    HF data sets: their ``_fingerprint`` plus the columns. In-memory lists and arrays: every
    item (pixels, or path + size + modification time), so an edited item changes the key.
    Torch datasets and streams: the length, kind and a hash of 8 evenly spaced items (an edit
    elsewhere is not seen; pass ``cache=False`` after changing such data in place).
    """
    h = hashlib.blake2b(digest_size=16)
    reader = src._reader
    h.update(repr((src.kind, src.length, src.class_names)).encode())
    idx = np.asarray(indices, dtype=np.int64)
    h.update(hashlib.blake2b(idx.tobytes(), digest_size=16).digest())
    fp = getattr(getattr(reader, "ds", None), "_fingerprint", None)
    if isinstance(reader, HFReader) and fp:
        h.update(repr((fp, reader.image, reader.label)).encode())
        return h.hexdigest()
    if isinstance(reader, ArrayReader):
        _item_digest(h, reader.arr)
        if reader.labels is not None:
            h.update(repr(list(reader.labels)).encode())
        return h.hexdigest()
    if isinstance(reader, ListReader):
        full = hashlib.blake2b(digest_size=16)
        if all(_item_digest(full, reader.images[int(i)]) for i in idx):
            h.update(full.digest())
            if reader.labels is not None:
                h.update(repr([reader.labels[int(i)] for i in idx]).encode())
            return h.hexdigest()
    picks = sorted(set(np.linspace(0, len(idx) - 1, num=min(8, len(idx))).round().astype(int)))
    for p in picks:
        sample = src[int(idx[p])]
        img = sample.image
        h.update(repr((int(idx[p]), img.mode, img.size, sample.label)).encode())
        h.update(img.tobytes())
    return h.hexdigest()


def is_stream(src: ImageSource) -> bool:
    return isinstance(src._reader, StreamReader)


def decode(image: Any) -> Image.Image:
    """Decode one stored image (bytes dict, path, PIL, array) to PIL, loading its pixels."""
    from visloupe.core.data import to_pil

    img = to_pil(image, "image")
    img.load()
    return img


class BatchReader:
    """Decoded images and model inputs of index batches. HF data sets read a batch of rows at
    once and decode only the image column (not masks or other images); other data go item by
    item through the :class:`ImageSource`."""

    def __init__(self, src: ImageSource) -> None:
        self.src = src
        reader = src._reader
        self._column = None
        if isinstance(reader, HFReader):
            self._column = reader.image
            self._ds = reader.ds.select_columns([reader.image])

    def images(self, chunk: Sequence[int]) -> list[Image.Image]:
        if self._column is not None and len(chunk) > 1:
            from visloupe.core.data import to_pil

            return [to_pil(v, "data") for v in self._ds[list(chunk)][self._column]]
        return [self.src[i].image for i in chunk]

    def tensors(self, chunk: Sequence[int], preprocess: Any) -> torch.Tensor:
        """``(N, C, H, W)`` model inputs with the same checks as ``ImageSource.tensors``."""
        if self._column is None:
            return self.src.tensors(chunk, preprocess)
        from visloupe.core.data import pil_to_tensor

        fn = preprocess if preprocess is not None else pil_to_tensor
        out = []
        for i, img in zip(chunk, self.images(chunk), strict=True):
            x = fn(img)
            if not isinstance(x, torch.Tensor) or x.dim() != 3:
                got = (f"a tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor)
                       else type(x).__name__)
                raise TypeError(f"preprocess: expected it to return a Tensor (C, H, W), got {got}")
            if out and x.shape != out[0].shape:
                raise ValueError(f"preprocess: returned shape {tuple(x.shape)} for item {i} but "
                                 f"{tuple(out[0].shape)} for item {chunk[0]}; images of different "
                                 "sizes need a resize in preprocess")
            out.append(x)
        return torch.stack(out)


def check_model_args(model: Any, batch_size: Any, preprocess: Any) -> None:
    """The argument checks shared by the functions that run a model over a data set."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if preprocess is not None and not callable(preprocess):
        raise TypeError(f"preprocess: expected a callable PIL.Image -> Tensor (C, H, W), got "
                        f"{type(preprocess).__name__}")
