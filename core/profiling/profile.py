"""Per-image statistics of a data set, per-class summaries, class means and sample picks.

The statistics follow the dataset views of Know Your Data (knowyourdata.withgoogle.com/docs):
size, aspect, mode, brightness, contrast, colourfulness (Hasler & Süsstrunk, "Measuring
colourfulness in natural images", SPIE 2003) and sharpness as the variance of the Laplacian
(Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy: a comparative study",
ICPR 2000). A bad row (corrupt file, zero-size image, unreadable record) gets an ``error`` string
and NaN statistics; it never stops the profile.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from visloupe.core.data import as_image_source, check_max_value, records, rgb_pixels, to_rgb
from visloupe.core.data.records import RawRecord, decode, label_value

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int | None], None]

STAT_COLUMNS = ("width", "height", "aspect", "brightness", "contrast", "colourfulness",
                "sharpness", "file_size")
COLUMNS = ("index", "label", "class_name", "width", "height", "aspect", "mode", "channels",
           "brightness", "contrast", "colourfulness", "sharpness", "file_size", "error")

# ITU-R BT.601 luma weights (what PIL's "L" conversion uses, here without rounding)
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def image_stats(img: Image.Image) -> dict[str, float]:
    """Brightness, contrast, colourfulness and sharpness of one image.

    The image is first shown as RGB (:func:`~visloupe.core.data.to_rgb`: grey -> RGB,
    transparency composited on white), scaled to [0, 1]; luma ``Y = 0.299 R + 0.587 G +
    0.114 B``.

    - ``brightness``: mean of Y, in [0, 1].
    - ``contrast``: standard deviation of Y (population, ddof 0), in [0, 0.5].
    - ``colourfulness``: Hasler & Süsstrunk's M on the 0..255 scale of the paper, so its
      thresholds apply (about 0 "not colourful", 33 "moderately", 59 "quite", 82 "highly"):
      ``rg = R - G``, ``yb = (R + G) / 2 - B``,
      ``M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2)``.
    - ``sharpness``: variance of the 4-neighbour Laplacian ``[[0,1,0],[1,-4,1],[0,1,0]]`` of Y
      on the 0..255 scale over the interior pixels (no padding); NaN below 3x3 pixels.
    """
    rgb = np.asarray(to_rgb(img), dtype=np.uint8)
    if rgb.size == 0:
        raise ValueError(f"image: zero-size image ({img.width}x{img.height})")
    return {k: float(v[0]) for k, v in stats_batch(rgb[None]).items()}


def stats_batch(rgb_u8: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`image_stats` of a stack ``(B, H, W, 3)`` of uint8 RGB images of one size, as
    arrays ``(B,)``; vectorised so small images do not pay numpy's per-call overhead."""
    rgb = rgb_u8.astype(np.float32) * np.float32(1 / 255)
    b, h, w, _ = rgb.shape
    y = rgb @ LUMA                                                    # (B, H, W)
    flat = y.reshape(b, -1)
    r, g, bl = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = ((r - g) * 255.0).reshape(b, -1)
    yb = ((0.5 * (r + g) - bl) * 255.0).reshape(b, -1)
    colourful = np.sqrt(rg.var(axis=1, dtype=np.float64) + yb.var(axis=1, dtype=np.float64)) \
        + 0.3 * np.sqrt(rg.mean(axis=1, dtype=np.float64) ** 2
                        + yb.mean(axis=1, dtype=np.float64) ** 2)
    if h >= 3 and w >= 3:
        y255 = y * np.float32(255.0)
        lap = (y255[:, :-2, 1:-1] + y255[:, 2:, 1:-1] + y255[:, 1:-1, :-2] + y255[:, 1:-1, 2:]
               - 4.0 * y255[:, 1:-1, 1:-1])
        sharp = lap.reshape(b, -1).var(axis=1, dtype=np.float64)
    else:
        sharp = np.full(b, np.nan)
    return {"brightness": flat.mean(axis=1, dtype=np.float64),
            "contrast": flat.std(axis=1, dtype=np.float64),
            "colourfulness": colourful, "sharpness": sharp}


