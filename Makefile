# distillq: `make run` and `make test` set themselves up on a fresh clone.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast lint golden lock bench bench-minatar teachers study study-tiny study-pixels study-qdagger study-multitask study-privileged study-robust study-beyond study-minatar mutation deploy clean

# Installs exactly the versions in requirements.lock (hash-checked), then distillq itself
# without touching them. pyproject.toml keeps the ranges, for library users.
$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "distillq needs Python >= 3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

# Refresh the lock from pyproject.toml's ranges (newest versions that satisfy them).
LOCK_VENV := .venv-lock
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || ($(PYTHON) -m venv $(LOCK_VENV) && \
		$(LOCK_VENV)/bin/pip install -q pip-tools==7.6.2)
	$(LOCK_VENV)/bin/pip-compile -q --upgrade --extra dev --all-build-deps --allow-unsafe \
		--generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
		-o requirements.lock pyproject.toml

# The main job on defaults: teacher (4 seeds) -> KL student -> evaluation table.
run: setup
	mkdir -p runs
	$(VENV)/bin/distillq train-teacher | $(VENV)/bin/distillq distill --loss kl --temp 2 \
		| $(VENV)/bin/distillq evaluate | tee last-evaluation.json

# Two pytest workers, one test file each (module fixtures are built once): most of the suite's
# time is single-threaded (imports, XLA compilation, subprocesses), so two workers on a
# 2-core CI machine nearly halve it. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: setup
	$(PYTEST)

test-fast: setup
	$(PYTEST) -m "not slow"

# ruff, then the house's layers (import-linter contracts in pyproject.toml)
lint: setup
	$(VENV)/bin/ruff check distillq tests scripts
	$(VENV)/bin/lint-imports --no-cache

# Golden outputs: 18 short runs through the CLI, bit-identical to results/golden/golden.json
# (recorded on this project's 2-core development CPU; ~2 min). README "Tests".
golden: setup
	$(PY) scripts/golden.py check results/golden/golden.json

# Mutation testing (cosmic-ray) of the jitted core (distillq/core): hours on a 2-core CPU; the
# survivors are listed in results/mutation/. See README "Tests".
mutation: setup
	$(PY) -m pip install -q -e '.[mutation]'
	$(PY) scripts/mutation.py --out results/mutation

clean:
	rm -rf runs/ .pytest_cache .ruff_cache

# Speed, side by side with the peers (rejax's DQN on CartPole, rejax's PQN on MinAtar):
# ~25 min on a 2-core CPU; results/bench/. bench-minatar: the MinAtar rows alone (~10 min).
bench: setup
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) scripts/bench.py --out results/bench

bench-minatar: setup
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) scripts/bench.py --only-minatar --out results/bench

# Teachers at their targets (README "Environments"): every env's default teacher, 4 seeds,
# final greedy returns and curves; ~30 min on a 2-core CPU; results/teachers/
teachers: setup
	$(PY) scripts/teachers_study.py --out results/teachers

# Deployment figures (README "Deployment"): exports, parity, latency, int8, GIFs; results/deploy/
deploy: setup
	$(PY) scripts/deploy.py --out results/deploy

# The distillation study (README "Study"): ~1 h on a 2-core CPU; results/study/
study: setup
	$(PY) scripts/study.py --out results/study

# The tiniest students per env, and whether a 16-unit assistant helps (README "Students as
# teachers"); results/study-tiny/
study-tiny: setup
	$(PY) scripts/tiny_study.py --out results/study-tiny

# Cross-modal students: state teachers teach pixel students (README "Pixel students"):
# 8 students per cell, 95% CIs; 12-25 min per cell on a 2-core CPU (8 cells per env);
# results/study-pixels/
study-pixels: setup
	$(PY) scripts/pixel_study.py --out results/study-pixels

# Beyond same-task imitation (README "Beyond same-task imitation: the study"): one command
# per claim, 8 seeds, 95% CIs; results/study-beyond/<claim>.md
study-qdagger: setup
	$(PY) scripts/beyond_study.py qdagger
study-multitask: setup
	$(PY) scripts/beyond_study.py multitask
study-privileged: setup
	$(PY) scripts/beyond_study.py privileged
study-robust: setup
	$(PY) scripts/beyond_study.py robustness
study-beyond: setup
	$(PY) scripts/beyond_study.py all

# Game AI on MinAtar (README "Game AI"): one command per question (frontier, robust, time,
# grid, qdagger, multitask), 8 students per cell, 95% CIs; all of them: make study-minatar
# (~4 h on a 2-core CPU, teachers included); results/study-minatar/<question>.md
study-minatar: setup
	$(PY) scripts/minatar_study.py all
study-minatar-%: setup
	$(PY) scripts/minatar_study.py $*
