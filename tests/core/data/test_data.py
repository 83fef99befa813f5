"""Built-in data sets: determinism, disjoint splits, balance, masks, sizes, digits, text."""

from __future__ import annotations

import hashlib

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from visloupe.core import data
from visloupe.core.data.shapes import render_shapes
from visloupe.core.data.text import NEGATIVE_ADJ, POSITIVE_ADJ

SMALL = {"n": 200}  # keeps shapes builds fast; defaults are exercised once below


def _hashes(ds: datasets.Dataset, column: str = "image") -> list[str]:
    """Digests of the stored (PNG) bytes, read without decoding; equal pixels <=> equal bytes
    because the built-ins encode deterministically."""
    raw = ds.cast_column(column, datasets.Image(decode=False))[column]
    return [hashlib.sha1(item["bytes"]).hexdigest() for item in raw]


def test_builtin_names() -> None:
    assert data.builtin_names() == ["shapes", "text", "digits", "photos"]
    assert all(isinstance(data.builtin_version(n), str) for n in data.builtin_names())
    with pytest.raises(ValueError, match="name"):
        data.builtin_version("mnist")


def test_shapes_default_contract() -> None:
    ds = data.load_builtin("shapes")
    test = data.load_builtin("shapes", split="test")
    assert (len(ds), len(test)) == (4000, 1000)
    assert ds.features["label"].names == ["circle", "square", "triangle", "cross", "star"]
    assert isinstance(ds.features["image"], datasets.Image)
    row = ds[0]
    assert row["image"].mode == "RGB" and row["image"].size == (32, 32)
    assert row["mask"].mode == "L" and row["mask"].size == (32, 32)
    assert set(np.unique(np.asarray(row["mask"]))) <= {0, 255}
    counts = np.bincount(ds["label"], minlength=5)
    assert counts.tolist() == [800] * 5
    # Splits share no image.
    assert not set(_hashes(ds)) & set(_hashes(test))


def test_shapes_deterministic_and_seeded() -> None:
    a = data.load_builtin("shapes", "test", **SMALL)
    b = data.load_builtin("shapes", "test", **SMALL)
    c = data.load_builtin("shapes", "test", n=200, seed=1)
    assert a is not b  # fresh objects; in-place format changes cannot leak between callers
    assert _hashes(a) == _hashes(b) and _hashes(a, "mask") == _hashes(b, "mask")
    assert _hashes(a) != _hashes(c)
    # Bypassing the cache: rendering twice from the same stream gives the same bytes.
    x1 = render_shapes(10, 32, np.random.default_rng(5))
    x2 = render_shapes(10, 32, np.random.default_rng(5))
    assert all(np.array_equal(u, v) for u, v in zip(x1, x2, strict=True))
    a.set_format("numpy")
    assert isinstance(data.load_builtin("shapes", "test", **SMALL)[0]["image"], Image.Image)


@pytest.mark.parametrize("size", [33, 64])
def test_shapes_size_option(size: int) -> None:
    ds = data.load_builtin("shapes", "train", n=25, size=size)
    assert {ds[i]["image"].size for i in range(len(ds))} == {(size, size)}
    assert {ds[i]["mask"].size for i in range(len(ds))} == {(size, size)}
    assert sorted(set(ds["label"])) == [0, 1, 2, 3, 4]


def test_shapes_masks_cover_the_object() -> None:
    images, labels, masks = render_shapes(100, 32, np.random.default_rng(3))
    for img, mask in zip(images.astype(float) / 255, masks > 0, strict=True):
        assert 0.03 < mask.mean() < 0.7  # a visible object, not the whole frame
        inside, outside = img[mask], img[~mask]
        # The object is one colour (low spread away from its anti-aliased rim) that stands out
        # from the background.
        core = mask.copy()
        core[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        assert img[core].std(axis=0).max() < 0.07
        gap = np.abs(inside.mean(0) - outside.mean(0)).max()
        assert gap > 0.15
        # Fully inside the frame: the border rows/columns are background.
        assert not mask[0].any() and not mask[-1].any()
        assert not mask[:, 0].any() and not mask[:, -1].any()


def test_shapes_areas_follow_the_outline() -> None:
    """Planted geometry: at equal radius a circle covers more than a square than a star."""
    from visloupe.core.data.shapes import _coverage

    area = {name: _coverage(name, 64, 32.0, 32.0, 20.0, 0.3).sum()
            for name in data.SHAPE_CLASSES}
    assert area["circle"] == pytest.approx(np.pi * 400, rel=0.02)
    assert area["square"] == pytest.approx(2 * 400, rel=0.02)
    assert area["triangle"] == pytest.approx(3 * np.sqrt(3) / 4 * 400, rel=0.02)
    assert area["circle"] > area["square"] > area["cross"] > area["triangle"] > area["star"]


def test_unknown_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="name.*shapes.*text.*digits.*photos"):
        data.load_builtin("cifar")
    with pytest.raises(ValueError, match="split.*'train', 'test'"):
        data.load_builtin("shapes", split="validation")
    with pytest.raises(ValueError, match=r"options.*colour.*\['n', 'seed', 'size'\]"):
        data.load_builtin("shapes", colour=True)
    with pytest.raises(ValueError, match="size"):
        data.load_builtin("shapes", size=4)
    with pytest.raises(ValueError, match="n: shapes expects an int"):
        data.load_builtin("shapes", n="many")


