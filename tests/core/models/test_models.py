"""The built-in model zoo: accuracy, weight cache, checkpoints, errors.

The built-ins load from the weights shipped in the package (tests/core/models/test_shipped.py
checks those against a retraining); tests that need an entry to damage copy it into a temporary
cache and hide the shipped weights, so that what they exercise is the retraining.
"""

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from visloupe.core import data, models
from visloupe.core.models import zoo

TARGETS = {"shapes-cnn": 0.95, "shapes-vit": 0.95, "digits-cnn": 0.95, "text-cnn": 0.90}
DATASETS = {"shapes-cnn": "shapes", "shapes-vit": "shapes", "digits-cnn": "digits",
            "text-cnn": "text"}


@pytest.fixture(scope="session")
def zoo_cache() -> Path:
    return models.cache_root()


@pytest.fixture(scope="session")
def builtin(zoo_cache):
    """``name -> (model, preprocess)``, each trained (or loaded) once per session."""
    loaded = {}

    def get(name):
        if name not in loaded:
            loaded[name] = models.pretrained(name)
        return loaded[name]

    return get


def _test_inputs(name, preprocess):
    ds = data.load_builtin(DATASETS[name], "test")
    labels = torch.tensor(ds["label"])
    if name == "text-cnn":
        return preprocess(list(ds["text"])), labels, ds
    return torch.stack([preprocess(image) for image in ds["image"]]), labels, ds


def _accuracy(model, inputs, labels):
    with torch.no_grad():
        logits = model(inputs)
    return float((logits.argmax(1) == labels).float().mean()), logits


def test_available_models_lists_the_builtins():
    names = models.available_models()
    assert set(TARGETS) <= set(names)
    assert all(isinstance(d, str) and d for d in names.values())


@pytest.mark.parametrize("name", list(TARGETS))
def test_builtin_reaches_its_accuracy_target(name, builtin):
    model, preprocess = builtin(name)
    assert not model.training
    inputs, labels, ds = _test_inputs(name, preprocess)
    acc, logits = _accuracy(model, inputs, labels)
    num_classes = ds.features["label"].num_classes
    assert logits.shape == (len(ds), num_classes)
    assert acc >= TARGETS[name], f"{name}: test accuracy {acc:.4f} < {TARGETS[name]}"
    info = models.model_info(name)
    assert info["class_names"] == ds.features["label"].names
    assert info["test_accuracy"] == pytest.approx(acc, abs=1e-6)
    for key in ("train_seconds", "epochs", "seed", "torch_version", "dataset", "config"):
        assert key in info
    assert dict(model.named_modules())[info["target_layer"]] is not None


def test_image_preprocess_fits_the_model(builtin):
    model, preprocess = builtin("shapes-cnn")
    assert (preprocess.size, preprocess.mode) == ((32, 32), "RGB")
    image = data.load_builtin("shapes", "test")[0]["image"]
    big_rgba = image.resize((64, 64)).convert("RGBA")
    assert preprocess(big_rgba).shape == (3, 32, 32)
    _, pre_digits = builtin("digits-cnn")
    assert pre_digits.mode == "L" and pre_digits(image).shape == (1, 32, 32)


def test_second_call_loads_from_cache_without_training(builtin, monkeypatch):
    model, preprocess = builtin("shapes-cnn")

    def no_training(*args, **kwargs):
        raise AssertionError("pretrained() trained although a valid cache entry exists")

    monkeypatch.setattr(zoo, "train_classifier", no_training)
    calls = []
    again, pre_again = models.pretrained("shapes-cnn", progress=lambda *a: calls.append(a))
    assert calls == [] and again is not model and not again.training
    assert pre_again == preprocess
    x = torch.stack([preprocess(r["image"]) for r in data.load_builtin("shapes", "test")
                     .select(range(8))])
    torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


def _copy_entry(zoo_cache, tmp_path, name):
    """The entry ``pretrained`` loads (user cache, else shipped) copied into ``tmp_path``."""
    source = zoo_cache / name if (zoo_cache / name).exists() else zoo.SHIPPED / name
    shutil.copytree(source, tmp_path / name)
    return tmp_path / name


@pytest.fixture
def hide_shipped(monkeypatch, tmp_path_factory):
    """Call it to hide the shipped weights (after copying an entry from them): a damaged
    cache entry then has nothing to fall back on."""
    return lambda: monkeypatch.setattr(zoo, "SHIPPED", tmp_path_factory.mktemp("no-shipped"))


def _corrupt_weights(folder):
    path = folder / "final.safetensors"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _stale_recipe(folder):
    meta_path = folder / "final.json"
    meta = json.loads(meta_path.read_text())
    meta["recipe"]["train"]["epochs"] += 1
    meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize("damage", [_corrupt_weights, _stale_recipe])
