# distillq: `make run` and `make test` set themselves up on a fresh clone.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast lint bench study clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "distillq needs Python >= 3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The main job on defaults: teacher (4 seeds) -> KL student -> evaluation table.
run: setup
	mkdir -p runs
	$(VENV)/bin/distillq train-teacher | $(VENV)/bin/distillq distill --loss kl --temp 2 \
		| $(VENV)/bin/distillq evaluate | tee runs/last-evaluation.json

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check distillq tests scripts

clean:
	rm -rf runs/ .pytest_cache .ruff_cache

# Speed, side by side with the peer (rejax's DQN): ~15 min on a 2-core CPU; results/bench/
bench: setup
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) scripts/bench.py --out results/bench

# The distillation study (README "Study"): ~1 h on a 2-core CPU; results/study/
study: setup
	$(PY) scripts/study.py --out results/study
