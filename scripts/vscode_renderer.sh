#!/usr/bin/env bash
# VS Code's widget renderers, for tests/browser/test_browser_vscode.py (issue 17).
#
# VS Code's Jupyter extension renders widget outputs in its notebook webview with the npm package
# @vscode/jupyter-ipywidgets8 (its WidgetManager, a JupyterLab widget manager that loads
# third-party modules such as anywidget through requirejs). VS Code itself cannot be installed
# here (its marketplace is unreachable), but that package, requirejs and @jupyterlab/services
# are on npm. This script puts, in TARGET (default .cache/vscode-renderer):
#   ipywidgets8.js, ipywidgets7.js  VS Code's widget manager bundles, as published (VS Code
#                  loads the one that matches the kernel's ipywidgets)
#   require.js     requirejs, which that bundle registers its modules with
#   labvariables.css, materialcolors.css  the JupyterLab style variables that VS Code's
#                  renderer imports from @jupyter-widgets/controls beside the bundle
#   services.js    @jupyterlab/services' KernelManager and ServerConnection as one browser
#                  script (global `jlservices`), bundled with esbuild: the page's kernel
#                  connection, standing in for the extension's proxy kernel
# A stamp naming the versions makes a second run a no-op.
set -euo pipefail
TARGET="${1:-.cache/vscode-renderer}"
IPYWIDGETS8="@vscode/jupyter-ipywidgets8@1.0.9"
IPYWIDGETS7="@vscode/jupyter-ipywidgets7@2.0.4"
REQUIREJS="requirejs@2.3.8"
SERVICES="@jupyterlab/services@7.6.6"
ESBUILD="esbuild@0.28.2"
CONTROLS="@jupyter-widgets/controls@5.0.12"
STAMP="$IPYWIDGETS8 $IPYWIDGETS7 $REQUIREJS $SERVICES $ESBUILD $CONTROLS"

if [ -f "$TARGET/stamp" ] && [ "$(cat "$TARGET/stamp")" = "$STAMP" ]; then
  echo "[vscode-renderer] reusing $TARGET ($STAMP)"
  exit 0
fi
command -v npm >/dev/null || { echo "npm is needed: sudo apt-get install -y nodejs npm"; exit 1; }
mkdir -p "$TARGET"
TARGET="$(cd "$TARGET" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
echo '{"name": "visloupe-vscode-renderer", "private": true}' > package.json
echo "[vscode-renderer] npm install $SERVICES $ESBUILD"
npm install --no-audit --no-fund --silent "$SERVICES" "$ESBUILD"
# The two bundles are used as published: fetched alone, without their build-time dependencies.
npm pack --silent "$IPYWIDGETS8" "$IPYWIDGETS7" "$REQUIREJS" "$CONTROLS" >/dev/null
for major in 8 7; do
  tar xzf vscode-jupyter-ipywidgets$major-*.tgz -O package/dist/ipywidgets.js \
    > "$TARGET/ipywidgets$major.js"
done
tar xzf requirejs-*.tgz -O package/require.js > "$TARGET/require.js"
for css in labvariables materialcolors; do
  tar xzf jupyter-widgets-controls-*.tgz -O "package/css/$css.css" > "$TARGET/$css.css"
done
echo 'export { KernelManager, ServerConnection } from "@jupyterlab/services";' > entry.js
node_modules/.bin/esbuild entry.js --bundle --format=iife --global-name=jlservices \
  --platform=browser --define:process.env.NODE_ENV='"production"' --log-level=warning \
  --outfile="$TARGET/services.js"
echo "$STAMP" > "$TARGET/stamp"
echo "[vscode-renderer] ready in $TARGET"
