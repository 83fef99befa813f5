"""visloupe.core.profiling: statistics against independent numpy/scipy values, planted duplicates
and outliers found, streams never sized, bad files reported per row, embeddings cached."""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import ndimage
from scipy.spatial.distance import cdist
from torch import nn
from visloupe.core import data
from visloupe.core import profiling as vds

# --------------------------------------------------------------------------- helpers


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _arrays(n: int, seed: int = 0, size: tuple[int, int] = (12, 16)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(*size, 3), dtype=np.uint8) for _ in range(n)]


def _hf_png(arrays: list[np.ndarray], labels: list[int], names: list[str]) -> datasets.Dataset:
    feats = datasets.Features({"image": datasets.Image(),
                               "label": datasets.ClassLabel(names=names)})
    return datasets.Dataset.from_dict(
        {"image": [{"bytes": _png(a), "path": None} for a in arrays], "label": labels},
        features=feats)


def _ref_stats(rgb_u8: np.ndarray) -> dict[str, float]:
    """Statistics written out independently from the formulas (float64, scipy Laplacian)."""
    rgb = rgb_u8.astype(np.float64)
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    rg = rgb[..., 0] - rgb[..., 1]
    yb = (rgb[..., 0] + rgb[..., 1]) / 2 - rgb[..., 2]
    colour = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    lap = ndimage.laplace(y)[1:-1, 1:-1]
    return {"brightness": y.mean() / 255, "contrast": y.std() / 255, "colourfulness": colour,
            "sharpness": lap.var()}


# --------------------------------------------------------------------------- profile


