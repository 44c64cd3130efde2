# Two commands: `make serve` and `make test`. Everything else is a helper.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install serve test models openapi lint clean mlserver

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps 'dice-ml==0.12'
	touch $(STAMP)

install: $(STAMP)  ## Create .venv and install the service with its test tools

serve: install  ## Start the service with the demo models on http://127.0.0.1:8000
	$(BIN)/xai-service serve

test: install  ## Run every test (lint, unit, end-to-end, distributed, contract)
	bash scripts/ensure_system_packages.sh
	bash scripts/prepare_mlserver.sh
	$(BIN)/ruff check service scripts tests examples
	$(BIN)/pytest

models: install  ## Retrain the demo models (same code and data give the same version ids)
	$(BIN)/python scripts/train_demo_models.py

openapi: install  ## Regenerate api_schema/openapi.json from the app (commit it deliberately)
	$(BIN)/xai-service openapi

mlserver: install  ## Prepare the MLServer environment the remote-model tests call
	bash scripts/prepare_mlserver.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .tmp/mlserver-venv