def _file_size(image: Any) -> float:
    """Size in bytes of the stored encoding: bytes held in memory or the file at a path."""
    if isinstance(image, Mapping):
        data = image.get("bytes")
        if data is not None:
            return float(len(data))
        image = image.get("path")
    if isinstance(image, (str, os.PathLike)):
        try:
            return float(os.path.getsize(image))
        except OSError:
            return float("nan")
    if isinstance(image, (bytes, bytearray)):
        return float(len(image))
    return float("nan")


def _empty_row(index: int) -> dict[str, Any]:
    row: dict[str, Any] = {c: float("nan") for c in STAT_COLUMNS}
    row.update(index=index, label=None, class_name=None, mode=None, channels=float("nan"),
               error=None)
    return row


def _profile_row(rec: RawRecord, class_names: Sequence[str] | None, bad_labels: list[Any],
                 max_value: float | None = None) -> tuple[dict[str, Any], np.ndarray | None]:
    """The row's metadata and its RGB pixels (None when the row failed); high-bit images are
    scaled by the data set's ``max_value`` (see ``to_rgb``)."""
    row = _empty_row(rec.index)
    label, ok = label_value(rec.label)
    if not ok:
        bad_labels.append(rec.label)
    row["label"] = label
    if label is not None and class_names is not None and label < len(class_names):
        row["class_name"] = class_names[label]
    elif label is not None:
        row["class_name"] = str(label)
    if rec.error is not None:
        row["error"] = rec.error
        return row, None
    row["file_size"] = _file_size(rec.image)
    if row["file_size"] == 0:
        row["error"] = "empty file (0 bytes)"
        return row, None
    if isinstance(rec.image, (np.ndarray, torch.Tensor)):  # in memory: no PIL round trip
        try:
            mode, rgb = rgb_pixels(rec.image, max_value, arg="image")
        except Exception as err:  # noqa: BLE001 - bad arrays are reported per row
            row["error"] = f"cannot decode image: {type(err).__name__}: {err}"
            return row, None
        h, w = rgb.shape[:2]
        row.update(width=float(w), height=float(h), mode=mode,
                   channels=float(Image.getmodebands(mode)))
        if w == 0 or h == 0:
            row["error"] = f"zero-size image ({w}x{h})"
            return row, None
        row["aspect"] = w / h
        return row, rgb
    try:
        if isinstance(rec.image, (bytes, bytearray)):
            img = Image.open(io.BytesIO(rec.image))
            img.load()
        else:
            img = decode(rec.image)
    except Exception as err:  # noqa: BLE001 - corrupt files are reported per row
        row["error"] = f"cannot decode image: {type(err).__name__}: {err}"
        return row, None
    w, h = img.size
    row.update(width=float(w), height=float(h), mode=img.mode, channels=float(len(img.getbands())))
    if w == 0 or h == 0:
        row["error"] = f"zero-size image ({w}x{h})"
        return row, None
    row["aspect"] = w / h
    try:
        rgb = np.asarray(to_rgb(img, max_value), dtype=np.uint8)
    except Exception as err:  # noqa: BLE001 - odd modes etc. are reported per row
        row["error"] = f"cannot convert to RGB: {type(err).__name__}: {err}"
        return row, None
    return row, rgb


_CHUNK = 64  # rows per progress report and per vectorised batch
_BATCH_PIXELS = 1 << 20  # images are stacked for vectorised statistics up to ~1 M pixels