def test_profile_statistics_match_independent_numpy() -> None:
    arrays = _arrays(6, size=(12, 16))
    arrays[1] = np.full((9, 20, 3), 77, dtype=np.uint8)            # flat grey
    arrays[2] = np.zeros((10, 10, 3), dtype=np.uint8)
    arrays[2][..., 0] = 255                                          # pure red
    labels = [0, 1, 1, 2, 0, 0]
    ds = _hf_png(arrays, labels, ["a", "b", "c"])
    df = vds.profile_dataset(ds)
    assert list(df.columns) == ["index", "label", "class_name", "width", "height", "aspect",
                                "mode", "channels", "brightness", "contrast", "colourfulness",
                                "sharpness", "file_size", "error"]
    assert df["index"].tolist() == list(range(6)) and df["label"].tolist() == labels
    assert df["class_name"].tolist() == ["a", "b", "b", "c", "a", "a"]
    assert df.attrs["sampled"] is False and df.attrs["n_total"] == 6 and df.attrs["seed"] == 0
    assert df["error"].isna().all()
    for k, arr in enumerate(arrays):
        row = df.iloc[k]
        ref = _ref_stats(arr)
        assert (row["width"], row["height"]) == (arr.shape[1], arr.shape[0])
        assert row["aspect"] == pytest.approx(arr.shape[1] / arr.shape[0])
        assert row["mode"] == "RGB" and row["channels"] == 3
        assert row["file_size"] == len(_png(arr))
        for key, value in ref.items():
            assert row[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (k, key)
    # hand-checked values: flat grey has no contrast/colour/edges; red's M = 0.3*|(255, 127.5)|
    assert df.loc[1, ["contrast", "colourfulness", "sharpness"]].tolist() == pytest.approx(
        [0, 0, 0], abs=1e-6)
    assert df.loc[1, "brightness"] == pytest.approx(77 / 255, abs=1e-6)
    assert df.loc[2, "colourfulness"] == pytest.approx(0.3 * np.hypot(255, 127.5), rel=1e-5)
    # per-class counts and means against pandas/numpy on the same rows
    summary = vds.class_summary(df)
    assert summary["label"].tolist() == [0, 1, 2]
    assert summary["count"].tolist() == np.bincount(labels).tolist()
    assert summary["fraction"].sum() == pytest.approx(1.0)
    a_rows = [k for k, y in enumerate(labels) if y == 0]
    assert summary.loc[0, "brightness"] == pytest.approx(
        np.mean([_ref_stats(arrays[k])["brightness"] for k in a_rows]), rel=1e-5)


def test_profile_modes_alpha_no_labels_and_zero_size() -> None:
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 64                                               # mostly transparent red
    grey = np.arange(35, dtype=np.uint8).reshape(5, 7) * 7
    imgs = [Image.fromarray(rgba, "RGBA"), Image.fromarray(grey, "L"),
            Image.new("RGB", (0, 0)), Image.fromarray(grey, "L").convert("P")]
    df = vds.profile_dataset(imgs)
    assert df["mode"].tolist() == ["RGBA", "L", "RGB", "P"]
    assert df["channels"].tolist() == [4, 1, 3, 1]
    assert df["label"].isna().all() and df["class_name"].isna().all()
    assert df["file_size"].isna().all()                         # in-memory images: no file
    # alpha composited on white, computed by hand
    a = 64 / 255
    comp = np.stack([200 * a + 255 * (1 - a), 255 * (1 - a), 255 * (1 - a)], -1)
    comp = np.broadcast_to(comp, (4, 6, 3))
    assert df.loc[0, "brightness"] == pytest.approx(_ref_stats(comp)["brightness"], abs=1 / 255)
    assert df.loc[1, "brightness"] == pytest.approx(grey.mean() / 255, abs=1e-6)
    assert df.loc[1, "colourfulness"] == pytest.approx(0.0, abs=1e-6)
    assert df.loc[2, "error"].startswith("zero-size image (0x0)")
    assert np.isnan(df.loc[2, "brightness"]) and df.loc[2, "width"] == 0
    assert df["error"].notna().tolist() == [False, False, True, False]


def test_profile_sample_is_seeded_and_marked() -> None:
    ds = _hf_png(_arrays(12, size=(4, 4)), [k % 3 for k in range(12)], ["a", "b", "c"])
    df = vds.profile_dataset(ds, sample=5, seed=3)
    assert len(df) == 5 and df.attrs["sampled"] is True and df.attrs["n_total"] == 12
    idx = df["index"].tolist()
    assert idx == sorted(set(idx)) and all(0 <= i < 12 for i in idx)
    assert df["label"].tolist() == [i % 3 for i in idx]            # labels follow the rows
    assert vds.profile_dataset(ds, sample=5, seed=3)["index"].tolist() == idx
    others = {tuple(vds.profile_dataset(ds, sample=5, seed=s)["index"]) for s in range(4, 8)}
    assert others != {tuple(idx)}
    full = vds.profile_dataset(ds, sample=50)
    assert len(full) == 12 and full.attrs["sampled"] is False


class _NoLenStream(datasets.IterableDataset):
    def __len__(self) -> int:
        raise AssertionError("len() called on a stream")


def test_streaming_never_calls_len(monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = _arrays(30, size=(5, 5))
    ds = _hf_png(arrays, [k % 2 for k in range(30)], ["even", "odd"])
    stream = ds.to_iterable_dataset(num_shards=3)
    stream.__class__ = _NoLenStream
    # derived streams (shuffle, cast) are plain IterableDatasets: forbid len on all of them
    monkeypatch.setattr(datasets.IterableDataset, "__len__",
                        lambda self: (_ for _ in ()).throw(AssertionError("len() on a stream")),
                        raising=False)
    calls = []
    df = vds.profile_dataset(stream, sample=10, seed=1, buffer_size=8,
                             progress=lambda done, total: calls.append((done, total)))
    assert len(df) == 10 and df.attrs["sampled"] is True and df.attrs["n_total"] is None
    assert calls[-1] == (10, 10)
    assert df.attrs["class_names"] == ["even", "odd"]
    # the rows are the first 10 of the seeded shuffled stream, in that order
    monkeypatch.undo()
    order = list(ds.to_iterable_dataset(num_shards=3).shuffle(seed=1, buffer_size=8).take(10))
    expected = [_ref_stats(np.asarray(r["image"]))["brightness"] for r in order]
    assert df["brightness"].tolist() == pytest.approx(expected, rel=1e-5)
    assert df["label"].tolist() == [r["label"] for r in order]
    # a stream shorter than the sample is read to its end and is then not a sample
    short = vds.profile_dataset(ds.select(range(4)).to_iterable_dataset(), sample=10)
    assert len(short) == 4 and short.attrs["sampled"] is False and short.attrs["n_total"] == 4


def test_imagefolder_corrupt_and_empty_files_reported_per_row(tmp_path: Path) -> None:
    for cls, value in (("cat", 40), ("dog", 210)):
        (tmp_path / cls).mkdir()
        for k in range(2):
            Image.fromarray(np.full((6, 8, 3), value + k, np.uint8)).save(
                tmp_path / cls / f"{k}.png")
    (tmp_path / "cat" / "zz_corrupt.png").write_bytes(b"\x89PNG definitely not an image")
    (tmp_path / "dog" / "zz_empty.png").write_bytes(b"")
    df = vds.profile_dataset(tmp_path)
    assert len(df) == 6 and df.attrs["class_names"] == ["cat", "dog"]
    bad = df[df["error"].notna()]
    assert len(bad) == 2
    assert sorted(bad["class_name"]) == ["cat", "dog"]
    errors = dict(zip(bad["class_name"], bad["error"], strict=True))
    assert "cannot decode" in errors["cat"] and "empty file" in errors["dog"]
    assert bad["brightness"].isna().all()
    good = df[df["error"].isna()]
    assert len(good) == 4 and (good["width"] == 8).all() and (good["height"] == 6).all()
    assert sorted(good["brightness"] * 255) == pytest.approx([40, 41, 210, 211], abs=1e-3)
    sizes = sorted(p.stat().st_size for p in tmp_path.rglob("*.png"))
    assert sorted(df["file_size"]) == pytest.approx(sizes)
    summary = vds.class_summary(df)
    assert summary["count"].tolist() == [3, 3] and summary["errors"].tolist() == [1, 1]
    # duplicates on the same folder: the bad files are skipped, a copied file is found
    (tmp_path / "dog" / "copy_of_cat0.png").write_bytes((tmp_path / "cat" / "0.png").read_bytes())
    pairs = vds.near_duplicates(tmp_path, threshold=0.01)
    stored = datasets.load_dataset("imagefolder", data_dir=str(tmp_path))["train"]
    names = [Path(v["path"]).name for v in
             stored.cast_column("image", datasets.Image(decode=False))["image"]]
    got = {(names[i], names[j], e) for i, j, e in pairs[["i", "j", "exact"]].itertuples(
        index=False)}
    assert got == {("0.png", "copy_of_cat0.png", True)}


def test_non_categorical_labels() -> None:
    arrays = _arrays(4, size=(3, 3))
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.Value("float32"),
                               "name": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({"image": [Image.fromarray(a) for a in arrays],
                                     "label": [0.5, 1.5, 2.5, 3.5],
                                     "name": list("abcd")}, features=feats)
    with pytest.warns(UserWarning, match="label_column: column 'label'.*not categorical"):
        df = vds.profile_dataset(ds)
    assert len(df) == 4 and df["label"].isna().all() and df["error"].isna().all()
    with pytest.raises(ValueError, match="label_column: 'name'"):
        vds.profile_dataset(ds, label_column="name")
    # per-item labels that are not class indices (a list of (image, str) pairs)
    pairs = [(Image.fromarray(a), s) for a, s in zip(arrays, "wxyz", strict=True)]
    src_items = [p[0] for p in pairs]

    class Strings(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int):
            return src_items[i], "wxyz"[i]

    with pytest.warns(UserWarning, match="4 item.*not class indices"):
        df2 = vds.profile_dataset(Strings())
    assert df2["label"].isna().all() and df2["error"].isna().all()


# --------------------------------------------------------------------------- class views


def test_class_means_and_samples() -> None:
    arrays = [np.full((4, 4, 3), v, np.uint8) for v in (10, 20, 30, 100, 200)]
    labels = [0, 0, 0, 1, 1]
    ds = _hf_png(arrays, labels, ["dark", "light"])
    means = vds.class_means(ds, size=(4, 4))
    assert sorted(means) == [0, 1] and means[0].shape == (4, 4, 3)
    assert np.allclose(means[0], 20 / 255) and np.allclose(means[1], 150 / 255)
    capped = vds.class_means(ds, size=(2, 3), max_per_class=1, seed=0)
    assert capped[0].shape == (2, 3, 3)
    assert round(float(capped[0][0, 0, 0]) * 255) in (10, 20, 30)
    picks = vds.class_samples(ds, per_class=2, seed=0)
    assert sorted(picks) == [0, 1] and len(picks[0]) == 2 and picks[1] == [3, 4]
    assert set(picks[0]) <= {0, 1, 2}
    df = vds.profile_dataset(ds)
    df.loc[3, "error"] = "pretend it failed"
    from_profile = vds.class_samples(df, per_class=5)
    assert from_profile == {0: [0, 1, 2], 1: [4]}


def test_thumbnail_keeps_aspect_and_is_rgb() -> None:
    img = Image.new("RGBA", (100, 50), (255, 0, 0, 0))
    th = vds.thumbnail(img, 48)
    assert th.mode == "RGB" and th.size == (48, 24)
    assert th.getpixel((0, 0)) == (255, 255, 255)                # transparent -> white
    small = vds.thumbnail(Image.new("L", (8, 4), 9), size=32)
    assert small.size == (32, 16) and small.getpixel((31, 15)) == (9, 9, 9)
    with pytest.raises(ValueError, match="image: zero-size"):
        vds.thumbnail(Image.new("RGB", (0, 3)))


def test_select_keeps_labels_class_names_and_row_ids() -> None:
    ds = _hf_png(_arrays(6, size=(3, 3)), [0, 1, 2, 0, 1, 2], ["a", "b", "c"])
    sub = data.as_image_source(ds).select([5, 0])
    src = data.as_image_source(sub)
    assert src is sub and src.class_names == ["a", "b", "c"] and [s.label for s in src] == [2, 0]
    assert [s.row_id for s in src] == [5, 0] and [s.index for s in src] == [0, 1]
    assert np.array_equal(np.asarray(src[0].image), np.asarray(ds[5]["image"]))
    assert sub.select([1]).row_id(0) == 0  # a subset of a subset maps to the original rows
    items = [(Image.fromarray(a), k % 2) for k, a in enumerate(_arrays(4, size=(3, 3)))]
    lsrc = data.as_image_source(items, class_names=["no", "yes"])
    s2 = lsrc.select([3, 2])
    assert s2.class_names == ["no", "yes"] and [s.label for s in s2] == [1, 0]
    assert [s.row_id for s in s2] == [3, 2]
    assert np.array_equal(np.asarray(s2[0].image), np.asarray(items[3][0]))
    assert s2.fingerprint([0, 1]) == lsrc.fingerprint([3, 2])  # same rows, same cache key
    assert s2.label_values([0, 1]) == [1, 0] and s2.tensors([0]).shape == (1, 3, 3, 3)
    with pytest.raises(ValueError, match="indices"):
        data.as_image_source(ds).select([6])


# --------------------------------------------------------------------------- neighbours


def _planted_embeddings() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 16)).astype(np.float32)
    x[50] = x[10]                                    # exact duplicate
    x[70] = x[20] + 1e-3 * rng.normal(size=16)       # near duplicate
    x[99] = 25.0                                     # far outlier
    return x


