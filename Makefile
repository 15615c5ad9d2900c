# The two commands of the README: `make demo` runs the main job, `make test` runs the tests.
# Both set everything up first (scripts/setup.sh is idempotent and quick when nothing changed).
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV := source scripts/env.sh
PYTEST_ARGS ?=

.PHONY: help setup build demo pipeline test test-all lint bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

setup:  ## create .venv, install ROS 2 Jazzy wheels + deps, colcon build
	@bash scripts/setup.sh

build: setup  ## same as setup (kept for muscle memory)

demo: setup  ## the main job: transfer-cube in the sim, closed loop through the ROS nodes
	@$(ENV) && bash scripts/demo.sh

pipeline: setup  ## demos as bags -> dataset -> training -> closed-loop evaluation -> results/ (TASK=...)
	@$(ENV) && bash scripts/pipeline.sh

test: setup  ## lint, then every test except those marked slow
	@$(ENV) && ruff check . && python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: setup  ## every test, slow ones included
	@$(ENV) && python -m pytest $(PYTEST_ARGS)

lint: setup  ## ruff
	@$(ENV) && ruff check . && ruff format --check .

bench: setup  ## every benchmark script; each prints JSON
	@$(ENV) && for b in benchmarks/*.py; do echo "== $$b"; python $$b || exit 1; done

clean:  ## remove build outputs (keeps .venv)
	rm -rf build install log