def test_damaged_cache_entry_is_retrained_with_a_warning(damage, builtin, zoo_cache, tmp_path,
                                                         caplog, hide_shipped):
    """text-cnn retrains in seconds; the retrained weights equal the originals (fixed seed) to
    float noise: the shipped ones were trained on another CPU, whose kernels round differently
    (1.4e-6 apart on an AVX-512 EPYC), so bit-equality is not promised."""
    model, preprocess = builtin("text-cnn")
    folder = _copy_entry(zoo_cache, tmp_path, "text-cnn")
    hide_shipped()
    damage(folder)
    calls = []
    with caplog.at_level(logging.WARNING, logger="visloupe.core.models.zoo"):
        again, _ = models.pretrained("text-cnn", cache_dir=tmp_path,
                                     progress=lambda *a: calls.append(a))
    assert calls, "a damaged entry must be retrained"
    assert "retraining" in caplog.text
    reference = model.state_dict()
    for key, value in again.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=1e-4, atol=1e-4)
    assert not list(tmp_path.glob(".text-cnn*")), "temporary folders must be cleaned up"
    models.pretrained("text-cnn", cache_dir=tmp_path,
                      progress=lambda *a: pytest.fail("the repaired entry was not reused"))


@pytest.mark.parametrize("damage", [_corrupt_weights, _stale_recipe])
def test_damaged_cache_entry_falls_back_on_the_shipped_weights(damage, builtin, zoo_cache,
                                                               tmp_path, caplog, monkeypatch):
    model, _ = builtin("text-cnn")
    damage(_copy_entry(zoo_cache, tmp_path, "text-cnn"))
    monkeypatch.setattr(zoo, "train_classifier", lambda *a, **k: pytest.fail("trained"))
    with caplog.at_level(logging.WARNING, logger="visloupe.core.models.zoo"):
        again, _ = models.pretrained("text-cnn", cache_dir=tmp_path)
    assert "unusable" in caplog.text
    shipped, _ = models.load_model(zoo.SHIPPED / "text-cnn" / "final.safetensors")
    for key, value in again.state_dict().items():
        torch.testing.assert_close(value, shipped.state_dict()[key], rtol=0, atol=0)


def test_retrain_flag_trains_again(builtin, zoo_cache, tmp_path):
    builtin("text-cnn")
    _copy_entry(zoo_cache, tmp_path, "text-cnn")
    calls = []
    models.pretrained("text-cnn", cache_dir=tmp_path, retrain=True,
                      progress=lambda e, total, metrics: calls.append((e, total)))
    epochs = models.model_info("text-cnn", cache_dir=tmp_path)["epochs"]
    assert calls == [(e, epochs) for e in range(1, epochs + 1)]


def test_checkpoints_span_the_training_run(builtin):
    model, preprocess = builtin("shapes-cnn")
    snaps = models.checkpoints("shapes-cnn")
    keys = list(snaps)
    assert keys[0] == "random" and keys[-1] == "final" and len(keys) >= 4
    assert all(k.startswith("epoch") for k in keys[1:-1])
    assert all(not m.training for m in snaps.values())
    inputs, labels, _ = _test_inputs("shapes-cnn", preprocess)
    random_acc, _ = _accuracy(snaps["random"], inputs, labels)
    assert random_acc < 0.35  # 5 balanced-ish classes: chance is about 0.2
    final_acc, final_logits = _accuracy(snaps["final"], inputs, labels)
    torch.testing.assert_close(final_logits, model(inputs).detach(), rtol=0, atol=0)
    states = {k: m.state_dict()["head.weight"] for k, m in snaps.items()}
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert not torch.equal(states[a], states[b]), f"{a} and {b} have equal weights"
    first_acc, _ = _accuracy(snaps[keys[1]], inputs, labels)
    assert random_acc < first_acc and final_acc >= TARGETS["shapes-cnn"]


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="shapes-cnn") as info:
        models.pretrained("resnet50")
    assert "text-cnn" in str(info.value) and "resnet50" in str(info.value)
    with pytest.raises(ValueError, match="name"):
        models.checkpoints("nope")


def test_unwritable_cache_dir_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="cache_dir"):
        models.pretrained("text-cnn", cache_dir=blocker / "cache", retrain=True)
    model, _ = models.pretrained("text-cnn", cache_dir=blocker / "cache")  # shipped: read only
    assert not model.training


def test_bad_arguments_raise_type_errors():
    with pytest.raises(TypeError, match="progress"):
        models.pretrained("text-cnn", progress="yes")
    with pytest.raises(TypeError, match="cache_dir"):
        models.pretrained("text-cnn", cache_dir=3)


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VISLOUPE_CACHE", str(tmp_path / "env"))
    assert models.cache_root() == tmp_path / "env"
    assert models.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("VISLOUPE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = models.cache_root()
    assert root.name == "visloupe" and root != tmp_path / "env"
