# Set-up and the two everyday commands. `make train` and `make test` create or refresh .venv first.
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv train test test-all test-floor lint docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

# Extra Hydra overrides: make train ARGS="model.beta=1.5 estimator=jsd"
train: venv
	$(PY) train.py $(ARGS)

# The fast lane (run it while working): everything but tests marked slow.
test: venv
	$(PY) -m pytest -m "not slow" --durations=15 $(PYTEST_ARGS)

# Everything, slow accuracy and end-to-end tests included (what CI runs).
test-all: venv
	$(PY) -m pytest --durations=15 $(PYTEST_ARGS)

# The fast lane on the oldest versions pyproject allows (.ci/floor.txt), in a venv of its own.
FLOOR := .venv-floor
test-floor:
	$(PYTHON) -m venv $(FLOOR)
	$(FLOOR)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(FLOOR)/bin/python -m pip install -q -e ".[dev]" -c .ci/floor.txt
	$(FLOOR)/bin/python -m pytest -m "not slow" $(PYTEST_ARGS)

# docs/config.md and the README's configuration tables, regenerated from config/schema/ and conf/.
docs: venv
	$(PY) -m dim_lightning.config.docs --write

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) $(FLOOR) .pytest_cache .ruff_cache
