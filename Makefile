# The two Quickstart commands: `make demo` (the seed's first scenario) and `make test` (the checks CI runs).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: install demo demo-healthy demo-recovery demo-autoscale test lint bench proto fuzz clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/gk demo idle

demo-healthy: install
	$(BIN)/gk demo healthy

demo-recovery: install
	$(BIN)/gk demo recovery

demo-autoscale: install
	$(BIN)/gk demo autoscale

# The external scaler's gRPC stubs (committed; grpcio-tools is a dev dependency only).
proto: install
	$(BIN)/python -m grpc_tools.protoc -Igamekeeper/kube/scalerpb=proto --python_out=src --pyi_out=src \
		--grpc_python_out=src proto/externalscaler.proto

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

bench: install
	$(BIN)/python -m bench

# The input fuzzer's long run (FUZZ_COUNT documents, FUZZ_SEED to reproduce one; the seed is printed).
FUZZ_COUNT ?= 10000
fuzz: install
	$(BIN)/python -m tests.fuzz --count $(FUZZ_COUNT) $(if $(FUZZ_SEED),--seed $(FUZZ_SEED))

clean:
	rm -rf $(VENV) .gamekeeper .pytest_cache .mypy_cache .ruff_cache
