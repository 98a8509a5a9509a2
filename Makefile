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

.PHONY: help run run-book outputs emoji-data emoji study study-remedies study-steps study-binding study-capacity study-hycoclip study-finetune wheels wheels-here test install pytest nbtest export-check clean-check book book-fast browser clean

help:
	@echo "The two commands:"
	@echo "  make run             train MERU and CLIP on the built-in scenes (papermill), evaluate both, build the book with their results"
	@echo "  make test            everything CI checks: export-check, clean-check, pytest, nbtest, book, browser"
	@echo "Parts of make run and make test:"
	@echo "  make install         .venv with the package (editable) and the dev extras"
	@echo "  make run-book        the book with the results of make run (runs/); the other chapters with their committed outputs"
	@echo "  make pytest          the tests in tests/ (builds wheels-here first)"
	@echo "  make nbtest          every chapter run top to bottom (nbdev-test), outputs kept for the book"
	@echo "  make export-check    meru_nb/ is what nbdev-export makes of nbs/ (changes nothing)"
	@echo "  make clean-check     every notebook is as nbdev-clean leaves it (changes nothing)"
	@echo "  make book            the executed book (Jupyter Book), after nbtest; fails on any warning"
	@echo "  make outputs         after make book: its outputs into the chapters, to commit (nbs/outputs.json: the code that made them)"
	@echo "  make book-fast       the book for prose edits in seconds, nothing executed: each chapter with its committed outputs"
	@echo "  make browser         the built book in the machine's Chromium through Playwright, offline, with screenshots"
	@echo "  make clean           remove _build, .pytest_cache and .hypothesis"
	@echo "Data, studies and the GPU machine (each writes what its chapter reads):"
	@echo "  make emoji-data      the emoji pictures of chapter 06d (npm pack of three pinned packages, checksums checked) into data/emoji/"
	@echo "  make emoji           MERU and CLIP trained on two vendors' emoji, measured on a third's style (chapter 11e; after emoji-data)"
	@echo "  make study           MERU's entailment weight: 5 values x 3 seeds and the bag of tokens, at 1500 steps (chapter 11)"
	@echo "  make study-remedies  four remedies for MERU's stall at lambda = 0.2 against none, 3 seeds at 1500 steps (chapter 11)"
	@echo "  make study-steps     the studies' recipe: hard negatives for MERU and CLIP, CLIP, the bag of tokens as an ablation (chapter 11)"
	@echo "  make study-binding   make run's binding start: a caption mix at 0.3 or 0.6, from scratch or with the towers first, MERU and CLIP (chapter 11)"
	@echo "  make study-capacity  each tower alone learning which colour goes with which shape, then both together (chapter 10a)"
	@echo "  make study-hycoclip  HyCoCLIP, MERU and CLIP with the studies' recipe, measured on test scenes (chapter 11b)"
	@echo "  make study-finetune  MERU fine-tuned from make run's CLIP vs from scratch, 300 steps (chapter 11d; after make run)"
	@echo "  make wheels          wheels/ for a GPU machine without a package index: what it lacks, for Python 3.12 (chapter 14)"
	@echo "  make wheels-here     the same folder for this machine's Python, for tests/test_gpucheck.py"
	@echo "Each study's duration is measured in its JSON under nbs/results/ and stated in its chapter."

## Install: a fresh venv with the package (editable) and the dev extras.
## pip byte-compiles what it installs on one core; compileall does the same on every core, 24 s sooner
## on 2 cores (a few files of Python 2 syntax in the dependencies fail here as they fail silently in pip).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e '.[dev]'
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib > /dev/null || true
	touch $@

install: $(STAMP)

## The main job: train MERU and the CLIP baseline side by side (one core each) through the papermill
## run notebooks, evaluate both, then build the book, whose results chapter reads runs/.
RUNS  ?= runs
MODELS := meru clip
PM    := $(BIN)/papermill --no-progress-bar
export MERU_NB_RUNS := $(abspath $(RUNS))

run: install
	@mkdir -p $(foreach m,$(MODELS),$(RUNS)/$(m))
	@echo "training $(MODELS) on the built-in scenes (logs: $(RUNS)/*/log.jsonl)"
	pids=""; for m in $(MODELS); do \
	  OMP_NUM_THREADS=1 $(PM) nbs/20_train.ipynb $(RUNS)/$$m/train.ipynb -p preset cpu_$$m -p out_dir $(RUNS)/$$m -p overwrite True & pids="$$pids $$!"; \
	done; for p in $$pids; do wait $$p; done
	@echo "evaluating $(MODELS) on held-out scenes"
	pids=""; for m in $(MODELS); do \
	  OMP_NUM_THREADS=1 $(PM) nbs/21_evaluate.ipynb $(RUNS)/$$m/evaluate.ipynb -p run_dir $(RUNS)/$$m & pids="$$pids $$!"; \
	done; for p in $$pids; do wait $$p; done
	$(MAKE) --no-print-directory run-book
	@echo
	@$(BIN)/python -c "import sys; from meru_nb.evaluate import summary; print(summary(sys.argv[1]))" $(RUNS)
	@echo
	@echo "The runs:    $(abspath $(RUNS))"
	@echo "The book:    $(abspath $(RUN_HTML))/index.html"

