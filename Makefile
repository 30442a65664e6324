# `make setup` then `make test`: everything a fresh clone needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup models test bench clean

setup: $(VENV)/.installed models

# Rebuilt only when requirements.txt changes, so `make setup` is cheap to repeat.
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# BadNets into models/: copied from ../shared/csaw when present, else downloaded.
models: $(VENV)/.installed
	$(PY) -m defense fetch-models
	$(PY) -m defense export-onnx

test: $(VENV)/.installed
	$(PY) -m pytest -q

# Speed goals against the plain Keras path, as one table (about 2-3 minutes).
bench: $(VENV)/.installed
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) models .pytest_cache
