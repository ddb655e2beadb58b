# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, from the CPU wheel: a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
QUESTION ?= Siapa Thalut dan bagaimana pasukannya mengalahkan Jalut?

.PHONY: setup demo test lint format bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/tafsir ingest
	$(BIN)/tafsir status
	$(BIN)/tafsir search "$(QUESTION)" -k 5

test: setup lint
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) data/qdrant .pytest_cache