## make run's book: only the results chapter is executed (against the new runs); every other chapter
## shows its committed outputs (make outputs), or none where its code changed since they were made.
RUN_BOOK := _build/run-book
RUN_HTML := $(RUN_BOOK)/_build/html
RESULTS  := nbs/22_results.ipynb
run-book: install
	$(BIN)/python tools/stage_book.py $(RUN_BOOK) copy
	cd $(RUN_BOOK) && $(abspath $(BIN))/nbdev-test $(RESULTS) --save
	$(BIN)/python tools/stage_book.py $(RUN_BOOK) transform
	$(BIN)/jupyter-book build $(RUN_BOOK) --warningiserror --keep-going --quiet
	@echo "book built: $(abspath $(RUN_HTML))/index.html"

## The emoji pictures of chapter 06d: npm packages at a pinned version, sha512 checked, into data/emoji/.
emoji-data:
	bash tools/emoji_data.sh

## The lambda study (chapter 11): 5 values x 3 seeds and the bag of tokens at lambda = 0.2, 16 runs of 1500 steps, two at a time, on validation scenes; writes nbs/results/lambda_study.json.
## Finished runs in $(RUNS)/study are kept, so an interrupted study continues where it stopped.
study: install
	$(BIN)/meru-nb study lambda --out nbs/results/lambda_study.json --work-dir $(RUNS)/study

## MERU and CLIP on emoji (chapter 11e): the studies' recipe trained on Google's and Twitter's pictures, measured on
## Facebook's; writes nbs/results/emoji_study.json. Needs make emoji-data; finished runs in $(RUNS)/emoji are kept.
emoji: install
	$(BIN)/meru-nb study emoji --data data/emoji --out nbs/results/emoji_study.json --work-dir $(RUNS)/emoji

## The remedies for the stall at lambda = 0.2 (chapter 11): MERU with each of study.REMEDIES x 3 seeds at 1500 steps, on
## validation scenes; writes nbs/results/remedy_study.json. Finished runs in $(RUNS)/remedies are kept.
study-remedies: install
	$(BIN)/meru-nb study remedies --out nbs/results/remedy_study.json --work-dir $(RUNS)/remedies

## The studies' recipe (chapter 11): every arm of study.STEP_ARMS (hard negatives, CLIP, the bag of tokens) x 3 seeds
## (the bags one) at 1500 steps, on validation scenes; writes nbs/results/steps_study.json. Finished runs in $(RUNS)/steps are kept.
study-steps: install
	$(BIN)/meru-nb study steps --out nbs/results/steps_study.json --work-dir $(RUNS)/steps

## make run's binding start (chapter 11): study.BINDING_ARMS, CLIP and MERU with hard negatives and 30 or 60 % of the
## items naming both objects of a two-object scene, from scratch or with each tower first alone (chapter 07d); the chosen
## arm 3 seeds, the others one, at 1500 steps (and 1000); writes nbs/results/binding_study.json. Finished runs in $(RUNS)/binding are kept.
study-binding: install
	$(BIN)/meru-nb study binding --out nbs/results/binding_study.json --work-dir $(RUNS)/binding

## Each tower alone (chapter 10a): the cpu text tower with a head naming the (shape, colour) pairs of captions at
## 300, 750 and 1500 steps, the image tower at 300, then CLIP trained contrastively from scratch, from each tower
## trained alone and from both (with and without the (shape, position) pairs); writes nbs/results/binding_capacity.json.
study-capacity: install
	OMP_NUM_THREADS=1 $(BIN)/meru-nb study capacity --out nbs/results/binding_capacity.json

## HyCoCLIP beside MERU and CLIP (chapter 11b): the studies' recipe, one seed, evaluated on the test scenes
## with the compositional measurements; writes nbs/results/hycoclip_study.json. Finished runs are kept.
study-hycoclip: install
	$(BIN)/meru-nb study hycoclip --out nbs/results/hycoclip_study.json --work-dir $(RUNS)/hycoclip

## MERU from make run's CLIP (chapter 11d): three 300-step runs beside runs/clip and runs/meru (make run first);
## writes nbs/results/finetune_study.json. Finished runs in $(RUNS)/finetune are kept.
study-finetune: install
	$(BIN)/meru-nb study finetune --clip-run $(RUNS)/clip --meru-run $(RUNS)/meru --out nbs/results/finetune_study.json --work-dir $(RUNS)/finetune