def test_near_duplicates_planted_and_chunked_matches_bruteforce() -> None:
    x = _planted_embeddings()
    pairs = vds.near_duplicates(x, threshold=1e-4, chunk_size=7)
    assert list(pairs.columns) == ["i", "j", "distance", "exact"]
    found = {(int(i), int(j)): bool(e) for i, j, e in pairs[["i", "j", "exact"]].itertuples(
        index=False)}
    assert found == {(10, 50): True, (20, 70): False}
    # a looser threshold: the same set as a brute-force scipy cdist
    thr = 0.6
    got = vds.near_duplicates(x, threshold=thr, chunk_size=13)
    full = cdist(x, x, "cosine")
    ii, jj = np.nonzero(np.triu(full <= thr, k=1))
    assert set(zip(got["i"], got["j"], strict=True)) == set(zip(ii, jj, strict=True))
    assert got["distance"].to_numpy() == pytest.approx(full[got["i"], got["j"]], abs=1e-5)
    assert got["distance"].is_monotonic_increasing or got["exact"].any()
    planted = vds.near_duplicates(x, threshold=0.01, metric="euclidean")
    assert planted[["i", "j", "exact"]].values.tolist() == [[10, 50, True], [20, 70, False]]
    assert planted["distance"].tolist() == pytest.approx(
        [0.0, np.linalg.norm(x[20] - x[70])], rel=1e-6)
    eu = vds.near_duplicates(x, threshold=1.0, metric="euclidean", chunk_size=11)
    de = cdist(x, x)
    ii, jj = np.nonzero(np.triu(de <= 1.0, k=1))
    assert set(zip(eu["i"], eu["j"], strict=True)) == set(zip(ii, jj, strict=True))
    with pytest.warns(UserWarning, match="max_pairs"):
        capped = vds.near_duplicates(x, threshold=2.0, max_pairs=5)
    assert len(capped) == 5 and capped["distance"].max() <= np.sort(full[np.triu_indices(120, 1)])[
        4] + 1e-5


