"""Start and stop a local JupyterLab for the set-up and real-browser tests (DESIGN.md §4)."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

SERVER_FLAGS = (
    "--no-browser",
    "--ServerApp.token=",
    "--ServerApp.password=",
    "--ServerApp.ip=127.0.0.1",
    "--ServerApp.disable_check_xsrf=True",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> bytes:
    """GET ``url`` until it answers 200 or ``timeout`` passes; fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return response.read()
        except Exception as error:  # noqa: BLE001 - keep polling until the deadline
            last = error
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s (last error: {last})")


@contextmanager
def running(command: Sequence[str], cwd: Path, log: Path) -> Iterator[subprocess.Popen]:
    """Run ``command`` in its own process group and kill the whole group on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(command), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def wait_for_kernel(base: str, page, timeout: float = 90.0) -> None:
    """Wait until the server reports an idle kernel and the page shows it as idle (a kernel
    selection dialog, if one appears, is accepted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dialog = page.locator(".jp-Dialog button.jp-mod-accept")
        if dialog.count():
            dialog.first.click()
        try:
            with urllib.request.urlopen(f"{base}/api/kernels", timeout=5) as response:
                kernels = json.loads(response.read())
        except OSError:  # the server answers 500 while a kernel is half started: ask again
            kernels = []
        shown = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count()
        if shown and any(k.get("execution_state") == "idle" for k in kernels):
            return
        page.wait_for_timeout(250)
    raise TimeoutError(f"no idle kernel within {timeout:.0f} s")


def img_bytes(page, selector: str) -> tuple[str, bytes]:
    """The ``src`` of the widget's <img> and the bytes behind it (read in the page)."""
    src, b64 = page.evaluate(
        """async (sel) => {
            const img = document.querySelector(sel);
            const r = await fetch(img.src);
            const buf = new Uint8Array(await r.arrayBuffer());
            let s = ''; for (const b of buf) s += String.fromCharCode(b);
            return [img.src, btoa(s)];
        }""",
        selector,
    )
    return src, base64.b64decode(b64)