## The wheel folder for a GPU machine that reaches no package index (chapter 14): meru_nb's runtime dependencies
## that the lent machine lacks, downloaded by pip at the versions installed here for Python $(WHEELS_PY) on manylinux
## x86-64, and meru_nb's own wheel; tools/gpu_check.sh installs it there and runs meru-nb gpu-check.
WHEELS    ?= wheels
WHEELS_PY ?= 3.12
wheels: install
	$(BIN)/python tools/wheels.py --out $(WHEELS) --python-version $(WHEELS_PY)

# The same folder for this machine's Python: tests/test_gpucheck.py installs it into a fresh venv that holds only
# the lent machine's packages and runs tools/gpu_check.sh --device cpu --tiny there.
HERE_WHEELS := _build/wheels-here
wheels-here: install
	$(BIN)/python tools/wheels.py --out $(HERE_WHEELS) --python-version $$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')

## The test command: everything CI checks.
test: install export-check clean-check pytest nbtest book browser
	@echo "make test: all checks passed"

pytest: install wheels-here
	MERU_NB_WHEELS=$(abspath $(HERE_WHEELS)) $(BIN)/python -m pytest -q

# Chapter tests: every chapter of the book runs top to bottom, in parallel, on a staged copy that keeps
# its outputs, so the book shows exactly this run. The papermill run notebooks: tests/test_runs.py.
nbtest: install
	$(BIN)/python tools/stage_book.py $(BOOK) copy
	cd $(BOOK) && $(abspath $(BIN))/nbdev-test nbs --n-workers 2 --save

# meru_nb/ must be exactly what nbdev exports from nbs/: the notebooks are exported afresh into a scratch
# copy of the project (its settings and nbs/), and that export is compared with meru_nb/, which is not touched.
# A module that no notebook exports any more shows up as "Only in meru_nb".
export-check: install
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cp pyproject.toml "$$tmp/"; cp -r nbs "$$tmp/nbs"; \
	(cd "$$tmp" && $(abspath $(BIN))/nbdev-export); \
	if ! diff -r -x __pycache__ "$$tmp/meru_nb" meru_nb; then \
	  echo "export-check: meru_nb/ differs from what nbdev-export makes of nbs/: run nbdev-export and commit"; exit 1; fi; \
	echo "export-check: meru_nb/ matches nbs/"

# Every notebook is as nbdev-clean leaves it (no execution counts, no stray metadata): nbdev-clean runs on a
# scratch copy of nbs/, which is compared with the notebooks as they are; the working tree is not touched.
clean-check: install
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cp pyproject.toml "$$tmp/"; cp -r nbs "$$tmp/nbs"; cp -r nbs "$$tmp/as-is"; \
	(cd "$$tmp" && $(abspath $(BIN))/nbdev-clean); \
	dirty=$$(cd "$$tmp" && { diff -rq as-is nbs || [ $$? -eq 1 ]; } | sed -E 's|^Files as-is/(.*) and nbs/.* differ$$|nbs/\1|'); \
	if [ -n "$$dirty" ]; then \
	  echo "clean-check: nbdev-clean would change these notebooks: run nbdev-clean --fname NOTEBOOK and commit"; \
	  echo "$$dirty"; exit 1; fi; \
	echo "clean-check: every notebook is clean"

# Jupyter Book 1: the executed chapters without nbdev's directives, rendered; fails on any warning.
book: nbtest
	$(BIN)/python tools/stage_book.py $(BOOK) transform
	$(BIN)/jupyter-book build $(BOOK) --warningiserror --keep-going --quiet
	@echo "book built: $(abspath $(HTML))/index.html"

# The chapters are committed with their outputs, so that a fresh clone's make run shows every chapter executed (and
# GitHub shows them): after make book, its outputs go into nbs/ and nbs/outputs.json records what made them (the code
# cells and the nbs/results/ files they name). A chapter where either changed since fails make test
# (tests/test_stage_book.py) until make book and make outputs run again.
outputs: install
	$(BIN)/python tools/stage_book.py $(BOOK) keep
	$(BIN)/nbdev-clean

# The book for prose edits: staged as `make book` stages it, but nothing is executed. Each chapter shows its committed
# outputs, whatever its prose; a chapter whose code changed since they were made is shown unexecuted (stage_book.py
# copy names them). Its own folder: $(BOOK) is never touched.
FAST_BOOK := _build/book-fast
book-fast: install
	$(BIN)/python tools/stage_book.py $(FAST_BOOK) all
	$(BIN)/jupyter-book build $(FAST_BOOK) --warningiserror --keep-going --quiet
	@echo "book built, nothing executed: $(abspath $(FAST_BOOK))/_build/html/index.html"

# The built book in headless Chromium with no network: math rendered, images loaded, no nbdev directive,
# no console error or failed request, code within the column; a screenshot of each chapter at 1280 and 390 px
# in _build/shots/ (tests/test_book_browser.py). Playwright drives the machine's Chromium and never downloads
# one; skips without a browser (fails with MERU_NB_REQUIRE_BROWSER=1).
browser: install
	$(BIN)/python -m pytest -q -m browser tests/test_book_browser.py

clean:
	rm -rf _build .pytest_cache .hypothesis
