"""as_image_source: every accepted input kind reads the same way; bad inputs get named errors."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from visloupe.core import data
from visloupe.core.data import Sample, as_image_source


def _img(value: int, size: tuple[int, int] = (6, 5), mode: str = "RGB") -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = np.full((size[1], size[0], channels), value, dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode=mode)


def _hf(n: int = 6) -> datasets.Dataset:
    feats = datasets.Features({"caption": datasets.Value("string"),
                               "picture": datasets.Image(),
                               "cls": datasets.ClassLabel(names=["a", "b", "c"]),
                               "score": datasets.Value("int32")})
    return datasets.Dataset.from_dict(
        {"caption": [f"c{i}" for i in range(n)], "picture": [_img(10 * i) for i in range(n)],
         "cls": [i % 3 for i in range(n)], "score": [100 + i for i in range(n)]},
        features=feats)


def test_hf_dataset_detects_columns() -> None:
    src = as_image_source(_hf())
    assert len(src) == src.length == 6 and src.class_names == ["a", "b", "c"]
    s = src[4]
    assert isinstance(s, Sample) and s.index == 4 and s.label == 1 and s.mask is None
    assert s.image.getpixel((0, 0)) == (40, 40, 40)
    assert src[-1].index == 5
    assert [x.label for x in src] == [0, 1, 2, 0, 1, 2]
    assert src.labels([0, 5]).tolist() == [0, 2]
    x = src.tensors([1, 2])
    assert x.shape == (2, 3, 5, 6) and x.dtype == torch.float32
    assert torch.allclose(x[1], torch.full((3, 5, 6), 20 / 255))
    # An int column can serve as labels; a user format does not leak into the raw images.
    ds = _hf().with_format("torch")
    src2 = as_image_source(ds, label_column="score", class_names=None)
    assert src2[3].label == 103 and isinstance(src2[3].image, Image.Image)
    assert src2.class_names is None
    with pytest.raises(IndexError):
        src[6]


def test_hf_dataset_errors_list_columns() -> None:
    ds = _hf()
    with pytest.raises(ValueError, match="image_column.*'photo'.*caption.*picture.*cls"):
        as_image_source(ds, image_column="photo")
    with pytest.raises(ValueError, match="image_column.*'caption' is a Value.*not an Image"):
        as_image_source(ds, image_column="caption")
    with pytest.raises(ValueError, match="label_column.*'lbl'.*available columns"):
        as_image_source(ds, label_column="lbl")
    with pytest.raises(ValueError, match="label_column.*'caption'.*ClassLabel or an integer"):
        as_image_source(ds, label_column="caption")
    with pytest.raises(ValueError, match="data: no Image feature.*caption"):
        as_image_source(ds.remove_columns("picture"))
    with pytest.raises(ValueError, match="data.*empty"):
        as_image_source(ds.select([]))
    with pytest.raises(ValueError, match="class_names: got 2 names.*3 classes"):
        as_image_source(ds, class_names=["x", "y"])


def test_shapes_masks_come_through() -> None:
    ds = data.load_builtin("shapes", "test", n=10)
    src = as_image_source(ds)
    s = src[2]
    assert s.mask is not None and s.mask.mode == "L" and s.mask.size == s.image.size
    assert np.array_equal(np.asarray(s.mask), np.asarray(ds[2]["mask"]))
    assert src.class_names == list(data.SHAPE_CLASSES) and s.label == ds[2]["label"]


def test_iterable_dataset_is_buffered_and_seeded() -> None:
    ds = _hf(12)
    stream = ds.to_iterable_dataset()
    src = as_image_source(stream, buffer_size=4, seed=1)
    assert src.length is None and src.class_names == ["a", "b", "c"]
    with pytest.raises(TypeError, match="length is unknown"):
        len(src)
    first = src[0]
    assert src._reader.buffered <= 2  # lazily pulled, not drained
    order = [int(s.image.getpixel((0, 0))[0]) // 10 for s in src]
    assert sorted(order) == list(range(12)) and order != list(range(12))  # all, shuffled
    assert first.image.getpixel((0, 0))[0] // 10 == order[0]
    for s in (src[i] for i in range(12)):
        assert s.label == (int(s.image.getpixel((0, 0))[0]) // 10) % 3  # label stays with image
    assert len(src) == 12  # known once read to the end
    with pytest.raises(IndexError):
        src[12]
    again = [int(s.image.getpixel((0, 0))[0]) // 10
             for s in as_image_source(ds.to_iterable_dataset(), buffer_size=4, seed=1)]
    other = [int(s.image.getpixel((0, 0))[0]) // 10
             for s in as_image_source(ds.to_iterable_dataset(), buffer_size=4, seed=2)]
    assert again == order and other != order
    plain = as_image_source(ds.to_iterable_dataset(), buffer_size=0)
    with pytest.raises(IndexError, match="past the end"):
        plain[20]
    assert [s.index for s in plain] == list(range(12))


def test_imagefolder(tmp_path: Path) -> None:
    for cls, value in (("cat", 50), ("dog", 200)):
        (tmp_path / cls).mkdir()
        for k in range(3):
            _img(value + k, size=(7, 4)).save(tmp_path / cls / f"{k}.png")
    src = as_image_source(tmp_path)
    assert len(src) == 6 and src.class_names == ["cat", "dog"] and src.kind == "datasets.Dataset"
    for s in src:
        expected = 0 if s.image.getpixel((0, 0))[0] < 128 else 1
        assert s.label == expected and s.image.size == (7, 4)
    assert sorted(src.labels(range(6)).tolist()) == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="data.*no files"):
        (tmp_path / "empty").mkdir()
        as_image_source(tmp_path / "empty")
    with pytest.raises(ValueError, match="data.*does not exist"):
        as_image_source(str(tmp_path / "missing"))


class _TupleDataset(torch.utils.data.Dataset):
    classes = ["zero", "one"]

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):  # noqa: ANN204 - test double
        if self.kind == "pil":
            return _img(i * 20), i % 2
        if self.kind == "hwc":
            return np.full((5, 6, 3), i * 20, dtype=np.uint8), torch.tensor(i % 2)
        if self.kind == "chw":
            return torch.full((3, 5, 6), i * 20 / 255), i % 2
        return {"pixel_values": torch.full((1, 5, 6), i * 20 / 255), "labels": i % 2}


@pytest.mark.parametrize("kind", ["pil", "hwc", "chw", "dict"])
def test_torch_dataset(kind: str) -> None:
    src = as_image_source(_TupleDataset(kind))
    assert len(src) == 4 and src.class_names == ["zero", "one"] and src.kind == "torch Dataset"
    s = src[3]
    assert s.label == 1 and s.image.size == (6, 5)
    assert np.asarray(s.image).reshape(-1)[0] == 60
    assert src.rgb(3).mode == "RGB" and src.rgb(3).getpixel((0, 0)) == (60, 60, 60)


def test_lists_of_paths_and_images(tmp_path: Path) -> None:
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"{k}.png")
        _img(30 * k, mode="L").save(paths[-1])
    src = as_image_source([str(p) for p in paths], labels=[2, 1, 0], class_names=["a", "b", "c"])
    assert src[0].image.mode == "L" and src[1].label == 1 and src.class_names == ["a", "b", "c"]
    assert src.rgb(1).getpixel((0, 0)) == (30, 30, 30)
    pairs = as_image_source([(_img(5), 1), (_img(6), 0)])
    assert [s.label for s in pairs] == [1, 0]
    unlabeled = as_image_source(paths)
    assert unlabeled[2].label is None
    with pytest.raises(ValueError, match="indices: item 0 has no label"):
        unlabeled.labels([0])
    with pytest.raises(ValueError, match="labels: got 2 labels for 3 images"):
        as_image_source(paths, labels=[0, 1])
    with pytest.raises(ValueError, match="data: the list is empty"):
        as_image_source([])
    with pytest.raises(TypeError, match="data: expected a list of images"):
        as_image_source([1, 2, 3])
    with pytest.raises(TypeError, match="data: expected a datasets"):
        as_image_source(42)


def test_arrays() -> None:
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (5, 8, 9, 3), dtype=np.uint8)
    src = as_image_source(nhwc, labels=np.arange(5))
    assert src[2].image.size == (9, 8) and np.array_equal(np.asarray(src[2].image), nhwc[2])
    assert src.labels([4]).tolist() == [4]
    nchw = torch.from_numpy(nhwc).permute(0, 3, 1, 2).float() / 255
    assert np.array_equal(np.asarray(as_image_source(nchw)[2].image), nhwc[2])
    nhw = rng.random((3, 4, 4))
    got = np.asarray(as_image_source(nhw)[1].image)
    assert got.shape == (4, 4) and np.array_equal(got, np.round(nhw[1] * 255).astype(np.uint8))
    pair = as_image_source((nhwc, [0, 1, 0, 1, 0]))
    assert pair.labels(range(5)).tolist() == [0, 1, 0, 1, 0]
    # Channel-last when dim 1 and the last dim both look like channels.
    ambiguous = np.zeros((2, 3, 4, 3), dtype=np.uint8)
    assert as_image_source(ambiguous)[0].image.size == (4, 3)
    x = as_image_source(nchw).tensors([0, 1])
    assert torch.allclose(x, nchw[:2], atol=1 / 255)
    with pytest.raises(ValueError, match=r"data item 0: expected float pixel values in \[0, 1\]"):
        as_image_source(torch.randn(2, 3, 8, 8))[0]
    with pytest.raises(ValueError, match="data: expected an array of shape"):
        as_image_source(np.zeros((2, 8, 8, 7)))
    with pytest.raises(ValueError, match="data: the array is empty"):
        as_image_source(np.zeros((0, 8, 8)))


def test_rgba_grayscale_mixed_sizes_and_preprocess() -> None:
    rgba = Image.new("RGBA", (4, 3), (255, 0, 0, 0))  # fully transparent red -> white
    half = Image.new("RGBA", (4, 3), (0, 0, 0, 128))
    gray = _img(77, size=(8, 8), mode="L")
    src = as_image_source([rgba, half, gray])
    assert src[0].image.mode == "RGBA"  # raw stays raw
    assert src.rgb(0).getpixel((0, 0)) == (255, 255, 255)
    assert all(abs(c - 127) <= 1 for c in src.rgb(1).getpixel((0, 0)))
    assert src.rgb(2).mode == "RGB" and src.rgb(2).getpixel((0, 0)) == (77, 77, 77)
    with pytest.raises(ValueError, match="preprocess: returned shape .* need a resize"):
        src.tensors([0, 2], preprocess=lambda im: data.pil_to_tensor(data.to_rgb(im)))

    def pre(im: Image.Image) -> torch.Tensor:
        return data.pil_to_tensor(data.to_rgb(im).resize((5, 5)))

    x = src.tensors([0, 1, 2], preprocess=pre)
    assert x.shape == (3, 3, 5, 5) and torch.allclose(x[2], torch.full((3, 5, 5), 77 / 255))
    with pytest.raises(TypeError, match=r"preprocess: expected it to return a Tensor \(C, H, W\)"):
        src.tensors([0], preprocess=lambda im: np.asarray(im))
    with pytest.raises(TypeError, match=r"preprocess: .*got a tensor of shape \(1, 3, 5, 5\)"):
        src.tensors([0], preprocess=lambda im: pre(im)[None])
    with pytest.raises(TypeError, match="preprocess: expected a callable"):
        src.tensors([0], preprocess="resize")


def test_photos_through_the_adapter() -> None:
    src = as_image_source(data.load_builtin("photos", "test"))
    modes = {src[i].image.mode for i in range(len(src))}
    assert "L" in modes and all(src.rgb(i).mode == "RGB" for i in range(len(src)))
    assert src.class_names[src[0].label] == "tabby"  # chelsea: an ImageNet class
    unlabelled = [i for i in range(len(src)) if src[i].label is None]  # ClassLabel -1
    assert len(unlabelled) == 12


# --------------------------------------------------------------------------- high-bit images


def test_high_bit_images_scale_by_the_mode_range_not_per_image() -> None:
    """An I;16 ramp to 255 and one to 256 differ by one grey level, so they must display
    alike: the white level is the mode's range (65535), never each image's own maximum."""
    from visloupe.core.data import mode_max, to_rgb

    ramp255 = Image.fromarray(np.linspace(0, 255, 64).astype(np.uint16).reshape(8, 8))
    ramp256 = Image.fromarray(np.linspace(0, 256, 64).astype(np.uint16).reshape(8, 8))
    a, b = (np.asarray(to_rgb(r), dtype=np.float64) for r in (ramp255, ramp256))
    assert abs(a.mean() - b.mean()) < 1.0 and a.max() <= 1.0  # 255/65535 of white
    assert mode_max("I;16") == 65535.0 and mode_max("F") == 1.0
    # 12-bit data: a per-dataset white level, given once to the source
    twelve = [Image.fromarray(np.full((4, 4), v, np.uint16)) for v in (0, 2048, 4095)]
    src = as_image_source(twelve, max_value=4095)
    assert [src.rgb(i).getpixel((0, 0))[0] for i in range(3)] == [0, 128, 255]
    assert as_image_source(twelve).rgb(2).getpixel((0, 0))[0] == 16  # 4095/65535 of white
    # the default preprocess keeps the full precision of a 16-bit image, scaled the same way
    x = as_image_source(twelve).tensors([1, 2])
    assert x.shape == (2, 1, 4, 4) and torch.allclose(x[:, 0, 0, 0],
                                                      torch.tensor([2048, 4095]) / 65535.0)
    floats = Image.fromarray(np.full((2, 2), 0.25, np.float32))
    assert to_rgb(floats).getpixel((0, 0))[0] == 64
    with pytest.raises(ValueError, match="max_value"):
        as_image_source(twelve, max_value=0)


def test_model_inputs_take_tensors_and_any_data() -> None:
    from visloupe.core.data import model_inputs

    x = torch.rand(5, 3, 4, 4)
    parts = list(model_inputs(x, batch_size=2))
    assert [p.shape[0] for p in parts] == [2, 2, 1] and torch.equal(torch.cat(parts), x)
    assert sum(p.shape[0] for p in model_inputs(x, batch_size=2, limit=3)) == 3
    with pytest.raises(ValueError, match="preprocess"):
        list(model_inputs(x, preprocess=lambda im: im))
    with pytest.raises(ValueError, match=r"data: a float tensor .* got shape \(3, 4, 4\)"):
        list(model_inputs(x[0]))
    images = [Image.fromarray(np.full((4, 4, 3), 10 * k, np.uint8)) for k in range(3)]
    got = torch.cat(list(model_inputs(images, batch_size=2)))
    assert got.shape == (3, 3, 4, 4) and torch.allclose(got[:, 0, 0, 0],
                                                        torch.tensor([0, 10, 20]) / 255.0)
    with pytest.raises(ValueError, match="batch_size"):
        list(model_inputs(images, batch_size=0))
    with pytest.raises(ValueError, match=r"\(2, 8, 8, 3\) looks channels-last.*permute"):
        list(model_inputs(torch.rand(2, 8, 8, 3)))


def test_data_with_several_splits_names_the_way_to_pick_one() -> None:
    import datasets
    from visloupe.core.data import as_image_source

    rows = {"image": [Image.new("RGB", (4, 4))], "label": [0]}
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows),
                               "test": datasets.Dataset.from_dict(rows)})
    with pytest.raises(ValueError, match=r"splits \['train', 'test'\]; pick one, e.g. "
                                         r"data\['train'\]"):
        as_image_source(dd)
    assert as_image_source(dd, split="test").length == 1


@pytest.mark.parametrize("case", ["rgb", "gray", "gray1", "chw", "float", "bool", "int16",
                                  "tensor", "rgba"])
def test_rgb_pixels_equal_the_pil_round_trip(case: str) -> None:
    """The array fast path (no PIL round trip) gives the mode and pixels that
    to_rgb(to_pil(x)) gives, for every array layout and dtype to_pil accepts."""
    rng = np.random.default_rng(3)
    u8 = rng.integers(0, 256, size=(5, 7, 3)).astype(np.uint8)
    x = {"rgb": u8, "gray": u8[..., 0], "gray1": u8[..., :1], "chw": np.moveaxis(u8, -1, 0),
         "float": rng.random((5, 7, 3)), "bool": u8[..., 0] > 128,
         "int16": u8[..., 0].astype(np.int16), "tensor": torch.from_numpy(u8).permute(2, 0, 1),
         "rgba": np.concatenate([u8, u8[..., :1]], axis=-1)}[case]
    pil = data.to_pil(x)
    mode, rgb = data.rgb_pixels(x)
    assert mode == pil.mode
    np.testing.assert_array_equal(rgb, np.asarray(data.to_rgb(pil)))
    src = as_image_source(np.stack([x.numpy() if isinstance(x, torch.Tensor) else x] * 2))
    np.testing.assert_array_equal(src.rgb_array(1), np.asarray(src.rgb(1)))


def test_rgb_pixels_reject_what_to_pil_rejects() -> None:
    with pytest.raises(ValueError, match=r"image: expected float pixel values in \[0, 1\]"):
        data.rgb_pixels(np.full((4, 4, 3), 2.0), arg="image")
    with pytest.raises(ValueError, match="expected integer pixel values in"):
        data.rgb_pixels(np.full((4, 4), 300, dtype=np.int32))
    with pytest.raises(ValueError, match=r"got shape \(2, 2, 2\)"):
        data.rgb_pixels(np.zeros((2, 2, 2), dtype=np.uint8))


def test_mixed_modes_and_sizes_are_named_not_blamed_on_preprocess() -> None:
    """The default preprocess keeps each image's channels and size: a mix of 'L' and 'RGB'
    photos is the data's doing, so the error names the items and their modes and the fix."""
    src = as_image_source([_img(10), _img(20, mode="L"), _img(30, size=(9, 9))])
    with pytest.raises(ValueError, match=r"data: item 1 has 1 channels \(a 'L' image\) but item "
                                         r"0 has 3 \(a 'RGB' image\).*ImagePreprocess"):
        src.tensors([0, 1])
    with pytest.raises(ValueError, match=r"data: item 2 is 9x9 but item 0 is 5x6.*resizes"):
        src.tensors([0, 2])
    with pytest.raises(ValueError, match=r"data: item 1 has 1 channels \(a 'L' image\)"):
        list(data.model_inputs(src))
    # a user's preprocess that does not convert is named as the cause
    with pytest.raises(ValueError, match=r"preprocess: returned 1 channels for item 1 \(a 'L' "
                                         r"image\) but 3 for item 0 \(a 'RGB' image\)"):
        src.tensors([0, 1], preprocess=data.pil_to_tensor)
    # converting fixes it
    x = src.tensors([0, 1], preprocess=lambda im: data.pil_to_tensor(im.convert("RGB")))
    assert x.shape == (2, 3, 5, 6) and torch.allclose(x[1], torch.full((3, 5, 6), 20 / 255))


