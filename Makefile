# The single entry point of the workspace. `make demo` and `make test` set everything up first.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help setup demo data test lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

setup:  ## create .venv, install pinned dependencies, build the workspace (idempotent)
	@bash scripts/setup.sh

demo: setup  ## run the simulated end-to-end demo; artefacts in demo_out/
	@source scripts/env.sh && python -m internvla_bringup.demo $(DEMO_ARGS)

DATA_ROBOT ?= franka
DATA_EPISODES ?= 20
DATA_WORKERS ?= 2
data: setup  ## simulated expert episodes -> data/<robot>/{lerobot_v3,m1}, checked by lerobot-doctor (DATA_ROBOT, DATA_EPISODES)
	@source scripts/env.sh && set -e && \
	python -m internvla_sim.data_engine --robot $(DATA_ROBOT) --episodes $(DATA_EPISODES) \
	  --workers $(DATA_WORKERS) --out data/staging/$(DATA_ROBOT) && \
	python -m internvla_learning.write_dataset --staging data/staging/$(DATA_ROBOT) \
	  --out data/$(DATA_ROBOT) --format both --overwrite && \
	python -m internvla_learning.preview data/$(DATA_ROBOT)/lerobot_v3 --out data/$(DATA_ROBOT)/grounding_samples.png && \
	lerobot-doctor check --ci --fail-on fail data/$(DATA_ROBOT)/lerobot_v3 && \
	lerobot-doctor check --ci --fail-on fail data/$(DATA_ROBOT)/m1

test: setup  ## ruff + every test of every package
	@bash scripts/test.sh $(TEST_ARGS)

lint: setup  ## ruff check and format check only
	@source scripts/env.sh && ruff check . && ruff format --check .

format: setup  ## apply ruff fixes and formatting
	@source scripts/env.sh && ruff check --fix . && ruff format .

bench: setup  ## run the benchmarks bench/bench_*.py (print numbers; evaluations such as bench/replay_expert_ros.py run on their own)
	@source scripts/env.sh && for b in bench/bench_*.py; do echo "== $$b"; python $$b || exit 1; done

clean:  ## remove build products (keeps .venv)
	rm -rf build install log demo_out bench_out  # data/ is kept: delete it by hand
