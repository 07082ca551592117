# The two Quickstart commands: `make demo` (the seed's first scenario) and `make test` (the checks CI runs).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: install demo demo-healthy demo-recovery demo-autoscale test lint bench proto fuzz faults clean browser

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

# The dashboard's browser test needs Debian's chromium and chromium-driver; without root or a package source it is
# skipped with a message saying so (tests/test_dashboard_browser.py), so this target never fails the build.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1)) || \
		echo "make browser: could not install chromium/chromium-driver; the browser test will be skipped"; \
	else echo "make browser: not root or no apt-get; the browser test will be skipped"; fi

test: lint browser
	$(BIN)/pytest -q

bench: install
	$(BIN)/python -m bench

# The input fuzzer's long run (FUZZ_COUNT documents, FUZZ_SEED to reproduce one; the seed is printed).
FUZZ_COUNT ?= 10000
fuzz: install
	$(BIN)/python -m tests.fuzz --count $(FUZZ_COUNT) $(if $(FUZZ_SEED),--seed $(FUZZ_SEED))

# The long fault-injection run (docs/reliability.md): FAULT_ITERATIONS rounds per scenario, each with 1-3 crash
# points; FAULT_SEED replays a run (default: a fresh seed, printed in the header).
FAULT_ITERATIONS ?= 10
faults: install
	GK_FAULT_ITERATIONS=$(FAULT_ITERATIONS) $(if $(FAULT_SEED),GK_FAULT_SEED=$(FAULT_SEED)) \
		$(BIN)/pytest -q -m faults tests/faults -rxX -s -p no:cacheprovider

clean:
	rm -rf $(VENV) .gamekeeper .pytest_cache .mypy_cache .ruff_cache
