#!/usr/bin/env bash
# Create or reuse a virtual environment with Google Colab's widget stack and install visloupe
# into it, so the classic-Notebook tests (tests/browser/test_browser_classic.py,
# tests/notebooks/test_notebooks_colab_pins.py) can check that visloupe works there.
#
#   scripts/colab_env.sh [VENV]        VENV defaults to .cache/colab-env (relative to the repo)
#
# The pins are Colab's (docs/research: googlecolab/backend-info pip-freeze): ipywidgets 7.7.1,
# its classic-Notebook front end widgetsnbextension 3.6.10, anywidget 0.9.21, ipykernel 6.17.1,
# and Notebook 6.5.7 as the server. visloupe goes in as a regular (non-editable) install without
# its dev extra, from a copy of the sources, so its own requirements must accept these pins: if
# visloupe ever asks for ipywidgets>=8, pip fails here instead of upgrading.
#
# Idempotent: the pinned stack is installed once (a stamp records the pins and visloupe's
# metadata), visloupe is reinstalled (no dependencies) only when its sources changed.
# Knobs: PYTHON (default python3), VISLOUPE_TORCH (default torch==2.13.0: the CPU wheel; a bare
# `torch` would pull GBs of CUDA wheels), VISLOUPE_EXTRAS (comma-separated extras of visloupe,
# e.g. "imagenet,scale" for the tutorial notebooks; extras installed earlier are kept).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV_ARG=${1:-.cache/colab-env}
case "$VENV_ARG" in
    /*) VENV="$VENV_ARG" ;;
    *) VENV="$ROOT/$VENV_ARG" ;;
esac
PYTHON=${PYTHON:-python3}
TORCH=${VISLOUPE_TORCH:-torch==2.13.0}
PINS=(ipywidgets==7.7.1 widgetsnbextension==3.6.10 anywidget==0.9.21 ipykernel==6.17.1
      notebook==6.5.7)
export OMP_WAIT_POLICY=PASSIVE PIP_DISABLE_PIP_VERSION_CHECK=1 PYDEVD_DISABLE_FILE_VALIDATION=1

mkdir -p "$(dirname "$VENV")"
# One builder at a time (two tests may ask for the same environment at once).
exec 9>"$VENV.lock"
if command -v flock >/dev/null; then flock 9; fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[colab-env] creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# --no-compile: byte-compiling every file of torch & co. at install costs more than compiling
# the modules a kernel imports on first use.
PIP=("$PY" -m pip install --quiet --progress-bar off --no-compile)

# The extras asked for now plus those installed before.
extras_file="$VENV/.visloupe-extras"
extras=$(printf '%s\n' "$(cat "$extras_file" 2>/dev/null || true)" "${VISLOUPE_EXTRAS:-}" \
         | tr ',' '\n' | sed 's/[[:space:]]//g' | grep -v '^$' | sort -u | paste -sd, - || true)
spec_suffix=${extras:+[$extras]}

# visloupe is built from a copy of what its sdist needs, so nothing is written into the working
# tree (no build/ or egg-info next to someone's editable install).
src=""
copy_sources() {
    src=$(mktemp -d)
    trap 'rm -rf "$src"' EXIT
    (cd "$ROOT" && tar -c --exclude=__pycache__ --exclude='*.pyc' \
         pyproject.toml setup.py MANIFEST.in README.md LICENSE Makefile scripts core widgets) \
        | tar -x -C "$src"
}

hash_of() { (cd "$ROOT" && find "$@" -type f ! -path '*__pycache__*' ! -name '*.pyc' -print0 \
             | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16); }
stack_want="$(printf '%s\n' "$TORCH" "${PINS[@]}" "$extras" | sha256sum | cut -c1-16)-$(hash_of pyproject.toml setup.py)"
src_want=$(hash_of pyproject.toml setup.py MANIFEST.in README.md core widgets)
stack_stamp="$VENV/.colab-stack"
src_stamp="$VENV/.visloupe-src"

if [ "$(cat "$stack_stamp" 2>/dev/null)" != "$stack_want" ]; then
    echo "[colab-env] installing $TORCH, ${PINS[*]} and visloupe${spec_suffix}"
    # One resolver run for everything: faster, and a visloupe requirement that clashes with a
    # pin is an error, not a silent upgrade.
    copy_sources
    "${PIP[@]}" "$TORCH" "${PINS[@]}" "$src$spec_suffix"
    echo "$extras" > "$extras_file"
    echo "$stack_want" > "$stack_stamp"
    echo "$src_want" > "$src_stamp"
elif [ "$(cat "$src_stamp" 2>/dev/null)" != "$src_want" ]; then
    echo "[colab-env] visloupe's sources changed: reinstalling it (no dependencies)"
    copy_sources
    "${PIP[@]}" --no-deps --force-reinstall "$src"
    echo "$src_want" > "$src_stamp"
fi

# The kernel the notebook server starts must be this environment's python, by absolute path
# (the wheel's kernelspec says just "python"), and must not be shadowed by another env's.
if ! grep -q "\"$VENV/bin/python\"" "$VENV/share/jupyter/kernels/python3/kernel.json" 2>/dev/null
then
    "$PY" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (Colab pins)" \
        >/dev/null
fi
# widgetsnbextension and anywidget enable their nbextensions on install (notebook.d); check.
for f in etc/jupyter/nbconfig/notebook.d/widgetsnbextension.json \
         share/jupyter/nbextensions/jupyter-js-widgets/extension.js \
         etc/jupyter/nbconfig/notebook.d/anywidget.json; do
    [ -e "$VENV/$f" ] || { echo "[colab-env] missing $VENV/$f" >&2; exit 1; }
done

# --no-compile above left no bytecode, and a PYTHONDONTWRITEBYTECODE environment (ours has it)
# never writes any: every kernel would then compile torch & co. again (17 s against 6 s per
# start). Import once what a kernel imports, with bytecode writing on, so only that is compiled.
env -u PYTHONDONTWRITEBYTECODE "$PY" - <<'PY'
import importlib

for name in ("ipykernel.kernelapp", "torch", "captum.attr", "pandas", "matplotlib.pyplot",
             "bokeh.plotting", "skimage.metrics", "sklearn.decomposition", "datasets", "ray",
             "visloupe.core", "visloupe.widgets"):
    try:
        importlib.import_module(name)
    except ImportError:  # an extra this environment was built without
        pass
PY

"$PY" - <<'PY'
import sys
from importlib.metadata import version

names = ["torch", "ipywidgets", "widgetsnbextension", "anywidget", "ipykernel", "notebook",
         "jupyter_client", "traitlets", "numpy", "bokeh", "visloupe"]
print(f"[colab-env] {sys.executable} (Python {sys.version.split()[0]})")
print("[colab-env] " + " ".join(f"{n}=={version(n)}" for n in names))
import ipywidgets

assert ipywidgets.__version__ == "7.7.1", ipywidgets.__version__
PY
