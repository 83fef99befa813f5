"""``module:factory`` models for the job tests (``helpers.jobmodels:counting_cnn``).

:class:`CountingModel` wraps the built-in ``shapes-cnn`` and counts its forward calls in a
private attribute (public plain attributes enter the model fingerprint, so the count must not).
It raises on every call after ``$VISLOUPE_TEST_FAIL_AFTER`` calls while the file named by
``$VISLOUPE_TEST_FAIL_FILE`` exists: a planted crash that a test arms and disarms between runs
without changing the model's fingerprint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

INSTANCES: list[CountingModel] = []


class CountingModel(nn.Module):
    def __init__(self, inner: nn.Module, fail_after: int | None = None) -> None:
        super().__init__()
        self.inner = inner
        self._calls = 0
        self._fail_after = fail_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._calls += 1
        armed = os.environ.get("VISLOUPE_TEST_FAIL_FILE")
        if self._fail_after is not None and self._calls > self._fail_after and armed \
                and Path(armed).exists():
            raise RuntimeError(f"planted failure after {self._fail_after} model calls")
        return self.inner(x)


def counting_cnn() -> tuple[CountingModel, Any]:
    """``shapes-cnn`` behind a call counter, and its preprocess."""
    from visloupe.core.models import pretrained

    model, preprocess = pretrained("shapes-cnn")
    fail = os.environ.get("VISLOUPE_TEST_FAIL_AFTER")
    wrapped = CountingModel(model, int(fail) if fail else None).eval()
    INSTANCES.append(wrapped)
    return wrapped, preprocess


def not_a_model() -> str:
    return "no model here"