def test_near_duplicates_from_source_pixel_hash_and_descriptor() -> None:
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(8)]
    arrays.append(arrays[2].copy())                                  # 8: exact copy of 2
    near = arrays[5].astype(np.int16)
    near[:3, :3] += 3
    arrays.append(np.clip(near, 0, 255).astype(np.uint8))            # 9: near copy of 5
    imgs = [Image.fromarray(a) for a in arrays]
    imgs[8] = imgs[8].convert("RGBA")                                # other mode, same pixels
    pairs = vds.near_duplicates(imgs, threshold=0.01)
    found = {(int(i), int(j)): bool(e) for i, j, e in pairs[["i", "j", "exact"]].itertuples(
        index=False)}
    assert found == {(2, 8): True, (5, 9): False}
    # with given embeddings the near test uses them instead of the descriptor
    emb = np.eye(10, dtype=np.float32)
    emb[7] = emb[6]
    pairs2 = vds.near_duplicates(imgs, threshold=0.01, embeddings=emb)
    found2 = {(int(i), int(j)): bool(e) for i, j, e in pairs2[["i", "j", "exact"]].itertuples(
        index=False)}
    assert found2 == {(2, 8): True, (6, 7): False}


def test_outliers_planted_and_scores_match_bruteforce() -> None:
    x = _planted_embeddings()
    out = vds.outliers(x, k=5, top=3, chunk_size=17)
    assert list(out.columns) == ["index", "score"] and len(out) == 3
    assert out["index"].iloc[0] == 99 and out["score"].is_monotonic_decreasing
    full = cdist(x.astype(np.float64), x.astype(np.float64))
    np.fill_diagonal(full, np.inf)                    # not its own neighbour
    ref = np.sort(full, axis=1)[:, :5].mean(axis=1)
    all_scores = vds.outliers(x, k=5, top=None).sort_values("index")["score"].to_numpy()
    assert all_scores == pytest.approx(ref, rel=1e-4, abs=1e-4)


