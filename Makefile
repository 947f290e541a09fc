# chamberd: two commands for a newcomer (each creates .venv on first use)
#   make demo   run the main job
#   make test   run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-fit bench-sync bench-serve bench-tracegas bench-compare clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/chamberd demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_fitting.py
	$(BIN)/python benchmarks/bench_fit_files.py
	$(BIN)/python benchmarks/bench_daemon.py

bench-fit: $(STAMP)
	$(BIN)/python benchmarks/bench_fit_files.py

bench-sync: $(STAMP)
	$(BIN)/python benchmarks/bench_sync.py

bench-serve: $(STAMP)
	$(BIN)/python benchmarks/bench_serve.py

bench-tracegas: $(STAMP)
	$(BIN)/python benchmarks/bench_tracegas.py

bench-compare: $(STAMP)
	$(BIN)/python benchmarks/bench_compare.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
