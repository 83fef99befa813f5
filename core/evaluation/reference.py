"""Reference explainers that calibrate saliency metrics.

A metric is only informative next to what trivial maps score on it. The COSE brief measured
that input-independent maps keep a fair COSE (they are perfectly consistent and insensitive in
equal parts), while noise is neither consistent nor meaningfully sensitive. These callables follow
the explainer contract ``(model, inputs, target) -> Tensor (N, H, W)`` and never touch the model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "ConstantExplainer",
    "InputIntensityExplainer",
    "UniformNoiseExplainer",
    "reference_explainers",
]


def _check(inputs: Any) -> Tensor:
    if not isinstance(inputs, Tensor) or inputs.dim() != 4 or not inputs.is_floating_point():
        got = (f"{inputs.dtype} tensor of shape {tuple(inputs.shape)}"
               if isinstance(inputs, Tensor) else type(inputs).__name__)
        raise ValueError(f"inputs: expected a float tensor (N, C, H, W), got {got}")
    return inputs


class ConstantExplainer:
    """The same value everywhere: input-, model- and class-independent (``__name__``
    "constant")."""

    __name__ = "constant"

    def __init__(self, value: float = 1.0) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"value: expected a number, got {value!r}")
        self.value = float(value)

    def __call__(self, model: nn.Module, inputs: Tensor, target: Any = None) -> Tensor:
        x = _check(inputs)
        return torch.full((x.shape[0], x.shape[2], x.shape[3]), self.value, dtype=x.dtype,
                          device=x.device)

    def __repr__(self) -> str:
        return f"ConstantExplainer(value={self.value})"


class InputIntensityExplainer:
    """The channel mean of the input: equivariant to every geometric transform by
    construction, blind to the model and the class (``__name__`` "input intensity")."""

    __name__ = "input intensity"

    def __call__(self, model: nn.Module, inputs: Tensor, target: Any = None) -> Tensor:
        x = _check(inputs)
        return x.detach().mean(dim=1)

    def __repr__(self) -> str:
        return "InputIntensityExplainer()"


class UniformNoiseExplainer:
    """i.i.d. uniform [0, 1) noise, a fresh draw at every call from its own generator seeded
    with ``seed`` (a new instance with the same seed replays the same sequence of calls).
    ``reset()`` rewinds it. ``__name__`` "uniform noise"."""

    __name__ = "uniform noise"

    def __init__(self, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed: expected an int, got {seed!r}")
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        self._generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, model: nn.Module, inputs: Tensor, target: Any = None) -> Tensor:
        x = _check(inputs)
        noise = torch.rand((x.shape[0], x.shape[2], x.shape[3]), generator=self._generator,
                           dtype=torch.float32)
        return noise.to(device=x.device, dtype=x.dtype)

    def __repr__(self) -> str:
        return f"UniformNoiseExplainer(seed={self.seed})"


def reference_explainers(seed: int = 0) -> dict[str, Any]:
    """``{"constant", "input intensity", "uniform noise"}`` explainers, ready to pass wherever a
    dict of explainers is accepted."""
    return {"constant": ConstantExplainer(), "input intensity": InputIntensityExplainer(),
            "uniform noise": UniformNoiseExplainer(seed)}
