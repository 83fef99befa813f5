"""The built-in models' weights ship inside the package (issue 17: a first run in seconds).

They load with no training, they are what the recipe trains (one model retrained here and
compared), and weights a code change made stale are not used.
"""

from __future__ import annotations

import pytest
import torch
from visloupe.core import data, models
from visloupe.core.models import zoo

BUILTIN = [n for n in models.available_models() if not n.startswith("efficientnet")]


def _no_training(monkeypatch):
    monkeypatch.setattr(zoo, "train_classifier",
                        lambda *a, **k: pytest.fail("trained although weights are shipped"))


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_loads_from_the_shipped_weights_without_training(name, tmp_path,
                                                                       monkeypatch):
    _no_training(monkeypatch)
    folder = models.shipped_weights(name)
    assert folder is not None and folder.parent == zoo.SHIPPED
    model, preprocess = models.pretrained(name, cache_dir=tmp_path)  # an empty user cache
    assert not model.training and callable(preprocess)
    info = models.model_info(name, cache_dir=tmp_path)
    stages = models.checkpoints(name, cache_dir=tmp_path)
    assert list(stages) == info["checkpoints"] and list(stages)[-1] == "final"
    assert not any(tmp_path.iterdir()), "loading shipped weights writes nothing to the cache"


def test_a_retrained_model_matches_the_shipped_one(tmp_path):
    """``scripts/train_builtin_models.py``'s path (``train_builtin``) on shapes-cnn: the same
    test accuracy within 1 point and the same predictions on at least 98 % of the test set
    (bit-equal weights are likely on the machine that made them, not promised elsewhere)."""
    torch.manual_seed(0)
    folder = models.train_builtin("shapes-cnn", tmp_path)
    fresh, meta = models.load_model(folder / "final.safetensors")
    shipped, shipped_meta = models.load_model(zoo.SHIPPED / "shapes-cnn" / "final.safetensors")
    assert abs(meta["test_accuracy"] - shipped_meta["test_accuracy"]) <= 0.01
    assert meta["recipe"] == shipped_meta["recipe"]
    _, preprocess = models.pretrained("shapes-cnn")
    ds = data.load_builtin("shapes", "test")
    x = torch.stack([preprocess(im) for im in ds["image"]])
    with torch.no_grad():
        agree = (fresh.eval()(x).argmax(1) == shipped.eval()(x).argmax(1)).float().mean()
    assert agree >= 0.98, f"retrained and shipped shapes-cnn agree on {float(agree):.3f}"


def test_stale_shipped_weights_are_not_used(tmp_path, monkeypatch, caplog):
    """A recipe change (here the cache version) makes the shipped entry stale: it is skipped
    with a warning and the model is trained instead."""
    monkeypatch.setattr(zoo, "CACHE_VERSION", zoo.CACHE_VERSION + 1)
    assert models.shipped_weights("text-cnn") is None

    class Trained(Exception):
        pass

    def planted(*_a, **_k):
        raise Trained

    monkeypatch.setattr(zoo, "train_classifier", planted)
    with caplog.at_level("WARNING", logger="visloupe.core.models.zoo"), \
            pytest.raises(Trained):
        models.pretrained("text-cnn", cache_dir=tmp_path)
    assert "unusable" in caplog.text and "training built-in model 'text-cnn'" in caplog.text