def test_project_pca_of_many_rows_matches_sklearn_in_float64() -> None:
    """The covariance path (N >= D, summed in float32) gives sklearn's float64 scores, up to
    each component's sign, to 1e-4 of their range on 20 000 rows of offset, uneven data."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(5)
    x = (rng.normal(size=(20000, 48)) * np.linspace(3, 0.1, 48) + 7.0).astype(np.float32)
    xy = vds.project(x, "pca").astype(np.float64)
    ref = PCA(n_components=2).fit_transform(x.astype(np.float64))
    for c in range(2):
        sign = np.sign(xy[:, c] @ ref[:, c])
        assert np.abs(sign * xy[:, c] - ref[:, c]).max() < 1e-4 * np.ptp(ref[:, c])


def test_project_pca_matches_sklearn_and_umap_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.decomposition import PCA

    x = _planted_embeddings()[:60]
    xy = vds.project(x, "pca")
    ref = PCA(n_components=2).fit_transform(x.astype(np.float64))
    assert xy.shape == (60, 2)
    for c in range(2):
        assert abs(np.corrcoef(xy[:, c], ref[:, c])[0, 1]) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(vds.project(x, "pca"), xy)
    ts = vds.project(x[:30], "tsne", seed=0, max_iter=250)
    assert ts.shape == (30, 2) and np.isfinite(ts).all()
    monkeypatch.setitem(sys.modules, "umap", None)           # pretend the extra is missing
    with pytest.raises(ImportError, match="umap-learn"):
        vds.project(x, "umap")


# --------------------------------------------------------------------------- model-based


class _TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(5, 3)
        self._calls = 0

    # Counted in a private attribute: public plain attributes are module configuration and
    # part of the cache key (visloupe.core.cache), so a public counter would change the key.
    @property
    def calls(self) -> int:
        return self._calls

    @calls.setter
    def calls(self, value: int) -> None:
        self._calls = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._calls += 1
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


class _TinyTokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.embed = nn.Linear(3 * 4 * 4, 6)
        self.blocks = nn.Identity()
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        patches = x.unfold(2, 4, 4).unfold(3, 4, 4).permute(0, 2, 3, 1, 4, 5).reshape(n, -1, 48)
        tokens = self.blocks(self.embed(patches))
        return self.head(tokens[:, 0])


def test_embed_layers_pooling_and_hooks() -> None:
    arrays = _arrays(10, size=(8, 8))
    src = data.as_image_source([Image.fromarray(a) for a in arrays])
    x = torch.stack([torch.from_numpy(a).permute(2, 0, 1).float() / 255 for a in arrays])
    model = _TinyCNN().train()
    with torch.no_grad():
        conv = model.conv(x)
        penult = model.act(conv).mean(dim=(2, 3))
    emb = vds.embed(model, src, batch_size=3, cache=False)
    assert emb.shape == (10, 5) and emb.dtype == np.float32
    assert np.allclose(emb, penult.numpy(), atol=1e-5)
    emb_conv = vds.embed(model, src, "conv", batch_size=4, cache=False)
    assert np.allclose(emb_conv, conv.mean(dim=(2, 3)).numpy(), atol=1e-5)
    assert model.training and all(m.training for m in model.modules())   # mode restored
    assert all(not m._forward_hooks for m in model.modules())            # hooks removed
    tok = _TinyTokens()
    with torch.no_grad():
        tokens = tok.embed(x.unfold(2, 4, 4).unfold(3, 4, 4).permute(0, 2, 3, 1, 4, 5)
                           .reshape(10, -1, 48))
    emb_tok = vds.embed(tok, src, "blocks", cache=False)
    assert np.allclose(emb_tok, tokens.mean(dim=1).numpy(), atol=1e-5)
    assert np.allclose(vds.embed(tok, src, cache=False), tokens[:, 0].numpy(), atol=1e-5)
    sub = vds.embed(model, src, indices=[7, 2], cache=False)
    assert np.allclose(sub, penult.numpy()[[7, 2]], atol=1e-5)

    def bad_preprocess(img: Image.Image) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        vds.embed(model, src, "conv", preprocess=bad_preprocess, cache=False)
    assert all(not m._forward_hooks for m in model.modules())


def test_embed_cache_hit_skips_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISLOUPE_CACHE", str(tmp_path))
    ds = _hf_png(_arrays(9, size=(8, 8)), [k % 3 for k in range(9)], ["a", "b", "c"])
    model = _TinyCNN()
    seen = []
    first = vds.embed(model, ds, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert model.calls > 0 and seen[-1] == (9, 9)
    assert list((tmp_path / "embeddings").glob("*.npy"))
    model.calls = 0
    again = vds.embed(model, ds, batch_size=4)
    assert model.calls == 0 and np.array_equal(again, first)
    # another dataset object with the same content also hits (HF fingerprint)
    same = _hf_png(_arrays(9, size=(8, 8)), [k % 3 for k in range(9)], ["a", "b", "c"])
    assert np.array_equal(vds.embed(model, same), first) and model.calls == 0
    # a different layer, other weights or other data miss the cache
    vds.embed(model, ds, "conv")
    assert model.calls > 0
    model.calls = 0
    with torch.no_grad():
        model.conv.weight.add_(0.5)
    changed = vds.embed(model, ds)
    assert model.calls > 0 and not np.allclose(changed, first)
    model.calls = 0
    vds.embed(model, ds.select(range(5)))
    assert model.calls > 0
    # a non-HF source (hash of sampled items) hits too; cache=False never stores
    items = [Image.fromarray(a) for a in _arrays(5, size=(8, 8))]
    vds.embed(model, items, cache=False)
    model.calls = 0
    before = set((tmp_path / "embeddings").glob("*.npy"))
    a = vds.embed(model, items)
    assert model.calls > 0
    model.calls = 0
    b = vds.embed(model, list(items))
    assert model.calls == 0 and np.array_equal(a, b)
    assert len(set((tmp_path / "embeddings").glob("*.npy")) - before) == 1
    # editing one item that a sampled hash would miss still changes the key (lists hash all)
    many = [Image.fromarray(a) for a in _arrays(20, size=(8, 8))]
    base = vds.embed(model, many)
    many[3] = Image.fromarray(255 - np.asarray(many[3]))
    model.calls = 0
    edited = vds.embed(model, many)
    assert model.calls > 0 and not np.allclose(edited[3], base[3])
    assert np.allclose(edited[4:], base[4:])


def test_confusion_counts_and_cell_samples() -> None:
    values = [20, 40, 220, 240, 60, 230, 250, 30]
    labels = [0, 0, 1, 1, 1, 0, 1, 2]                     # 4 and 5 are mislabelled-ish
    ds = _hf_png([np.full((4, 4, 3), v, np.uint8) for v in values], labels, ["dark", "light",
                                                                              "other"])

    class Bright(nn.Module):                             # predicts 1 if mean > 0.5 else 0
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
            m = x.mean(dim=(1, 2, 3))
            return (torch.stack([0.5 - m, m - 0.5, -torch.ones_like(m)], dim=1) + self.w,)

    res = vds.confusion(Bright(), ds, batch_size=3)
    preds = [int(v / 255 > 0.5) for v in values]
    expected = np.zeros((3, 3), int)
    for t, p in zip(labels, preds, strict=True):
        expected[t, p] += 1
    assert np.array_equal(res.matrix, expected)
    assert res.class_names == ["dark", "light", "other"]
    assert res.per_class_accuracy[:2] == pytest.approx([2 / 3, 3 / 4])
    assert res.per_class_accuracy[2] == 0.0
    assert res.samples(1, 0) == [4] and res.samples(0, 1) == [5] and res.samples(2, 0) == [7]
    assert res.accuracy == pytest.approx(5 / 8)
    assert res.to_dataframe().loc["light", "dark"] == 1
    with pytest.raises(ValueError, match="true"):
        res.samples(3, 0)
    with pytest.raises(ValueError, match="source: no item has a label"):
        vds.confusion(Bright(), [Image.fromarray(np.zeros((4, 4, 3), np.uint8))])


def test_confusion_predictions_are_cached_on_disk(tmp_path) -> None:
    values = [20, 220, 60, 240, 30]
    ds = _hf_png([np.full((4, 4, 3), v, np.uint8) for v in values], [0, 1, 0, 1, 1],
                 ["dark", "light"])

    class Counting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))
            self._calls = 0  # private: not part of the cache key

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self._calls += 1
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([0.5 - m, m - 0.5 + self.w], dim=1)

    model = Counting()
    first = vds.confusion(model, ds, batch_size=2, cache=tmp_path)
    assert model._calls == 3
    again = vds.confusion(model, ds, batch_size=2, cache=tmp_path)
    assert model._calls == 3  # a hit runs no forward pass
    assert np.array_equal(again.matrix, first.matrix) and again.samples(1, 0) == [4]
    assert np.array_equal(again.predictions, first.predictions)
    with torch.no_grad():
        model.w.add_(torch.tensor([1.0]))  # new weights: a miss, all predicted "light"
    shifted = vds.confusion(model, ds, batch_size=2, cache=tmp_path)
    assert model._calls == 6 and shifted.matrix[:, 1].sum() == len(values)
    vds.confusion(model, ds, batch_size=2, cache=False)
    assert model._calls == 9


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_name_the_argument() -> None:
    ds = _hf_png(_arrays(4, size=(4, 4)), [0, 1, 0, 1], ["a", "b"])
    x = _planted_embeddings()
    cases = [
        (lambda: vds.profile_dataset(ds, sample=0), ValueError, "sample"),
        (lambda: vds.profile_dataset(ds, progress=3), TypeError, "progress"),
        (lambda: vds.profile_dataset(ds, image_column="nope"), ValueError, "image_column"),
        (lambda: vds.profile_dataset(42), TypeError, "data"),
        (lambda: vds.class_summary([1, 2]), TypeError, "profile"),
        (lambda: vds.class_means(ds, size=0), ValueError, "size"),
        (lambda: vds.class_samples(ds, per_class=0), ValueError, "per_class"),
        (lambda: vds.embed("model", ds), TypeError, "model"),
        (lambda: vds.embed(ds, _TinyCNN()), TypeError, "model first"),
        (lambda: vds.embed(_TinyCNN(), ds, "nope", cache=False), ValueError, "layer"),
        (lambda: vds.embed(_TinyCNN(), ds, batch_size=0), ValueError, "batch_size"),
        (lambda: vds.embed(_TinyCNN(), ds, cache=3), TypeError, "cache"),
        (lambda: vds.project(x, "isomap"), ValueError, "method"),
        (lambda: vds.project(x[0], "pca"), ValueError, "embeddings"),
        (lambda: vds.project(np.full((3, 2), np.nan), "pca"), ValueError, "embeddings"),
        (lambda: vds.near_duplicates(x, threshold=-1), ValueError, "threshold"),
        (lambda: vds.near_duplicates(x, metric="manhattan"), ValueError, "metric"),
        (lambda: vds.outliers(x, k=0), ValueError, "k"),
        (lambda: vds.outliers(x, top=0), ValueError, "top"),
        (lambda: vds.thumbnail("image.png"), TypeError, "image"),
        (lambda: data.as_image_source(ds).select("ab"), TypeError, "indices"),
    ]
    for call, exc, name in cases:
        with pytest.raises(exc, match=name):
            call()


def test_progress_and_dataframe_types() -> None:
    ds = _hf_png(_arrays(5, size=(4, 4)), [0, 1, 0, 1, 0], ["a", "b"])
    calls: list[tuple[int, int | None]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = vds.profile_dataset(ds, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (5, 5) and all(t == 5 for _, t in calls)
    assert [d for d, _ in calls] == sorted({d for d, _ in calls})
    assert df["label"].dtype == pd.Int64Dtype() and df["index"].dtype == np.int64


def test_wrapped_sources_streams_and_failing_items(monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = _arrays(12, size=(6, 6))
    ds = _hf_png(arrays, [k % 3 for k in range(12)], ["a", "b", "c"])
    cols = ["index", "label", "width", "brightness", "sharpness", "file_size"]
    direct = vds.profile_dataset(ds)
    wrapped = vds.profile_dataset(data.as_image_source(ds))
    pd.testing.assert_frame_equal(direct[cols], wrapped[cols])
    # an ImageSource over a stream: read lazily in buffer order, len never called
    monkeypatch.setattr(datasets.IterableDataset, "__len__",
                        lambda self: (_ for _ in ()).throw(AssertionError("len() on a stream")),
                        raising=False)
    src = data.as_image_source(ds.to_iterable_dataset(), buffer_size=4, seed=2)
    df = vds.profile_dataset(src, sample=5)
    assert len(df) == 5 and df.attrs["sampled"] is True and df.attrs["n_total"] is None
    firsts = [np.array(src[i].image) for i in range(5)]
    assert df["brightness"].tolist() == pytest.approx(
        [_ref_stats(a)["brightness"] for a in firsts], rel=1e-5)
    model = _TinyCNN()
    emb = vds.embed(model, src, limit=5, cache=False)
    x = torch.stack([torch.from_numpy(a).permute(2, 0, 1).float() / 255 for a in firsts])
    with torch.no_grad():
        assert np.allclose(emb, model.act(model.conv(x)).mean(dim=(2, 3)).numpy(), atol=1e-5)
    monkeypatch.undo()

    # a torch dataset whose item 1 raises: one error row, the rest profiled
    class Flaky(torch.utils.data.Dataset):
        classes = ["x", "y"]

        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int):
            if i == 1:
                raise OSError("disk hiccup")
            return Image.fromarray(arrays[i]), i % 2

    flaky = vds.profile_dataset(Flaky())
    assert flaky["error"].notna().tolist() == [False, True, False]
    assert "disk hiccup" in flaky.loc[1, "error"] and flaky["class_name"][2] == "x"


def test_flat_images_of_different_colours_are_not_near_duplicates() -> None:
    """Centred, two flat colours differ only in scale, which the cosine ignores: they must
    match only exact copies of themselves."""
    flat = [Image.new("RGB", (16, 16), c) for c in ((200, 0, 0), (100, 0, 0), (200, 100, 100),
                                                   (200, 100, 100), (30, 30, 30))]
    pairs = vds.near_duplicates(flat, 0.05)
    assert list(zip(pairs["i"], pairs["j"], pairs["exact"], strict=True)) == [(2, 3, True)]
    # a real pattern under a brightness shift is still found
    ramp = np.tile(np.linspace(0, 200, 16, dtype=np.float32)[None, :, None], (16, 1, 3))
    shifted = [Image.fromarray((ramp + d).astype(np.uint8)) for d in (0, 40)]
    near = vds.near_duplicates(shifted, 0.05)
    assert len(near) == 1 and not near["exact"][0]


def test_profile_of_arrays_equals_the_profile_of_the_same_pil_images() -> None:
    """In-memory arrays skip the PIL round trip; the table is the one PIL images give."""
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, size=(30, 9, 7, 3)).astype(np.uint8)
    gray = rng.random((30, 6, 11))
    pd.testing.assert_frame_equal(vds.profile_dataset(rgb),
                                  vds.profile_dataset([Image.fromarray(a) for a in rgb]))
    as_u8 = [Image.fromarray(np.round(g * 255).astype(np.uint8)) for g in gray]
    table = vds.profile_dataset(gray)
    pd.testing.assert_frame_equal(table, vds.profile_dataset(as_u8))
    assert set(table["mode"]) == {"L"} and set(table["channels"]) == {1.0}


def test_profile_of_a_stream_uses_the_adapters_default_shuffle_buffer() -> None:
    """With defaults, ``profile_dataset(stream)`` row i is ``as_image_source(stream)[i]``:
    one buffer size for both, else the rows of a profile and of an embedding misalign."""
    arrays = _arrays(300, size=(4, 4))
    stream = _hf_png(arrays, [k % 2 for k in range(300)], ["a", "b"]).to_iterable_dataset()
    df = vds.profile_dataset(stream, sample=20)
    src = data.as_image_source(stream)
    expected = [_ref_stats(np.asarray(src[i].image))["brightness"] for i in range(20)]
    assert df["brightness"].tolist() == pytest.approx(expected, rel=1e-5)


def test_sixteen_bit_images_are_profiled_and_hashed_at_their_depth() -> None:
    """Two I;16 images one grey level apart are not exact duplicates (8 bits would merge them),
    and the profile scales them by the data set's white level, as they are shown."""
    a = np.zeros((8, 8), np.uint16)
    a[2:5, 2:5] = 4000
    b = a.copy()
    b[3, 3] = 4001
    images = [Image.fromarray(a), Image.fromarray(b), Image.fromarray(a.copy())]
    assert images[0].mode == "I;16"
    pairs = vds.near_duplicates(images, threshold=0.0)
    exact = {(int(r.i), int(r.j)) for r in pairs.itertuples() if r.exact}
    assert exact == {(0, 2)}
    # near duplicates at the 12-bit white level: the three thumbnails match
    near = vds.near_duplicates(images, threshold=1e-3, max_value=4095)
    assert {(int(r.i), int(r.j)) for r in near.itertuples()} == {(0, 1), (0, 2), (1, 2)}
    with pytest.raises(ValueError, match="max_value"):
        vds.near_duplicates(images, max_value=-1)
    twelve_bit = a / 4095 * 255
    expected = float(np.round(twelve_bit).mean() / 255)
    by_source = vds.profile_dataset(data.as_image_source(images, max_value=4095))
    by_arg = vds.profile_dataset(images, max_value=4095)
    assert by_source["brightness"].tolist() == pytest.approx([expected] * 3, abs=1e-6)
    assert by_arg["brightness"].tolist() == pytest.approx([expected] * 3, abs=1e-6)
    full_range = vds.profile_dataset(images)["brightness"][0]
    assert full_range == pytest.approx(float(np.round(a / 65535 * 255).mean() / 255), abs=1e-6)
    with pytest.raises(ValueError, match="max_value"):
        vds.profile_dataset(images, max_value=0)