def test_digits_agree_with_sklearn() -> None:
    from sklearn.datasets import load_digits

    raw = load_digits()
    train, test = data.load_builtin("digits", "train"), data.load_builtin("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    assert not set(train["sklearn_index"]) & set(test["sklearn_index"])
    assert train.features["label"].names == [str(d) for d in range(10)]
    assert np.bincount(test["label"]).tolist() == np.bincount(
        raw.target[test["sklearn_index"]]).tolist()
    assert min(np.bincount(test["label"])) >= 35  # stratified: every digit well represented
    from skimage.transform import resize

    errors, corrs = [], []
    for i in range(0, len(test), 7):
        row = test[i]
        img = np.asarray(row["image"], dtype=float)
        assert row["image"].mode == "L" and img.shape == (32, 32)
        assert row["label"] == raw.target[row["sklearn_index"]]
        src = raw.images[row["sklearn_index"]]
        # Bilinear upsampling agrees with scikit-image's (same half-pixel grid) up to rounding.
        ref = resize(src * 255 / 16, (32, 32), order=1, mode="edge", anti_aliasing=False)
        assert np.abs(img - ref).max() <= 0.5 + 1e-9
        back = img.reshape(8, 4, 8, 4).mean(axis=(1, 3)) * 16 / 255  # box-downsample to 8x8
        errors.append(np.abs(back - src).mean())
        corrs.append(np.corrcoef(back.ravel(), src.ravel())[0, 1])
    assert np.mean(errors) < 1.5 and min(corrs) > 0.95  # 0..16 units; bilinear blurs a little
    big = data.load_builtin("digits", "test", size=64)
    assert big[0]["image"].size == (64, 64)


def test_digits_values_use_full_range() -> None:
    """0..16 maps onto 0..255: a planted all-16 digit becomes all-255."""
    from visloupe.core.data.builtin import upsample_digit

    assert (upsample_digit(np.full((8, 8), 16.0), 32) == 255).all()
    assert (upsample_digit(np.zeros((8, 8)), 32) == 0).all()


def test_photos() -> None:
    ds = data.load_builtin("photos", "test")
    names = ds["name"]
    assert {"astronaut", "coffee", "chelsea", "camera", "china", "flower"} <= set(names)
    assert len(set(names)) == len(names) == 22
    assert ds.features["label"].names == data.imagenet_class_names()
    modes = {ds[i]["image"].mode for i in range(len(ds))}
    assert {"RGB", "L"} <= modes
    assert len({ds[i]["image"].size for i in range(len(ds))}) > 1  # mixed sizes
    assert _hashes(ds) == _hashes(data.load_builtin("photos", "train"))  # both splits: all
    small = data.load_builtin("photos", "test", max_size=64)
    assert max(max(small[i]["image"].size) for i in range(len(small))) == 64


def test_text_corpus() -> None:
    train, test = data.load_builtin("text", "train"), data.load_builtin("text", "test")
    assert (len(train), len(test)) == (2000, 500)
    assert train.features["label"].names == ["negative", "positive"]
    assert np.bincount(train["label"]).tolist() == [1000, 1000]
    assert not set(train["text"]) & set(test["text"])
    assert len(set(train["text"])) == len(train)
    assert train["text"] == data.load_builtin("text", "train")["text"]
    assert train["text"] != data.load_builtin("text", "train", seed=1)["text"]
    # Negation matters: a sizeable share of texts carries a negator.
    negated = sum(" not " in t or " never " in t for t in train["text"])
    assert 0.25 < negated / len(train) < 0.75


def test_text_labels_follow_negation() -> None:
    """Planted: in single-clause sentences the label is polarity XOR negation."""
    ds = data.load_builtin("text", "train")
    checked = 0
    for text, label in zip(ds["text"], ds["label"], strict=True):
        words = data.text_tokenizer().tokens(text)
        polar = [w for w in words if w in POSITIVE_ADJ or w in NEGATIVE_ADJ]
        if len(polar) != 1 or "and" in words or "i" in words:
            continue
        k = words.index(polar[0])
        negated = any(w in ("not", "never") for w in words[max(0, k - 2):k])
        assert label == int((polar[0] in POSITIVE_ADJ) != negated), text
        checked += 1
    assert checked > 300
    # Both readings of the same polar word occur with opposite labels.
    texts = dict(zip(ds["text"], ds["label"], strict=True))
    good_neg = [lab for t, lab in texts.items() if " not good" in t or " never good" in t]
    good_pos = [lab for t, lab in texts.items() if " good" in t and " not " not in t
                and " never " not in t and "and" not in t]
    assert good_neg and good_pos and set(good_neg) == {0} and set(good_pos) == {1}


def test_tokenizer() -> None:
    tok = data.text_tokenizer()
    assert tok.vocab["<pad>"] == 0 and tok.vocab["<unk>"] == 1 and tok.pad_id == 0
    assert len(tok) == len(tok.vocab) and data.text_tokenizer().vocab == tok.vocab
    texts = data.load_builtin("text", "test")["text"]
    for text in texts[:50]:
        ids = tok.encode(text)
        assert ids.dtype == torch.long and ids.shape == (1, len(tok.tokens(text)))
        assert tok.decode(ids[0]) == tok.tokens(text)  # round trip, no <unk> in the corpus
        assert 1 not in ids
    assert tok.tokens("The plot was NOT good, honestly.") == [
        "the", "plot", "was", "not", "good", ",", "honestly", "."]
    batch = tok.encode(["not good", "the movie was very bad ."])
    assert batch.shape == (2, 6) and batch[0, 2:].eq(0).all()
    assert tok.encode(["a b c d e f g"], max_len=3).shape == (1, 3)
    assert tok.encode("good", min_len=5).shape == (1, 5)
    assert tok.encode("zebra good")[0, 0].item() == tok.unk_id
    assert tok.decode(batch[0], skip_pad=False)[-1] == "<pad>"
    with pytest.raises(TypeError, match="texts"):
        tok.encode([1, 2])
    with pytest.raises(ValueError, match="max_len"):
        tok.encode("good", max_len=0)
