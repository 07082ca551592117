# The two Quickstart commands: `make demo` (the seed's first scenario) and `make test` (the checks CI runs).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: install demo demo-healthy test lint bench clean browser

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

clean:
	rm -rf $(VENV) .gamekeeper .pytest_cache .mypy_cache .ruff_cache
