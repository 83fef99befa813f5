# The two set-up commands of the README. Both create or reuse .venv (scripts/bootstrap.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
# Extra arguments for `make lab`, e.g. LAB_ARGS="--no-browser --port=8899".
LAB_ARGS ?=
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test lint browser

setup:
	@bash scripts/bootstrap.sh

## Install everything and open JupyterLab on the tour notebook.
lab: setup
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) $(LAB_ARGS) notebooks/00_tour.ipynb

## Install everything and run the whole test suite (lint, unit, widget, notebook, browser).
test: setup browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# $(call need,PACKAGE,TEST,WHY): apt-get install PACKAGE when TEST fails and we are root.
define need
	@$(2) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q $(1) >/dev/null || { apt-get update -q && apt-get install -y -q $(1); }; \
	  else echo "$(3): sudo apt-get install -y $(1)"; exit 1; fi; }
endef

## The real-browser tests drive Debian's chromium, and the VS Code renderer test fetches its
## bundle with npm; install what is missing if we can.
browser:
	$(call need,chromium,test -x /usr/bin/chromium,Real-browser tests need /usr/bin/chromium)
	$(call need,npm,command -v npm >/dev/null,The VS Code renderer test needs npm)

lint:
	$(VENV)/bin/ruff check .
