# The single entry point of the workspace. `make demo` and `make test` set everything up first.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help setup demo test lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

setup:  ## create .venv, install pinned dependencies, build the workspace (idempotent)
	@bash scripts/setup.sh

demo: setup  ## run the simulated end-to-end demo; artefacts in demo_out/
	@source scripts/env.sh && python -m internvla_bringup.demo $(DEMO_ARGS)

test: setup  ## ruff + every test of every package
	@bash scripts/test.sh $(TEST_ARGS)

lint: setup  ## ruff check and format check only
	@source scripts/env.sh && ruff check . && ruff format --check .

format: setup  ## apply ruff fixes and formatting
	@source scripts/env.sh && ruff check --fix . && ruff format .

bench: setup  ## run the benchmarks (print numbers, write bench_out/)
	@source scripts/env.sh && for b in bench/*.py; do echo "== $$b"; python $$b || exit 1; done

clean:  ## remove build products (keeps .venv)
	rm -rf build install log demo_out bench_out
