"""The README's set-up works: the lab command serves the tour, and a regular install imports."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers.labserver import SERVER_FLAGS, free_port, running, wait_for_http


def test_readme_lab_command_serves_the_tour(repo_root: Path, tmp_path: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    port = free_port()
    args = " ".join((*SERVER_FLAGS, f"--port={port}", f"--ServerApp.runtime_dir={tmp_path}"))
    with running(["make", "lab", f"LAB_ARGS={args}"], repo_root, tmp_path / "lab.log") as proc:
        base = f"http://127.0.0.1:{port}"
        # Given a notebook file, the server roots itself in that file's folder (notebooks/).
        page = wait_for_http(f"{base}/lab/tree/00_tour.ipynb", timeout=180, proc=proc)
        assert b"JupyterLab" in page or b"jupyter-config-data" in page
        model = json.loads(wait_for_http(f"{base}/api/contents/00_tour.ipynb", proc=proc))
        assert model["type"] == "notebook"
        assert any("colab-badge" in "".join(c["source"]) for c in model["content"]["cells"])
    assert proc.poll() is not None, "the lab server was not stopped"


def test_regular_install_imports_namespaced_packages(repo_root: Path, tmp_path: Path) -> None:
    """A built wheel (non-editable) holds visloupe/core and visloupe/widgets and nothing bare."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(repo_root)],
        check=True,
    )
    wheel = next((tmp_path / "dist").glob("visloupe-*.whl"))
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"visloupe"}, tops
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)],
        check=True,
    )
    probe = (
        "import visloupe.core, visloupe.widgets, visloupe.core.data, visloupe.core.models;"
        "print(visloupe.core.__file__); print(visloupe.widgets.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, check=True, capture_output=True, text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    ).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in out), out


def test_sdist_and_wheel_install_and_every_widget_works(repo_root: Path, tmp_path: Path) -> None:
    """Issue 17's release check: ``python -m build`` makes an sdist and, from it, a wheel; the
    wheel installed on its own (not the source tree) passes ``scripts/smoke_install.py``: every
    widget builds and renders with the shipped weights and data, and the command line answers."""
    import os
    import tarfile

    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist),
                    str(repo_root)], check=True, capture_output=True)
    sdist, wheel = next(dist.glob("visloupe-*.tar.gz")), next(dist.glob("visloupe-*.whl"))
    names = tarfile.open(sdist).getnames()
    for needed in ("core/models/weights/shapes-cnn/final.safetensors",
                   "core/data/taskonomy/affinities_first_order.csv",
                   "core/data/taskonomy/LICENSE-taskonomy-code-MIT.txt",
                   "scripts/smoke_install.py", "README.md"):
        assert any(n.endswith(needed) for n in names), f"sdist lacks {needed}"
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True)
    entry = (next(site.glob("visloupe-*.dist-info")) / "entry_points.txt").read_text()
    assert "visloupe = visloupe.core.jobs.cli:main" in entry
    env = {**os.environ, "PYTHONPATH": str(site), "VISLOUPE_CACHE": str(tmp_path / "cache"),
           "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, str(repo_root / "scripts" / "smoke_install.py")],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    first = out.stdout.splitlines()[0]
    assert first.startswith("visloupe.core from ") and \
        Path(first.split(" from ")[1]).is_relative_to(site), first
    for widget in ("SaliencyExplorer", "SplitIGExplorer", "COSEExplorer", "SanityCheckExplorer",
                   "PaddingInspector", "DatasetExplorer", "BoxExplorer"):
        assert f"{widget}: built and rendered" in out.stdout
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_binder_installs_what_the_notebooks_import(repo_root: Path) -> None:
    """repo2docker runs ``pip install -r binder/requirements.txt`` then ``binder/postBuild``: the
    extras named there must exist and cover every optional package a notebook imports, torch
    must be the CPU build, and the runtime must satisfy ``requires-python``."""
    import re

    import tomllib

    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    lines = [line.strip() for line in (repo_root / "binder" / "requirements.txt").read_text()
             .splitlines() if line.strip() and not line.startswith("#")]
    editable = [line for line in lines if line.startswith("-e .")]
    assert len(editable) == 1, lines
    named = re.search(r"\[(.*)\]", editable[0]).group(1).split(",")
    assert set(named) <= set(extras), (named, sorted(extras))
    installed = " ".join(" ".join(extras[name]) for name in named)
    assert any(line.startswith("torch==") and "+cpu" in line for line in lines), lines
    needs = {r"import ray\b": "ray[data]",  # notebook 08's jobs on Ray
             r"pretrained\(\\?\"efficientnet-lite": "efficientnet-lite-pytorch"}
    for path in sorted((repo_root / "notebooks").glob("*.ipynb")):
        text = path.read_text()
        for pattern, requirement in needs.items():
            if re.search(pattern, text):
                assert requirement in installed, f"{path.name} needs {requirement}"
    assert "jupyterlab" in installed  # the Binder link opens JupyterLab
    runtime = (repo_root / "binder" / "runtime.txt").read_text().strip()
    major, minor = (int(v) for v in runtime.removeprefix("python-").split("."))
    low = tuple(int(v) for v in project["requires-python"].removeprefix(">=").split("."))
    assert (major, minor) >= low, (runtime, project["requires-python"])
    post = (repo_root / "binder" / "postBuild").read_text()
    assert "smoke_install.py" in post and (repo_root / "scripts" / "smoke_install.py").is_file()

