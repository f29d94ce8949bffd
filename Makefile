# The two commands the README promises: `make demo` and `make test`.
# Both create .venv when it is missing and install what they need.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# `make demo KEEP=1` keeps the server up (until Ctrl-C) to look at the run in the web UI.
demo: $(STAMP)
	$(BIN)/headwater quickstart $(if $(KEEP),--keep,)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports

# The system packages the tests run for real (scripts/ensure-system-deps.sh); demo needs none.
# `make test WORKERS=3` tries another number of pytest-xdist workers (docs/development.md, "speed").
WORKERS ?= 2
test: lint
	bash scripts/ensure-system-deps.sh
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist loadgroup

bench: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/dask_executor.py
	bash scripts/ensure-system-deps.sh
	$(BIN)/python bench/api.py
	$(BIN)/python bench/agents.py
	$(BIN)/python bench/pickup.py
	$(BIN)/python bench/history.py
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/kubernetes_agent.py
	$(BIN)/python bench/fargate_agent.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
