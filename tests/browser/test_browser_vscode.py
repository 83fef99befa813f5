"""Every widget through VS Code's widget renderer (issue 17).

VS Code cannot be installed here (its marketplace is unreachable), so this runs the part of it
that decides whether a widget renders: its Jupyter extension's widget managers, the npm
packages ``@vscode/jupyter-ipywidgets8`` and ``-ipywidgets7`` (fetched by
``scripts/vscode_renderer.sh``), in headless Chromium. A small host page
(``tests/helpers/vscode_host/``) stands in for the notebook webview:
it connects to a real kernel of a local Jupyter server (from another origin, as the webview
is), registers anywidget's front end in requirejs from the kernel environment's nbextensions as
VS Code does, and shows each widget output the way VS Code's renderer does (the model, a view in
the output's element, ``display_view``). Checked: the seven explorers render with no widget
error, each root visible with a non-empty size, and the kernel round trip (SaliencyExplorer's
next button brings a new image; BoxExplorer's anywidget draws its boxes; BokehJS draws the
class-balance chart). VS Code loads one of two bundles by the kernel's ipywidgets: both run,
8 with this environment's kernel, 7 with the kernel of the environment with Colab's pins
(ipywidgets 7.7.1, anywidget 0.9; ``scripts/colab_env.sh``). Not covered: VS Code's own
webview, theme and extension host."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers.labserver import (
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO,
    SERVER_FLAGS,
    colab_env,
    free_port,
    require_chromium,
    running,
    wait_for_http,
    widget_errors,
)
from helpers.widget_cells import SETUP, WIDGETS, check_every_widget

HOST = Path(__file__).resolve().parents[1] / "helpers" / "vscode_host"


def renderer_assets() -> Path:
    """Build or reuse VS Code's renderer bundle (``scripts/vscode_renderer.sh``); a failed
    build fails the test with the script's output, it never skips."""
    target = REPO / ".cache" / "vscode-renderer"
    done = subprocess.run(["bash", str(REPO / "scripts" / "vscode_renderer.sh"), str(target)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode:
        pytest.fail(f"scripts/vscode_renderer.sh failed (exit {done.returncode}):\n"
                    f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return target


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the page's requests are not the test's output
        pass


def serve(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``directory`` over HTTP on a free port, in a thread; returns the server and URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def kernel_environment(major: int, tmp_path: Path) -> tuple[Path, str, dict[str, str]]:
    """The kernel's environment for VS Code's ipywidgets ``major`` bundle, the kernel name and
    the server's environment variables: this venv's ``python3`` for 8; for 7 the Colab-pins
    environment's python, as a kernelspec in a private Jupyter path."""
    if major == 8:
        return Path(sys.prefix), "python3", dict(os.environ)
    env = colab_env()
    spec = tmp_path / "jupyter-path" / "kernels" / "colab-pins"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(env / "bin" / "python"), "-m", "ipykernel_launcher", "-f",
                 "{connection_file}"],
        "display_name": "Colab pins", "language": "python"}))
    return env, "colab-pins", {**os.environ, "JUPYTER_PATH": str(tmp_path / "jupyter-path")}


@pytest.mark.browser
@pytest.mark.parametrize("major", [8, 7], ids=["ipywidgets8", "ipywidgets7"])
def test_every_widget_renders_through_vscodes_widget_manager(major: int, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    require_chromium()
    prefix, kernel_name, server_env = kernel_environment(major, tmp_path)
    page_dir = tmp_path / "page"
    shutil.copytree(renderer_assets(), page_dir)
    for item in HOST.iterdir():
        shutil.copy(item, page_dir / item.name)
    # VS Code finds a widget's front end in the kernel environment's nbextensions directory.
    shutil.copytree(prefix / "share" / "jupyter" / "nbextensions", page_dir / "nbextensions")
    root = tmp_path / "root"
    root.mkdir()
    port = free_port()
    jupyter = Path(sys.executable).parent / "jupyter"
    command = [str(jupyter), "server", "--allow-root", *SERVER_FLAGS, f"--port={port}",
               f"--ServerApp.root_dir={root}", f"--ServerApp.runtime_dir={tmp_path / 'rt'}",
               "--ServerApp.allow_origin=*"]
    kernel_url = f"http://127.0.0.1:{port}"
    shots = Path(os.environ.get("VISLOUPE_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    static, page_url = serve(page_dir)
    errors: list[str] = []
    try:
        with running(command, tmp_path, tmp_path / "server.log", env=server_env) as server:
            wait_for_http(f"{kernel_url}/api/status", timeout=120, proc=server)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1200, "height": 900})
                    page.on("console", lambda m: errors.append(m.text)
                            if m.type == "error" else None)
                    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
                    page.goto(f"{page_url}/index.html?ipywidgets={major}")
                    page.wait_for_function("() => window.vscodeHost && vscodeHost.ready",
                                           timeout=30_000)
                    page.evaluate("([url, name]) => vscodeHost.start(url, name)",
                                  [kernel_url, kernel_name])
                    version = page.evaluate(
                        "() => vscodeHost.run('import ipywidgets; print(ipywidgets.__version__)')"
                        ".then(() => document.querySelector('.cell:last-child pre').textContent)")
                    assert version.startswith(f"{major}."), version
                    for code in (SETUP, *WIDGETS.values()):
                        status = page.evaluate("(code) => vscodeHost.run(code)", code)
                        failures = page.evaluate("() => vscodeHost.failures")
                        assert status == "ok" and not failures, (code, status, failures)
                    check_every_widget(page, ".widget-output", shots, f"vscode{major}")
                    assert page.locator(".visloupe-error").count() == 0
                finally:
                    browser.close()
    finally:
        static.shutdown()
    assert widget_errors(errors) == [], widget_errors(errors)

