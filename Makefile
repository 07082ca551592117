# The two Quickstart commands: `make demo` (the seed's first scenario) and `make test` (the checks CI runs).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: install demo demo-healthy test lint bench faults clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/gk demo idle

demo-healthy: install
	$(BIN)/gk demo healthy

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

bench: install
	$(BIN)/python -m bench

# The long fault-injection run (docs/reliability.md): FAULT_ITERATIONS rounds per scenario, each with 1-3 crash
# points; FAULT_SEED replays a run (default: a fresh seed, printed in the header).
FAULT_ITERATIONS ?= 10
faults: install
	GK_FAULT_ITERATIONS=$(FAULT_ITERATIONS) $(if $(FAULT_SEED),GK_FAULT_SEED=$(FAULT_SEED)) \
		$(BIN)/pytest -q -m faults tests/faults -rxX -s -p no:cacheprovider

clean:
	rm -rf $(VENV) .gamekeeper .pytest_cache .mypy_cache .ruff_cache
