# nasedu: the two set-up commands are `make book` and `make test` (see README.md).
# Both create the virtual environment and install what they need when it is missing.
#
#   make book    build the executed book into _build/html (every chapter at the smoke budget)
#   make test    the whole test suite: unit tests, every chapter under papermill, the book build
#   make labs    student and instructor lab notebooks of every chapter into labs/
#   make book-student  the book without solutions into _build/student-html (same cache)
#   make venv    only create/update the environment ($(VENV))
#   make lint    ruff
#   make clean   remove build outputs and caches (not the environment; `make distclean` does)
#
# Variables: VENV (default .venv), PYTHON (the interpreter that creates it, >= 3.10),
# PYTEST_ARGS (extra pytest arguments, e.g. PYTEST_ARGS="-m 'not slow'").

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=
BIN := $(VENV)/bin
# The install is redone when pyproject.toml's content changes (the stamp's name is its hash),
# not on every `make`.
STAMP := $(VENV)/.nasedu-installed-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: help venv graphviz book test lint clean distclean labs book-student

help:
	@sed -n '1,/^$$/p' Makefile | sed 's/^# \{0,1\}//'

venv: $(STAMP) graphviz

$(STAMP):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { \
	  echo "error: $(PYTHON) is $$($(PYTHON) --version 2>&1); nasedu needs Python >= 3.10." \
	       "Pass another interpreter: make PYTHON=python3.11 ..." >&2; exit 1; }
	@if [ ! -x "$(BIN)/python" ]; then \
	  if ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      echo "installing python3-venv with apt-get"; \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
	    else \
	      echo "error: $(PYTHON) cannot create virtual environments;" \
	           "install python3-venv (sudo apt-get install python3-venv)" >&2; exit 1; \
	    fi; \
	  fi; \
	  echo "creating $(VENV) with $$($(PYTHON) --version)"; \
	  $(PYTHON) -m venv "$(VENV)"; \
	fi
	$(BIN)/python -m pip install torch torchvision
	$(BIN)/python -m pip install -e ".[book,test]"
	rm -f $(VENV)/.nasedu-installed-*
	touch $@

# Graphviz's `dot` draws the cells; without it the figures fall back to matplotlib.
graphviz:
	@if command -v dot >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing graphviz (dot) with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz; \
	else \
	  echo "note: Graphviz's dot is missing and this is not root: cell drawings use the" \
	       "matplotlib fallback (install it with: sudo apt-get install graphviz)"; \
	fi

book: venv
	$(BIN)/jupyter-book build . --all -W --keep-going
	@echo
	@echo "The book is built: open file://$(CURDIR)/_build/html/index.html"

# The labs need no execution: solution cells are removed by tag (nasedu/labs.py).
labs: venv
	$(BIN)/python -m nasedu.labs labs --out labs

# The student edition reuses the execution cache that `make book` (or `make test`) filled.
book-student: venv
	$(BIN)/python -m nasedu.labs student-book --out _build/student-html

# pytest exits 5 when it collects no test (e.g. a -m filter that matches none): not an error.
# One intra-op thread: the tests' tensors are tiny (CPU time follows kernel launches), and
# tests that run two searches side by side would otherwise oversubscribe the cores.
test: venv
	@rc=0; OMP_NUM_THREADS=1 $(BIN)/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; \
	exit $$rc

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf _build .jupyter_cache .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
