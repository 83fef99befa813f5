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


NOTEBOOK_TIMES: list[tuple[str, float]] = []
NOTEBOOK_GOAL_S = 90


@pytest.fixture
def record_notebook_time():
    """Call with (label, seconds) once a notebook has run; the times are printed at the end."""
    return lambda label, seconds: NOTEBOOK_TIMES.append((label, seconds))


def pytest_terminal_summary(terminalreporter) -> None:
    """The tutorials' execution times beside their goal (issue 17: < 90 s each on 2 cores)."""
    if not NOTEBOOK_TIMES:
        return
    terminalreporter.section(f"notebook execution times (goal < {NOTEBOOK_GOAL_S} s each)")
    for label, seconds in NOTEBOOK_TIMES:
        flag = "" if seconds < NOTEBOOK_GOAL_S else "  OVER GOAL"
        terminalreporter.write_line(f"{seconds:6.0f} s  {label}{flag}")