def test_high_bit_images_reach_the_model_scaled_not_clipped() -> None:
    """PIL's convert clips 16-bit and float values to 0..255; the model preprocess scales them
    (by the mode's range, or a source's max_value), as they are shown."""
    from visloupe.core.models import ImagePreprocess

    ramp = np.linspace(0, 1, 16 * 16).reshape(16, 16)
    i16 = Image.fromarray((ramp * 65535).astype(np.uint16))
    f32 = Image.fromarray(ramp.astype(np.float32))
    pixels = ImagePreprocess(16, "RGB", 0.0, 1.0)
    for img in (i16, f32):
        x = pixels(img)
        assert x.shape == (3, 16, 16)
        assert float(x.mean()) == pytest.approx(0.5, abs=2e-3)  # clipped: ~1.0 or 0.0
    twelve = Image.fromarray((ramp * 4095).astype(np.uint16))
    src = data.as_image_source([twelve], max_value=4095)
    assert float(src.tensors([0]).mean()) == pytest.approx(0.5, abs=1e-3)  # default preprocess
    assert float(src.tensors([0], pixels).mean()) == pytest.approx(0.5, abs=2e-3)
    assert float(data.as_image_source([twelve]).tensors([0]).mean()) == pytest.approx(
        4095 / 65535 / 2, abs=1e-3)  # without a white level: the mode's range


