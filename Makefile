# The README's two commands, `make run` and `make test`, and their helpers.
# Both start from nothing: they create .venv and install the project into it.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BOOK   := _build/book
HTML   := $(BOOK)/_build/html
# Tools installed in the venv come first on PATH (the book's kernel, nbdev, pytest).
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help run test install pytest nbtest export-check book clean

help:
	@echo "make run    build the book (training and evaluation join as they land)"
	@echo "make test   pytest, notebook tests, export check and the book build"

## Install: a fresh venv with the package (editable) and the dev extras.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(STAMP)

## The main job.
run: book
	@echo
	@echo "The book:    $(abspath $(HTML))/index.html"

## The test command: everything CI checks.
test: install export-check pytest nbtest book
	@echo "make test: all checks passed"

pytest: install
	$(BIN)/python -m pytest -q

# Chapter tests: every notebook in nbs/ runs top to bottom.
nbtest: install
	$(BIN)/nbdev-test --n-workers 2

# meru_nb/ must be exactly what nbdev exports from nbs/.
export-check: install
	@tmp=$$(mktemp -d); cp -r meru_nb "$$tmp/before"; \
	$(BIN)/nbdev-export; \
	if ! diff -r -x __pycache__ "$$tmp/before" meru_nb; then \
	  echo "meru_nb/ differs from what nbdev-export makes of nbs/: run nbdev-export and commit"; \
	  rm -rf "$$tmp"; exit 1; fi; \
	rm -rf "$$tmp"; echo "export-check: meru_nb/ matches nbs/"

# Jupyter Book 1: stage the notebooks without nbdev's directives, execute, fail on any warning.
book: install
	rm -rf $(BOOK)
	$(BIN)/python tools/stage_book.py $(BOOK)
	$(BIN)/jupyter-book build $(BOOK) --warningiserror --keep-going --quiet
	@echo "book built: $(abspath $(HTML))/index.html"

clean:
	rm -rf _build .pytest_cache .hypothesis
