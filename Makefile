# One command per habit. `make test` is what CI runs (see .ci/run and README.md).
.PHONY: install lint format test bench

install:
	pip install -e '.[dev]'

lint:
	ruff check .
	ruff format --check .
	mypy

format:
	ruff format .
	ruff check --fix .

test: lint
	pytest

bench:
	python benchmarks/load.py
