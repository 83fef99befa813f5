"""Built-in data sets, made in memory without any download: ``shapes``, ``text``, ``digits``,
``photos``.

Each is a ``datasets.Dataset`` with ``Image`` and ``ClassLabel`` features (``text``: a string
column), so that the code path users take with Hub data sets is the same one the tutorials and
tests take. Builds are deterministic for given options and cached per process.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import datasets
import numpy as np
from PIL import Image

from .shapes import SHAPE_CLASSES, render_shapes
from .text import TEXT_CLASSES, generate_text

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))

# Default options per data set; a caller may pass only these names.
_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "shapes": {"train": {"n": 4000, "size": 32, "seed": 0},
               "test": {"n": 1000, "size": 32, "seed": 0}},
    "text": {"train": {"n": 2000, "seed": 0}, "test": {"n": 500, "seed": 0}},
    "digits": {"train": {"size": 32, "seed": 0, "test_fraction": 0.2},
               "test": {"size": 32, "seed": 0, "test_fraction": 0.2}},
    "photos": {"train": {"max_size": None}, "test": {"max_size": None}},
}


# Bumped whenever a generator's output changes, so caches of models trained on a built-in
# (``models.pretrained``) can tell stale weights apart.
_VERSIONS = {"shapes": "2", "text": "2", "digits": "1", "photos": "2"}


def builtin_names() -> list[str]:
    """Names accepted by :func:`load_builtin`."""
    return list(_DEFAULTS)


def builtin_version(name: str) -> str:
    """Version string of a built-in's generator; changes whenever its examples change."""
    if name not in _VERSIONS:
        raise ValueError(f"name: expected one of {builtin_names()}, got {name!r}")
    return _VERSIONS[name]


