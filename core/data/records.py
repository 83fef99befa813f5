"""Raw records of any data, for profiling: stored bytes or paths, per-row errors, sampling.

Profiling needs what :class:`~visloupe.core.data.ImageSource` hides: the encoded bytes or file
path (for the file size), a per-row place to catch decoding errors, and sampling without
``len`` on streams. :func:`records` gives that for every kind of data, with the same stream
policy as the rest of the data layer (:data:`~visloupe.core.data.source.STREAM_LIMIT`).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image

from .source import (
    STREAM_LIMIT,
    HFReader,
    ImageSource,
    as_image_source,
    infer_features,
    open_dataset,
    pick_columns,
    to_pil,
)

__all__ = ["RawRecord", "RecordStream", "decode", "hf_columns", "label_value", "records",
           "sample_indices"]

logger = logging.getLogger(__name__)

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
    max_value: float | None = None  # white level of high-bit images (see ``to_rgb``)


def hf_columns(features: Mapping[str, Any], image_column: str | None,
               label_column: str | None) -> tuple[str, str | None]:
    """Image and label column of an HF schema.

    An explicit ``label_column`` that is not categorical (ClassLabel or integer) raises
    ValueError naming it; an auto-detected label-named column that is not categorical (float,
    string) is ignored with a warning, so the profile has no labels rather than wrong ones.
    """
    image, label, _ = pick_columns(features, image_column, label_column)
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


def sample_indices(n: int, sample: int | None, seed: int) -> tuple[list[int], bool]:
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
        features = infer_features(first)
        image, label = hf_columns(features, image_column, label_column)
        names = None

    def gen() -> Iterator[RawRecord]:
        for i, row in enumerate(itertools.islice(iter(ds), sample)):
            yield RawRecord(i, row.get(image), row.get(label) if label else None)

    return gen(), names, label


def _source_records(src: ImageSource, sample: int | None, seed: int) -> RecordStream:
    n = src.length
    if n is None:  # a stream already wrapped: read its first `sample` rows in buffer order
        count = STREAM_LIMIT if sample is None else sample

        def gen_stream() -> Iterator[RawRecord]:
            for i in range(count):
                try:
                    image, label, _ = src.raw(i)
                except IndexError:
                    return
                except Exception as err:  # noqa: BLE001 - reported per row
                    yield RawRecord(i, error=f"cannot read item: {err}")
                    continue
                yield RawRecord(i, image, label)

        return RecordStream(gen_stream(), None, None, True, src.class_names, src.kind,
                            requested=count, max_value=src.max_value)
    indices, sampled = sample_indices(n, sample, seed)

    def gen() -> Iterator[RawRecord]:
        for i in indices:
            try:
                image, label, _ = src.raw(i)
            except Exception as err:  # noqa: BLE001 - reported per row
                yield RawRecord(i, error=f"cannot read item: {type(err).__name__}: {err}")
                continue
            yield RawRecord(i, image, label)

    return RecordStream(gen(), len(indices), n, sampled, src.class_names, src.kind,
                        max_value=src.max_value)


def records(source: Any, sample: int | None, seed: int, image_column: str | None,
            label_column: str | None, buffer_size: int, split: str | None = None
            ) -> RecordStream:
    """Raw records of ``source`` for profiling (see :func:`profile_dataset` for the rules)."""
    data = open_dataset(source, split, "source")
    is_folder = isinstance(source, (str, os.PathLike)) and data is not source
    kind_prefix = f"folder {str(source)!r}: " if is_folder else ""
    if isinstance(data, ImageSource):
        for arg, value in (("image_column", image_column), ("label_column", label_column)):
            if value is not None:
                raise ValueError(f"{arg}: an ImageSource has its columns already; pass "
                                 f"{arg}={value!r} to as_image_source instead")
    if isinstance(data, ImageSource) and isinstance(data._reader, HFReader) \
            and data._parent is None:
        reader = data._reader
        ds, image, label = reader.ds, reader.image, reader.label
        names = data.class_names
        max_value = data.max_value
    elif isinstance(data, datasets.Dataset):
        max_value = None
        if len(data) == 0:
            raise ValueError("source: the Dataset is empty")
        ds = data
        image, label = hf_columns(ds.features, image_column, label_column)
        feat = ds.features[label] if label else None
        names = list(feat.names) if isinstance(feat, datasets.ClassLabel) else None
    elif isinstance(data, datasets.IterableDataset):
        count = STREAM_LIMIT if sample is None else sample
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
    indices, sampled = sample_indices(len(ds), sample, seed)
    return RecordStream(_hf_records(ds, image, label, indices), len(indices), len(ds), sampled,
                        names, kind_prefix + "datasets.Dataset", label, max_value=max_value)


def decode(image: Any) -> Image.Image:
    """Decode one stored image (bytes dict, path, PIL, array) to PIL, loading its pixels."""
    img = to_pil(image, "image")
    img.load()
    return img


