#!/usr/bin/env bash
# Run the commands repo2docker (Binder) runs for this repository, in a fresh virtual environment
# built from a copy of the committed files: `pip install --no-cache-dir -r
# binder/requirements.txt` from the repository root, then `binder/postBuild` (the smoke test of
# every widget). A broken requirement or a failing smoke test fails here as it would fail the
# Binder image build. About 3 minutes on 2 cores; not part of `make test`.
#
#   scripts/binder_check.sh [WORKDIR]      WORKDIR defaults to a new temporary directory
#
# Where download.pytorch.org is unreachable (our CI machines), PIP_RETRIES=0 lets pip give up on
# that extra index at once instead of backing off for every package; the CPU torch wheel then
# comes from the default index.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK=${1:-$(mktemp -d)}
PYTHON=${PYTHON:-python3}
mkdir -p "$WORK/repo"
(cd "$ROOT" && git archive HEAD) | tar -x -C "$WORK/repo"
"$PYTHON" -m venv "$WORK/env"
export PATH="$WORK/env/bin:$PATH" VISLOUPE_CACHE="$WORK/cache" PIP_RETRIES=${PIP_RETRIES:-0}
cd "$WORK/repo"
start=$(date +%s)
pip install --quiet --no-cache-dir -r binder/requirements.txt
echo "[binder] requirements installed in $(( $(date +%s) - start )) s"
bash binder/postBuild >"$WORK/postBuild.log"
tail -n 1 "$WORK/postBuild.log"
python - <<'PY'
from importlib.metadata import version

import torch

print("[binder] torch", torch.__version__, "| visloupe", version("visloupe"),
      "| jupyterlab", version("jupyterlab"), "| ray", version("ray"),
      "| efficientnet-lite-pytorch", version("efficientnet-lite-pytorch"))
assert "+cpu" in torch.__version__, f"Binder should get the CPU build of torch, got {torch.__version__}"
PY
echo "[binder] OK in $(( $(date +%s) - start )) s ($WORK)"