def test_broken_rows_are_named(tmp_path: Path) -> None:
    """A missing image or an undecodable file names its row instead of failing anonymously."""
    src = as_image_source([_img(10), None, _img(30)])
    with pytest.raises(TypeError, match=r"data item 1: expected an image .* got NoneType"):
        src[1]
    with pytest.raises(TypeError, match=r"data item 1: "):
        src.tensors([0, 1, 2])
    folder = tmp_path / "photos" / "cat"
    folder.mkdir(parents=True)
    for k in range(3):
        _img(40 * k).save(folder / f"{k}.png")
    (folder / "1.png").write_bytes(b"not a png at all")
    source = as_image_source(tmp_path / "photos")
    readable, broken = [], []
    for i in range(len(source)):
        try:
            readable.append(source[i].image.size)
        except ValueError as e:
            assert str(e).startswith(f"data item {i}: cannot read the image")
            broken.append(i)
    assert len(broken) == 1 and readable == [(6, 5), (6, 5)]
    with pytest.raises(ValueError, match=rf"data item {broken[0]}: cannot read the image"):
        source.tensors(list(range(len(source))))


def test_an_undecodable_file_in_a_stream_spoils_its_item_only(tmp_path) -> None:
    """HF's decode error ends a stream's iterator; the adapter keeps images encoded until an
    item is asked for, so the items after a corrupt file are still there."""
    import datasets
    from visloupe.core import profiling
    from visloupe.core.data import as_image_source

    for k in range(6):
        Image.new("RGB", (4 + k, 4), (40 * k, 0, 0)).save(tmp_path / f"{k}.png")
    (tmp_path / "2.png").write_bytes(b"not a png")
    stream = datasets.load_dataset("imagefolder", data_dir=str(tmp_path),
                                   split="train").to_iterable_dataset()
    src = as_image_source(stream, buffer_size=0)
    with pytest.raises(ValueError, match="data item 2: cannot"):
        src[2]
    assert src[3].image.size == (7, 4) and src[5].image.size == (9, 4)
    profile = profiling.profile_dataset(src)
    assert len(profile) == 6 and profile["error"].notna().tolist() == [False, False, True,
                                                                        False, False, False]