def test_a_uint16_gray_stack_is_read_as_16_bit_images() -> None:
    """Microscopy-style ``(N, H, W)`` uint16 arrays: 16-bit images scaled by max_value (they
    were refused as 'integer pixel values in [0, 255]')."""
    stack = (np.linspace(0, 1, 3 * 8 * 8).reshape(3, 8, 8) * 4095).astype(np.uint16)
    src = data.as_image_source(stack, max_value=4095)
    assert src[0].image.mode == "I;16"
    expected = [float(np.round(a / 4095 * 255).mean() / 255) for a in stack]
    for df in (vds.profile_dataset(src), vds.profile_dataset(stack, max_value=4095)):
        assert df["error"].isna().all()
        assert df["brightness"].tolist() == pytest.approx(expected, abs=1e-6)
    assert float(src.tensors([2]).mean()) == pytest.approx(float(stack[2].mean() / 4095),
                                                           abs=1e-6)
    with pytest.raises(ValueError, match="gray uint16 arrays are read as 16-bit images"):
        data.as_image_source(np.full((1, 4, 4, 3), 300, np.uint16))[0]


def test_columns_given_beside_an_image_source_are_refused() -> None:
    src = data.as_image_source(data.load_builtin("shapes", "test").select(range(2)))
    with pytest.raises(ValueError, match="image_column: an ImageSource has its columns"):
        vds.profile_dataset(src, image_column="nope")


def test_eight_bit_values_stored_wide_get_a_hint_and_widgets_scale_high_bit() -> None:
    """HF decodes integer arrays as mode "I": 0..255 values scaled as 16-bit look 257x too
    dark, so a warning names max_value=255; the widgets' default preprocess scales 16-bit
    images like core instead of PIL's clipping."""
    import datasets
    from visloupe.widgets._common import default_preprocess

    arr = np.arange(64, dtype=np.int32).reshape(8, 8) * 4
    ds = datasets.Dataset.from_dict({"image": [arr]}).cast_column("image", datasets.Image())
    with pytest.warns(UserWarning, match="pass max_value=255"):
        data.as_image_source(ds).tensors([0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scaled = data.as_image_source(ds, max_value=255).tensors([0])
    assert float(scaled.max()) == pytest.approx(252 / 255)
    ramp = Image.fromarray((np.linspace(0, 1, 64).reshape(8, 8) * 65535).astype(np.uint16))
    pre = default_preprocess(torch.nn.Conv2d(3, 1, 1))
    assert float(pre(ramp).mean()) == pytest.approx(0.5, abs=3e-3)