def _png(array: np.ndarray) -> dict[str, Any]:
    """An ``Image`` feature value from a uint8 array, PNG-encoded (lossless, deterministic)."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return {"bytes": buf.getvalue(), "path": None}


def _png_pil(img: Image.Image) -> dict[str, Any]:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return {"bytes": buf.getvalue(), "path": None}


def _split_seed(seed: int, split: str, salt: int) -> np.random.SeedSequence:
    """Independent random streams per (data set, split, seed)."""
    return np.random.SeedSequence([seed, salt, SPLITS.index(split)])


def _build_shapes(split: str, n: int, size: int, seed: int) -> datasets.Dataset:
    rng = np.random.default_rng(_split_seed(seed, split, salt=1))
    images, labels, masks = render_shapes(n, size, rng)
    features = datasets.Features({
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=list(SHAPE_CLASSES)),
        "mask": datasets.Image(),
    })
    return datasets.Dataset.from_dict(
        {"image": [_png(a) for a in images], "label": labels.tolist(),
         "mask": [_png(m) for m in masks]},
        features=features, split=split)


def _build_text(split: str, n: int, seed: int) -> datasets.Dataset:
    texts, labels = generate_text(n, split, seed)
    features = datasets.Features({
        "text": datasets.Value("string"),
        "label": datasets.ClassLabel(names=list(TEXT_CLASSES)),
    })
    return datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features,
                                      split=split)


def upsample_digit(raw: np.ndarray, size: int) -> np.ndarray:
    """One 8x8 digit (values 0..16) as a uint8 ``(size, size)`` image, bilinear interpolation."""
    img = Image.fromarray((raw.astype(np.float32) * (255.0 / 16.0)), mode="F")
    big = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR))
    return np.clip(np.round(big), 0, 255).astype(np.uint8)


def _build_digits(split: str, size: int, seed: int, test_fraction: float) -> datasets.Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    idx = np.arange(len(bunch.target))
    train_idx, test_idx = train_test_split(idx, test_size=test_fraction, random_state=seed,
                                           stratify=bunch.target)
    chosen = np.sort(train_idx if split == "train" else test_idx)
    features = datasets.Features({
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=list(DIGIT_CLASSES)),
        "sklearn_index": datasets.Value("int64"),
    })
    return datasets.Dataset.from_dict(
        {"image": [_png(upsample_digit(bunch.images[i], size)) for i in chosen],
         "label": [int(bunch.target[i]) for i in chosen],
         "sklearn_index": [int(i) for i in chosen]},
        features=features, split=split)


#: Every photograph scikit-image, scikit-learn and matplotlib ship inside their wheels (never
#: fetched): ``(name, package, loader name, ImageNet classes that apply)``. The first class is
#: the photo's ``label``; the list is its ``imagenet_accept`` set of every class that truly
#: describes it, in the spirit of ImageNet-ReaL (Beyer et al., "Are we done with ImageNet?", 2020).
#: Empty: no ImageNet-1k class applies (coins, textures, microscopy, astronomy, text scans).
#: Drawings and synthetic images (logo, horse silhouette, colour wheel) are kept out, except
#: scikit-image's logo, the one RGBA image.
PHOTOS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("chelsea", "scikit-image", "chelsea", ("tabby", "tiger cat", "Egyptian cat")),
    ("coffee", "scikit-image", "coffee", ("espresso", "cup")),
    ("camera", "scikit-image", "camera", ("tripod", "reflex camera")),
    ("rocket", "scikit-image", "rocket", ("missile", "projectile")),
    ("motorcycle", "scikit-image", "stereo_motorcycle", ("moped", "motor scooter")),
    ("clock", "scikit-image", "clock", ("wall clock", "analog clock")),  # motion-blurred
    ("china", "scikit-learn", "china", ("palace",)),
    ("flower", "scikit-learn", "flower", ("daisy",)),  # WordNet's daisy: any ray-flowered composite
    ("grace_hopper", "matplotlib", "grace_hopper.jpg", ("military uniform",)),
    ("astronaut", "scikit-image", "astronaut", ("space shuttle",)),  # the model beside her
    ("coins", "scikit-image", "coins", ()),
    ("logo", "scikit-image", "logo", ()),
    ("hubble_deep_field", "scikit-image", "hubble_deep_field", ()),
    ("immunohistochemistry", "scikit-image", "immunohistochemistry", ()),
    ("retina", "scikit-image", "retina", ()),
    ("moon", "scikit-image", "moon", ()),
    ("cell", "scikit-image", "cell", ()),
    ("page", "scikit-image", "page", ()),
    ("text", "scikit-image", "text", ()),
    ("brick", "scikit-image", "brick", ()),
    ("grass", "scikit-image", "grass", ()),
    ("gravel", "scikit-image", "gravel", ()),
)


def _load_photo(package: str, loader: str) -> Image.Image:
    """One bundled photo as PIL, in its own size and mode."""
    if package == "scikit-image":
        import skimage.data as skd

        array = getattr(skd, loader)()
        if loader == "stereo_motorcycle":
            array = array[0]  # the left view
        return Image.fromarray(array)
    if package == "scikit-learn":
        from sklearn.datasets import load_sample_image

        return Image.fromarray(load_sample_image(f"{loader}.jpg"))
    from matplotlib import cbook

    with cbook.get_sample_data(loader) as f:
        return Image.open(f).copy()


def _build_photos(split: str, max_size: int | None) -> datasets.Dataset:
    from .imagenet import imagenet_class_index, imagenet_class_names

    rows: dict[str, list] = {"image": [], "label": [], "name": [], "imagenet_accept": [],
                             "source": []}
    for name, package, loader, classes in PHOTOS:
        try:
            img = _load_photo(package, loader)
        except Exception as exc:  # a photo missing from this install: skip it, say so
            log.warning("photos: %s is not available offline here (%s); skipped", name, exc)
            continue
        if max_size is not None and max(img.size) > max_size:
            scale = max_size / max(img.size)
            new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(new, Image.Resampling.BICUBIC)
        accept = [imagenet_class_index(c) for c in classes]
        rows["image"].append(_png_pil(img))
        rows["label"].append(accept[0] if accept else -1)
        rows["name"].append(name)
        rows["imagenet_accept"].append(accept)
        rows["source"].append(f"{package}: {loader}")
    features = datasets.Features({
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=imagenet_class_names()),
        "name": datasets.Value("string"),
        "imagenet_accept": datasets.Sequence(datasets.Value("int64")),
        "source": datasets.Value("string")})
    return datasets.Dataset.from_dict(rows, features=features, split=split)


def _check_int(name: str, value: Any, low: int, high: int, arg: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{arg}: {name} expects an int in [{low}, {high}], "
                         f"got {type(value).__name__} {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"{arg}: {name} expects an int in [{low}, {high}], got {value}")
    return int(value)


def _validate(name: str, split: str, options: dict[str, Any]) -> dict[str, Any]:
    opts = dict(_DEFAULTS[name][split])
    unknown = sorted(set(options) - set(opts))
    if unknown:
        raise ValueError(f"options: {name!r} does not take {unknown}; valid options are "
                         f"{sorted(opts)}")
    opts.update(options)
    out: dict[str, Any] = {}
    for key, value in opts.items():
        if key == "n":
            out[key] = _check_int(name, value, 1, 1_000_000, "n")
        elif key == "size":
            out[key] = _check_int(name, value, 16 if name == "shapes" else 8, 1024, "size")
        elif key == "seed":
            out[key] = _check_int(name, value, 0, 2**32 - 1, "seed")
        elif key == "max_size":
            out[key] = None if value is None else _check_int(name, value, 8, 10_000, "max_size")
        elif key == "test_fraction":
            if not isinstance(value, (int, float)) or not 0.05 <= float(value) <= 0.5:
                raise ValueError(f"test_fraction: {name} expects a float in [0.05, 0.5], "
                                 f"got {value!r}")
            out[key] = float(value)
    return out


@lru_cache(maxsize=32)
def _cached(name: str, split: str, options: tuple[tuple[str, Any], ...]) -> datasets.Dataset:
    builders: dict[str, Callable[..., datasets.Dataset]] = {
        "shapes": _build_shapes, "text": _build_text, "digits": _build_digits,
        "photos": _build_photos}
    return builders[name](split, **dict(options))


def load_builtin(name: str, split: str = "train", **options: Any) -> datasets.Dataset:
    """A built-in data set as an in-memory ``datasets.Dataset`` (no download).

    - ``"shapes"``: RGB ``size`` x ``size`` images (default 32) of one object on a textured
      background; ``label`` ClassLabel ``circle, square, triangle, cross, star``; ``mask`` an
      "L" image, 255 on the object. Options ``n`` (default 4000 train / 1000 test), ``size``,
      ``seed``. Colour, position, scale, rotation and background are independent of the label.
    - ``"text"``: columns ``text`` (str) and ``label`` ClassLabel ``negative, positive``;
      templated reviews where negation flips polarity. Options ``n`` (2000 / 500), ``seed``.
      Tokenize with :func:`text_tokenizer`.
    - ``"digits"``: scikit-learn's 1 797 8x8 digits upsampled (bilinear) to ``size`` (default 32),
      grayscale "L" images (0..16 scaled to 0..255), ``label`` "0".."9", ``sklearn_index`` the row
      in ``load_digits()``. Stratified split, ``test_fraction`` 0.2 with ``seed`` 0 by default:
      1 437 train / 360 test.
    - ``"photos"``: the 22 photographs bundled in scikit-image, scikit-learn and matplotlib
      (:data:`PHOTOS`), in their own sizes and modes (RGB; grayscale "L" camera, coins, moon,
      ...; the RGBA logo). ``label`` is a ClassLabel over the 1 000 ImageNet-1k classes
      (readable names) for the 10 photos an ImageNet class describes (chelsea: tabby, coffee:
      espresso, ...), -1 (no label) for the others; ``imagenet_accept`` every class that
      applies; ``name`` and ``source`` say which photo it is. A demo set, nothing to hold out:
      ``"train"`` and ``"test"`` both return all photos. Option ``max_size`` downscales the
      longest side.

    Train and test never share an example (separate random streams; a hash partition of the
    sentence space for ``text``). The same call returns byte-identical images. Datasets are
    immutable; in-place format changes (``set_transform``) on the returned object do not reach
    later calls.
    """
    if not isinstance(name, str) or name not in _DEFAULTS:
        raise ValueError(f"name: expected one of {builtin_names()}, got {name!r}")
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    opts = _validate(name, split, options)
    ds = _cached(name, split, tuple(sorted(opts.items())))
    # A fresh Dataset object over the same immutable Arrow table.
    return datasets.Dataset(ds.data, info=ds.info.copy(), split=ds.split)
