"""Start and stop a local JupyterLab for the set-up and real-browser tests (DESIGN.md §4).

``lab_notebook`` is the real-browser tests' shared scaffolding: a generated notebook, a private
JupyterLab, headless Chromium through Playwright, all cells run, errors collected."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

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
def running(
    command: Sequence[str], cwd: Path, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """Run ``command`` in its own process group (with ``env``, else this process's environment)
    and kill the whole group on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(command), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env=env,
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


def require_chromium() -> None:
    """Fail (never skip) a real-browser test when Debian's chromium is missing."""
    if not CHROMIUM.exists():
        pytest.fail(
            "real-browser tests need Debian's chromium at /usr/bin/chromium: run "
            "`sudo apt-get install -y chromium` (or `make browser`); never `playwright install`"
        )


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


def wait_for_blob_image(page, selector: str, timeout_ms: float = 30_000) -> None:
    """Wait until the <img> at ``selector`` shows a loaded ``blob:`` URL (a PNG from the kernel)."""
    page.wait_for_function(
        f"() => {{ const i = document.querySelector({selector!r});"
        " return i && i.src.startsWith('blob:') && i.naturalWidth > 0; }",
        timeout=timeout_ms,
    )


def press_slider(page, slider, presses: int = 1, key: str = "ArrowRight") -> None:
    """Focus and click the handle of the ipywidgets ``slider`` (a locator), then press ``key``
    ``presses`` times: the keyboard moves it by exact steps, unlike a mouse drag."""
    handle = slider.locator(".noUi-handle, .slider-handle, [role='slider']").first
    handle.focus()
    handle.click()
    for _ in range(presses):
        page.keyboard.press(key)


def wait_for_new_src(page, selector: str, old: str, timeout_ms: float = 30_000) -> None:
    """Wait until the <img> at ``selector`` has a ``src`` other than ``old``."""
    page.wait_for_function(
        f"(old) => document.querySelector({selector!r}).src !== old", arg=old,
        timeout=timeout_ms,
    )


def wait_for_text(page, selector: str, text: str, timeout_ms: float = 30_000) -> None:
    """Wait until the element at ``selector`` shows ``text`` (the kernel's answer arrived)."""
    page.wait_for_function(
        f"(t) => document.querySelector({selector!r}).innerText.includes(t)", arg=text,
        timeout=timeout_ms,
    )


WIDGET_WORDS = ("widget", "visloupe", "jupyter-widgets", "ipywidgets", "anywidget", "esm",
                "model class", "comm", "bokeh")


def widget_errors(errors: Sequence[str]) -> list[str]:
    """The browser errors that concern a widget (words in ``WIDGET_WORDS``); unrelated noise from
    JupyterLab itself (a missing favicon, a settings warning) is left out."""
    return [e for e in errors if any(word in e.lower() for word in WIDGET_WORDS)]


def error_outputs(notebook) -> list[dict]:
    """The error outputs of an executed notebook's code cells, in order."""
    return [output for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", []) if output.get("output_type") == "error"]


def write_notebook(path: Path, code: str | Sequence[str]) -> Path:
    """Write a notebook of one code cell per string in ``code``, bound to the python3 kernel."""
    import nbformat

    cells = [code] if isinstance(code, str) else list(code)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


#: ``frontend -> (jupyter subcommand, URL path of a notebook, settings class)``.
FRONTENDS = {"lab": ("lab", "lab/tree", "LabApp"),
             "notebook": ("notebook", "notebooks", "JupyterNotebookApp"),
             # Classic Notebook 6 (ipywidgets 7's front end, what Colab's pins mean): it is not
             # in this venv, so it runs from another environment (``env=`` of lab_notebook).
             "classic": ("notebook", "notebooks", "NotebookApp")}


def classic_server(env_dir: Path, tmp_path: Path, root: Path, port: int
                   ) -> tuple[list[str], dict[str, str]]:
    """The command and the environment variables that start classic Notebook 6 from the
    environment ``env_dir`` (its ``bin/jupyter-notebook``, its python as the kernel), seeing
    only that environment's kernelspecs, nbextensions and settings: the user's and this venv's
    Jupyter and IPython directories are replaced by private ones under ``tmp_path``, so a
    ``python3`` kernelspec of another environment is never picked (an ipywidgets 8 kernel
    half works there: its ``HTMLStyleModel`` and other 8-only models are missing from
    widgetsnbextension 3, "Could not add child view to box")."""
    env_dir = Path(env_dir).resolve()
    server = env_dir / "bin" / "jupyter-notebook"
    if not server.exists():
        pytest.fail(f"no classic Notebook server at {server}: build the environment with "
                    f"`bash scripts/colab_env.sh {env_dir}`")
    env = {k: v for k, v in os.environ.items()
           if k not in {"JUPYTER_PATH", "PYTHONPATH", "PYTHONHOME", "JUPYTER_CONFIG_PATH"}}
    env.update(
        PATH=f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(env_dir),
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), IPYTHONDIR=str(tmp_path / "ipython"),
        JUPYTER_PREFER_ENV_PATH="1", PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    command = [
        str(server), "--allow-root", "--no-browser", f"--port={port}",
        "--NotebookApp.token=", "--NotebookApp.password=", "--NotebookApp.ip=127.0.0.1",
        "--NotebookApp.disable_check_xsrf=True", "--NotebookApp.show_banner=False",
        f"--NotebookApp.notebook_dir={root}",
    ]
    return command, env


def _classic_wait_for_kernel(base: str, page, timeout: float = 90.0) -> None:
    """Classic Notebook: wait until the page's kernel is connected, the server reports it idle
    and the widget manager has loaded the kernel's widgets; a dialog (no such kernel, say)
    fails at once with its text."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dialog = page.locator(".modal-dialog")
        if dialog.count() and dialog.first.is_visible():
            raise RuntimeError(f"classic Notebook dialog: {dialog.first.inner_text()[:500]}")
        connected = page.evaluate(
            "() => !!(window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel"
            " && Jupyter.notebook.kernel.is_connected())")
        try:
            with urllib.request.urlopen(f"{base}/api/kernels", timeout=5) as response:
                kernels = json.loads(response.read())
        except OSError:
            kernels = []
        if connected and any(k.get("execution_state") == "idle" for k in kernels):
            break
        page.wait_for_timeout(250)
    else:
        raise TimeoutError(f"no idle kernel within {timeout:.0f} s")
    # ipywidgets 7's classic widget manager, once made for the kernel, fetches the kernel's
    # widgets (a control comm, else comm_info) and then re-renders every widget output. Cells
    # that run while that is under way lose their views (blank outputs). A second fetch, sent
    # after the manager's own, answers after it: once it is done, so is the manager's.
    left_ms = max(1.0, deadline - time.monotonic()) * 1000
    page.wait_for_function(
        "() => window.Jupyter && Jupyter.WidgetManager && Jupyter.WidgetManager._managers"
        " && Jupyter.WidgetManager._managers.length > 0", timeout=left_ms)
    page.evaluate(
        "async () => { const m = Jupyter.WidgetManager._managers[0];"
        " if (m._loadFromKernel) await m._loadFromKernel(); }")


@dataclass
class LabSession:
    """One notebook open in headless Chromium against a private JupyterLab, all cells run."""

    page: Page
    base: str
    errors: list[str]  # console errors and uncaught page errors, in order
    requests: list[str]  # every URL the page asked for
    log: Path  # JupyterLab's output
    shots: Path  # where screenshots go ($VISLOUPE_SCREENSHOTS, else the test's tmp_path)
    stem: str

    def screenshot(self, suffix: str = "", *, full_page: bool = True) -> Path:
        """Save a screenshot as ``<notebook stem><suffix>.png`` and return its path."""
        path = self.shots / f"{self.stem}{suffix}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def widget_errors(self) -> list[str]:
        return widget_errors(self.errors)


def _run_all(page, ready_selector: str, timeout_ms: float, classic: bool = False) -> None:
    """Run all cells until ``ready_selector`` appears: Run > Run All Cells (Lab, Notebook 7) or
    ``Jupyter.notebook.execute_all_cells`` (classic). A Run All sent while the kernel is still
    connecting is lost, so it is sent once more before giving up."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(2):
        if classic:
            page.evaluate("() => Jupyter.notebook.execute_all_cells()")
        else:
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel").filter(
                has_text=re.compile(r"^Run All Cells$")).first.click()
        try:
            page.wait_for_selector(ready_selector, timeout=timeout_ms)
            return
        except PlaywrightTimeout:
            if attempt:
                raise


@contextmanager
def lab_notebook(
    tmp_path: Path,
    code: str | Sequence[str],
    ready_selector: str,
    *,
    name: str = "test.ipynb",
    viewport: tuple[int, int] = (1400, 1000),
    ready_timeout: float = 90.0,
    frontend: str = "lab",
    env: Path | None = None,
) -> Iterator[LabSession]:
    """Write ``code`` (one cell per string) as notebook ``name``, start a private JupyterLab
    (``frontend="lab"``) or Notebook 7 (``"notebook"``) on a free port (its runtime, settings
    and workspaces under ``tmp_path``), open the notebook in headless Chromium, wait for an
    idle kernel, run all cells and wait up to ``ready_timeout`` seconds for
    ``ready_selector``. Yields the session; a failure inside the block saves a
    ``<stem>_failure.png`` screenshot; the browser and the server are always stopped.
    Notebook 7 is built from JupyterLab's components: the same menus, cells and kernel
    indicator, only its URL and application differ. ``frontend="classic"`` is classic
    Notebook 6 run from the environment ``env`` (see ``classic_server``; its cells are
    ``#notebook .cell`` and it is driven through ``Jupyter.notebook``)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    root = tmp_path / "root"
    root.mkdir()
    write_notebook(root / name, code)
    port = free_port()
    jupyter = Path(sys.executable).parent / "jupyter"
    if frontend not in FRONTENDS:
        raise ValueError(f"frontend: expected one of {list(FRONTENDS)}, got {frontend!r}")
    app, path, settings = FRONTENDS[frontend]
    classic = frontend == "classic"
    server_env = None
    if classic:
        if env is None:
            raise ValueError('frontend="classic" needs env=, the environment to run it from')
        command, server_env = classic_server(env, tmp_path, root, port)
    else:
        # answer Lab's "get notified about Jupyter news?" toast as a user would ("Never"), so
        # it does not cover the widgets in screenshots (the news feed is offline here anyway)
        user_settings = tmp_path / "settings"
        news = user_settings / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True, exist_ok=True)
        (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
        command = [
            str(jupyter), app, "--allow-root", *SERVER_FLAGS, f"--port={port}",
            f"--ServerApp.root_dir={root}", f"--ServerApp.runtime_dir={tmp_path / 'runtime'}",
            f"--{settings}.user_settings_dir={user_settings}",
            f"--{settings}.workspaces_dir={tmp_path / 'workspaces'}",
        ]
    base = f"http://127.0.0.1:{port}"
    shots = Path(os.environ.get("VISLOUPE_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "lab.log"
    with running(command, tmp_path, log, env=server_env) as server:
        wait_for_http(f"{base}/api/status", timeout=120, proc=server)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
                lab = LabSession(page, base, [], [], log, shots, Path(name).stem)
                page.on("console", lambda m: lab.errors.append(m.text)
                        if m.type == "error" else None)
                page.on("pageerror", lambda e: lab.errors.append(f"pageerror: {e}"))
                page.on("request", lambda r: lab.requests.append(r.url))
                try:
                    page.goto(f"{base}/{path}/{name}", wait_until="domcontentloaded")
                    if classic:
                        page.wait_for_selector("#notebook .cell", timeout=60_000)
                        _classic_wait_for_kernel(base, page)
                    else:
                        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
                        wait_for_kernel(base, page)
                    _run_all(page, ready_selector, ready_timeout * 1000, classic)
                    yield lab
                except Exception:
                    try:
                        print(f"screenshot of the failure: {lab.screenshot('_failure')}")
                    except Exception as error:  # noqa: BLE001 - keep the test's own error
                        print(f"no screenshot of the failure: {error}")
                    raise
            finally:
                browser.close()


REPO = Path(__file__).resolve().parents[2]


def colab_env(extras: str = "", timeout: float = 900.0) -> Path:
    """Create or reuse the environment with Colab's widget pins (``scripts/colab_env.sh``:
    ipywidgets 7.7.1, widgetsnbextension 3.6.10, anywidget 0.9.21, Notebook 6.5.7, visloupe
    installed from this checkout) and return its directory: ``$VISLOUPE_COLAB_ENV``, else
    ``.cache/colab-env``. ``extras`` (comma-separated, e.g. ``"imagenet,scale"``) are visloupe
    extras to add to it. A failed build fails the test with the script's output; it never
    skips."""
    target = Path(os.environ.get("VISLOUPE_COLAB_ENV", REPO / ".cache" / "colab-env"))
    script = REPO / "scripts" / "colab_env.sh"
    start = time.monotonic()
    try:
        done = subprocess.run(["bash", str(script), str(target)], cwd=REPO, capture_output=True,
                              text=True, timeout=timeout,
                              env={**os.environ, "VISLOUPE_EXTRAS": extras})
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"{script} {target} ran past {timeout:.0f} s:\n{error.stdout}\n{error.stderr}")
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-60:])
        pytest.fail(f"`bash {script} {target}` failed (exit {done.returncode}):\n{tail}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("[colab-env]")]
    print("\n".join(lines), f"\n[colab-env] ready in {time.monotonic() - start:.0f} s")
    return target.resolve()
