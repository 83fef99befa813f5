"""A small deterministic training loop for the built-in models (in-memory tensors, CPU friendly).

Shuffling and augmentation draw from a ``torch.Generator`` seeded by ``seed``; dropout, which
cannot take a generator, runs inside a forked global RNG seeded from the same seed, so the caller's
global RNG state is left untouched and the same seed gives the same weights.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TrainConfig", "TrainResult", "accuracy", "random_shift", "train_classifier"]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation recipe: AdamW with a one-cycle schedule (linear warm-up, cosine decay)."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.15
    label_smoothing: float = 0.0
    max_shift: int = 0  # random translation augmentation (pixels, images only)
    hflip: bool = False  # random horizontal flips (images only)
    grad_clip: float | None = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced: per-epoch metrics, snapshots and timing."""

    history: tuple[dict[str, float], ...]
    test_accuracy: float
    train_seconds: float
    snapshots: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)


@torch.no_grad()
def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *,
             batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` (put in eval() for the call, then restored)."""
    was_training = model.training
    model.eval()
    try:
        correct = 0
        for start in range(0, len(inputs), batch_size):
            logits = model(inputs[start:start + batch_size])
            correct += int((logits.argmax(dim=1) == labels[start:start + batch_size]).sum())
    finally:
        model.train(was_training)
    return correct / max(len(inputs), 1)


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator,
                 hflip: bool = False) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (edge-replicated) and optionally flip."""
    n, _, h, w = images.shape
    out = images
    if max_shift > 0:
        padded = F.pad(images, (max_shift,) * 4, mode="replicate")
        offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
        rows = (offsets[:, 0, None] + torch.arange(h))[:, None, :, None]
        cols = (offsets[:, 1, None] + torch.arange(w))[:, None, None, :]
        batch = torch.arange(n)[:, None, None, None]
        chans = torch.arange(images.shape[1])[None, :, None, None]
        out = padded[batch, chans, rows, cols]
    if hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_classifier(
    model: nn.Module,
    train_inputs: torch.Tensor,
    train_labels: torch.Tensor,
    test_inputs: torch.Tensor,
    test_labels: torch.Tensor,
    config: TrainConfig,
    *,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    snapshot_epochs: tuple[int, ...] = (),
) -> TrainResult:
    """Train ``model`` in place with cross-entropy; returns metrics and state-dict snapshots.

    ``snapshots`` holds ``"random"`` (before any update), ``"epoch<k>"`` for k in
    ``snapshot_epochs`` and ``"final"``. ``progress(epoch, total, metrics)`` is called after each
    epoch with ``loss``, ``train_accuracy``, ``test_accuracy`` and ``seconds``.
    """
    if len(train_inputs) != len(train_labels) or len(train_inputs) == 0:
        raise ValueError(
            f"train_inputs/train_labels: expected equal non-zero lengths, got "
            f"{len(train_inputs)}/{len(train_labels)}"
        )
    generator = torch.Generator().manual_seed(int(seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    n = len(train_inputs)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = max(1, int(config.warmup_fraction * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, total_steps, warmup)
    )
    is_image = train_inputs.is_floating_point() and train_inputs.dim() == 4
    snapshots = {"random": _snapshot(model)}
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))  # dropout only; scoped to this fork
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = torch.randperm(n, generator=generator)
            loss_sum, correct = 0.0, 0
            for begin in range(0, n, config.batch_size):
                index = order[begin:begin + config.batch_size]
                inputs, labels = train_inputs[index], train_labels[index]
                if is_image and (config.max_shift or config.hflip):
                    inputs = random_shift(inputs, config.max_shift, generator, config.hflip)
                logits = model(inputs)
                loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(index)
                correct += int((logits.argmax(dim=1) == labels).sum())
            metrics = {
                "loss": loss_sum / n,
                "train_accuracy": correct / n,
                "test_accuracy": accuracy(model, test_inputs, test_labels),
                "seconds": time.perf_counter() - start,
            }
            history.append(metrics)
            logger.info("epoch %d/%d: %s", epoch, config.epochs,
                        ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
            if progress is not None:
                progress(epoch, config.epochs, dict(metrics))
            if epoch in snapshot_epochs and epoch != config.epochs:
                snapshots[f"epoch{epoch}"] = _snapshot(model)
    train_seconds = time.perf_counter() - start
    model.eval()
    snapshots["final"] = _snapshot(model)
    return TrainResult(tuple(history), history[-1]["test_accuracy"], train_seconds, snapshots)
