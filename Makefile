# sdls_qkd — each target makes its own virtual environment (.venv) on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck wheel bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	# spacepackets pins the slow fastcrc 0.3; install it without deps next to fastcrc>=0.5 (see README).
	$(BIN)/pip install -q --no-deps 'spacepackets==0.32.0'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sdls-qkd demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check sdls_qkd tests tools

typecheck: $(STAMP)
	$(BIN)/mypy

wheel: $(STAMP)
	$(BIN)/python -m build --wheel --outdir dist .

bench: $(STAMP)
	for b in tools/bench_*.py; do $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) dist build *.egg-info .pytest_cache .mypy_cache .ruff_cache