def test_a_folder_holding_a_saved_or_parquet_dataset_is_read_as_one(tmp_path) -> None:
    """Only a folder of image files is an imagefolder; save_to_disk output is loaded from disk
    and Parquet files with datasets.load_dataset (it was read as an empty imagefolder)."""
    import datasets
    from visloupe.core.data import as_image_source

    rows = {"image": [Image.new("RGB", (4 + k, 4)) for k in range(3)], "label": [0, 1, 0]}
    ds = datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "parquet").mkdir()
    ds.to_parquet(str(tmp_path / "parquet" / "train.parquet"))
    for folder in ("saved", "parquet"):
        src = as_image_source(str(tmp_path / folder))
        assert src.length == 3 and src[2].image.size == (6, 4) and src[1].label == 1, folder
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.bin").write_bytes(b"\0\1")
    with pytest.raises(ValueError, match=r"data: folder .* holds no image files"):
        as_image_source(str(tmp_path / "notes"))


def test_a_string_label_column_is_dropped_with_a_warning() -> None:
    import datasets
    from visloupe.core.data import as_image_source

    ds = datasets.Dataset.from_dict({"image": [Image.new("RGB", (4, 4))], "label": ["cat"]})
    with pytest.warns(UserWarning, match=r"label_column: column 'label' .*class_encode_column"):
        src = as_image_source(ds.cast_column("image", datasets.Image()))
    assert src[0].label is None
