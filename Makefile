# The two commands a new user needs (see README): `make demo` and `make test`.
# Offline, benchmark data comes from LATENTBENCH_DATA_DIR (default: ../shared/data beside this checkout).
export LATENTBENCH_DATA_DIR ?= $(abspath ../shared/data)
VENV := .venv/bin

.PHONY: setup demo test lint
setup:
	bash scripts/setup

demo: setup
	$(VENV)/latentbench generate gsm8k --limit 2 --branches 2
	$(VENV)/latentbench validate data/gsm8k-latent-tree

test: setup
	$(VENV)/python -m pytest -q

lint:
	$(VENV)/ruff check latentbench tests bench
