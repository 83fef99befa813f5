"""Test-session set-up shared by every layer of the suite."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# One weight cache for the whole session (and for the notebook kernels and JupyterLab servers the
# tests start, which inherit the environment), so each built-in model trains at most once.
os.environ.setdefault("VISLOUPE_CACHE", str(ROOT / ".cache" / "visloupe-test"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def one_thread():
    """Tiny models: one torch thread is as fast and leaves the CI's other cores alone."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