def _fill_stats(rows: list[dict[str, Any]], pixels: list[np.ndarray | None]) -> None:
    """Compute the statistics of a chunk of rows, stacking equal-size small images."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, rgb in enumerate(pixels):
        if rgb is not None:
            groups.setdefault(rgb.shape, []).append(k)
    for shape, members in groups.items():
        per = max(1, _BATCH_PIXELS // max(1, shape[0] * shape[1]))
        for start in range(0, len(members), per):
            part = members[start:start + per]
            try:
                stats = stats_batch(np.stack([pixels[k] for k in part]))
            except Exception as err:  # noqa: BLE001 - reported per row, never a crash
                for k in part:
                    rows[k]["error"] = f"cannot compute statistics: {type(err).__name__}: {err}"
                continue
            for key, values in stats.items():
                for k, v in zip(part, values, strict=True):
                    rows[k][key] = float(v)


def _check_common(sample: Any, seed: Any, buffer_size: Any, progress: Any) -> None:
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, (int, np.integer))
                               or sample < 1):
        raise ValueError(f"sample: expected a positive int or None, got {sample!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, (int, np.integer)) \
            or buffer_size < 0:
        raise ValueError(f"buffer_size: expected an int >= 0, got {buffer_size!r}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress: expected a callable(done, total) or None, got "
                        f"{type(progress).__name__}")


def profile_dataset(source: Any, sample: int | None = None, *, seed: int = 0,
                    image_column: str | None = None, label_column: str | None = None,
                    buffer_size: int = 256, progress: ProgressCallback | None = None,
                    split: str | None = None, max_value: float | None = None) -> pd.DataFrame:
    """One row of statistics per image: a table for class balance and histograms.

    Columns: ``index`` (the item's position in ``source``), ``label`` (int or None),
    ``class_name``, ``width``, ``height``, ``aspect`` (width / height), ``mode`` (stored PIL
    mode), ``channels``, ``brightness``, ``contrast``, ``colourfulness``, ``sharpness`` (see
    :func:`image_stats`), ``file_size`` (bytes of the stored encoding when the data holds bytes
    or paths, else NaN) and ``error`` (None, or why the row could not be profiled; its
    statistics are then NaN).

    ``source``: anything ``as_image_source`` accepts.

    - ``datasets.Dataset`` (and folders, read as ``imagefolder``): rows are read in small
      batches with the image column cast to ``Image(decode=False)`` and decoded one at a time,
      so a corrupt file spoils only its row. ``sample=n`` profiles ``n`` rows drawn without
      replacement with ``seed`` (listed in index order).
    - ``datasets.IterableDataset``: the first ``sample`` rows (default
      :data:`STREAM_LIMIT`) after ``ds.shuffle(seed=seed, buffer_size=buffer_size)``;
      ``len`` is never called. ``index`` is the position in that shuffled stream, the same
      order ``as_image_source(ds, seed=seed, buffer_size=buffer_size)`` gives. A stream that
      ends before ``sample`` rows is profiled whole (``sampled`` False, ``n_total`` its size).
    - torch datasets, lists and arrays, through ``as_image_source``.

    Labels: a ``ClassLabel`` or integer column; negative values mean "no label". Data without a
    label column gets ``label`` None. An explicit ``label_column`` that is not categorical
    (float, string) raises ValueError naming it; an auto-detected one is ignored with a warning
    (encode strings with ``ds.class_encode_column``). Per-item labels of other sources that are
    not integers are dropped with one warning.

    High-bit images (16-bit, float) are scaled to 8 bits by one white level for the whole data
    set, as they are shown: ``max_value`` if given (``4095`` for 12-bit data in 16 bits), else
    an ``ImageSource``'s own, else the mode's range (see ``to_rgb``).

    ``df.attrs``: ``sampled`` (whether rows are a subset), ``n_total`` (rows in the data, None
    for a stream), ``seed``, ``source`` (a description). ``progress(done, total)`` is called
    every 64 rows or so (for streams ``total`` is the number of rows asked for).
    """
    _check_common(sample, seed, buffer_size, progress)
    check_max_value(max_value)
    stream = records(source, None if sample is None else int(sample), int(seed), image_column,
                     label_column, int(buffer_size), split)
    white = stream.max_value if max_value is None else float(max_value)
    rows: list[dict[str, Any]] = []
    bad_labels: list[Any] = []
    total = stream.total if stream.total is not None else stream.requested
    chunk_rows: list[dict[str, Any]] = []
    chunk_pix: list[np.ndarray | None] = []
    chunk_values = 0  # pixel values held in chunk_pix

    def flush() -> None:
        nonlocal chunk_values
        _fill_stats(chunk_rows, chunk_pix)
        rows.extend(chunk_rows)
        chunk_rows.clear()
        chunk_pix.clear()
        chunk_values = 0
        if progress is not None:
            progress(len(rows), total)

    for rec in stream.records:
        row, rgb = _profile_row(rec, stream.class_names, bad_labels, white)
        chunk_rows.append(row)
        chunk_pix.append(rgb)
        chunk_values += 0 if rgb is None else rgb.size
        if len(chunk_rows) >= _CHUNK or chunk_values > 3 * _BATCH_PIXELS:
            flush()
    if chunk_rows:
        flush()
    if bad_labels:
        warnings.warn(f"label_column: {len(bad_labels)} item(s) have labels that are not class "
                      f"indices (e.g. {bad_labels[0]!r} of type {type(bad_labels[0]).__name__}); "
                      "they are profiled without a label", stacklevel=2)
    n_total = stream.n_total
    sampled = stream.sampled
    if stream.n_total is None and stream.requested is not None and len(rows) < stream.requested:
        n_total, sampled = len(rows), False  # the stream ended before the sample was full
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["index"] = df["index"].astype("int64")
    df["label"] = pd.array([None if v is None or pd.isna(v) else int(v) for v in df["label"]],
                           dtype="Int64")
    for col in STAT_COLUMNS + ("channels",):
        df[col] = df[col].astype("float64")
    for col in ("class_name", "mode", "error"):  # missing values as None, not NaN
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    df.attrs.update(sampled=bool(sampled), n_total=n_total, seed=int(seed), source=stream.kind,
                    class_names=None if stream.class_names is None else list(stream.class_names))
    errors = int(df["error"].notna().sum())
    if errors:
        logger.info("%d of %d rows could not be profiled", errors, len(df))
    return df


def class_summary(profile: pd.DataFrame) -> pd.DataFrame:
    """Per-class counts and mean statistics of a :func:`profile_dataset` table.

    One row per label (unlabelled rows grouped under ``label`` <NA>), sorted by label, with
    ``count`` (rows), ``fraction`` (of all rows), ``errors`` (rows that failed) and the mean of
    every statistic over the rows that did not fail.
    """
    if not isinstance(profile, pd.DataFrame):
        raise TypeError(f"profile: expected the DataFrame from profile_dataset, got "
                        f"{type(profile).__name__}")
    missing = [c for c in ("label", "error", *STAT_COLUMNS) if c not in profile.columns]
    if missing:
        raise ValueError(f"profile: missing columns {missing}; expected a profile_dataset table")
    df = profile.copy()
    df["failed"] = df["error"].notna()
    grouped = df.groupby("label", dropna=False, sort=True)
    out = pd.DataFrame({
        "count": grouped.size(),
        "errors": grouped["failed"].sum().astype("int64"),
    })
    ok = df[~df["failed"]]
    means = ok.groupby("label", dropna=False, sort=True)[list(STAT_COLUMNS)].mean()
    out = out.join(means)
    if "class_name" in df.columns:
        names = df.groupby("label", dropna=False, sort=True)["class_name"].first()
        out.insert(0, "class_name", names)
    out.insert(2 if "class_name" in out.columns else 1, "fraction",
               out["count"] / max(len(df), 1))
    out = out.reset_index()
    out["label"] = out["label"].astype("Int64")
    return out


# ---------------------------------------------------------------------------------------------
# Class views


def _labels_from_profile(profile: pd.DataFrame) -> tuple[list[int], list[int | None]]:
    if "index" not in profile.columns or "label" not in profile.columns:
        raise ValueError("source_or_profile: a DataFrame must be a profile_dataset table with "
                         f"'index' and 'label' columns, got columns {list(profile.columns)}")
    ok = profile if "error" not in profile.columns else profile[profile["error"].isna()]
    labels = [None if pd.isna(v) else int(v) for v in ok["label"]]
    return [int(i) for i in ok["index"]], labels


def _pick_per_class(indices: Sequence[int], labels: Sequence[int | None], per_class: int | None,
                    seed: int) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, label in zip(indices, labels, strict=True):
        if label is not None:
            groups.setdefault(int(label), []).append(int(i))
    rng = np.random.default_rng(seed)
    out = {}
    for label in sorted(groups):
        members = groups[label]
        if per_class is not None and len(members) > per_class:
            members = sorted(int(members[k]) for k in
                             rng.choice(len(members), size=per_class, replace=False))
        out[label] = members
    return out


def class_samples(source_or_profile: Any, per_class: int = 8, *, seed: int = 0,
                  limit: int | None = None) -> dict[int, list[int]]:
    """``{label: indices}``: up to ``per_class`` items of every class, drawn with ``seed``
    (listed in index order), for sample grids.

    Takes a :func:`profile_dataset` table (rows with errors are skipped) or any data; HF data
    sets read only their label column. Streams use their first ``limit`` items (default
    :data:`STREAM_LIMIT`). Unlabelled items are left out.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) \
            or per_class < 1:
        raise ValueError(f"per_class: expected a positive int, got {per_class!r}")
    if isinstance(source_or_profile, pd.DataFrame):
        indices, labels = _labels_from_profile(source_or_profile)
    else:
        src = as_image_source(source_or_profile, name="source_or_profile")
        indices = src.indices(None, limit)
        labels = src.label_values(indices)
    return _pick_per_class(indices, labels, int(per_class), int(seed))


