#!/usr/bin/env bash
# Create or reuse a local virtual environment and install visloupe into it.
#
# The CPU build of torch goes in FIRST, before anything that depends on torch: a bare `torch`
# requirement with no torch installed pulls several GB of CUDA wheels. Which torch to install:
#   VISLOUPE_TORCH="torch==2.13.0"   install exactly this (what .ci/run uses on our machines,
#                                    where only the package registry is reachable)
#   otherwise                        the PyTorch CPU wheel index, if it answers within 5 s,
#                                    else `torch==2.13.0` from the configured package index.
# Other knobs: VENV (default .venv), PYTHON (default python3), EXTRAS (default dev).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-dev}
TORCH_INDEX=${VISLOUPE_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
FALLBACK_TORCH="torch==2.13.0"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
PIP=("$VENV/bin/python" -m pip install --quiet --progress-bar off)

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    if [ -n "${VISLOUPE_TORCH:-}" ]; then
        echo "[setup] installing ${VISLOUPE_TORCH} (from VISLOUPE_TORCH)"
        "${PIP[@]}" "${VISLOUPE_TORCH}"
    elif "$VENV/bin/python" - "$TORCH_INDEX" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=5)
except Exception:
    sys.exit(1)
PY
    then
        echo "[setup] installing the CPU build of torch from $TORCH_INDEX"
        "${PIP[@]}" --index-url "$TORCH_INDEX" torch
    else
        echo "[setup] $TORCH_INDEX unreachable; installing $FALLBACK_TORCH from the package index"
        "${PIP[@]}" "$FALLBACK_TORCH"
    fi
    "$VENV/bin/python" -c "import torch; print('[setup] torch', torch.__version__, 'CUDA build' if torch.version.cuda else 'CPU build')"
fi

# Reinstall the package only when its metadata or the extras changed.
stamp="$VENV/.visloupe-setup"
want="$(cat pyproject.toml setup.py | sha256sum | cut -c1-16)-$EXTRAS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[setup] installing visloupe[$EXTRAS] (editable)"
    "${PIP[@]}" -e ".[$EXTRAS]"
    echo "$want" > "$stamp"
fi