def _as_size(size: Any) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size: expected an int or (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"size: expected positive sizes, got {size!r}")
    return h, w


def class_means(source: Any, size: int | tuple[int, int] = (64, 64),
                max_per_class: int | None = None, *, seed: int = 0, limit: int | None = None,
                progress: ProgressCallback | None = None) -> dict[int, np.ndarray]:
    """``{label: mean image}``: the pixel-wise mean of each class's images, ``(H, W, 3)`` floats
    in [0, 1] for ``size`` = (height, width).

    Every image is shown as RGB (transparency on white) and resized (bilinear) to ``size``
    before averaging. ``max_per_class`` averages that many images per class drawn with ``seed``
    (all when None). Unreadable items are skipped (logged); unlabelled items are left out.
    Streams use their first ``limit`` items (default :data:`STREAM_LIMIT`).
    """
    h, w = _as_size(size)
    if max_per_class is not None and (isinstance(max_per_class, bool) or not isinstance(
            max_per_class, (int, np.integer)) or max_per_class < 1):
        raise ValueError(f"max_per_class: expected a positive int or None, got {max_per_class!r}")
    src = as_image_source(source, name="source")
    indices = src.indices(None, limit)
    picks = _pick_per_class(indices, src.label_values(indices), max_per_class, int(seed))
    total = sum(len(v) for v in picks.values())
    done = 0
    out: dict[int, np.ndarray] = {}
    for label, members in picks.items():
        acc = np.zeros((h, w, 3), dtype=np.float64)
        count = 0
        for i in members:
            try:
                img = src.rgb(i)
                if img.size != (w, h):
                    img = img.resize((w, h), Image.Resampling.BILINEAR)
                acc += np.asarray(img, dtype=np.float64)
                count += 1
            except Exception as err:  # noqa: BLE001 - a bad item must not spoil the class mean
                logger.warning("class_means: skipping item %d (%s)", i, err)
            done += 1
            if progress is not None:
                progress(done, total)
        if count:
            out[label] = (acc / (count * 255.0)).astype(np.float32)
    return out


# ---------------------------------------------------------------------------------------------
# Display helpers


def thumbnail(image: Image.Image, size: int = 48) -> Image.Image:
    """An RGB copy of ``image`` whose longer side is ``size`` pixels, aspect ratio kept.

    Shrinks with antialiasing (Lanczos) and enlarges small images (e.g. 8x8 digits) with
    nearest-neighbour so their pixels stay crisp. Transparency is composited on white.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"image: expected a PIL.Image, got {type(image).__name__}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size: expected a positive int, got {size!r}")
    w, h = image.size
    if w == 0 or h == 0:
        raise ValueError(f"image: zero-size image ({w}x{h}) has no thumbnail")
    rgb = to_rgb(image)
    scale = int(size) / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    if new == (w, h):
        return rgb.copy()
    method = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST
    return rgb.resize(new, method)


__all__ = ["class_means", "class_samples", "class_summary", "image_stats", "profile_dataset",
           "thumbnail"]
