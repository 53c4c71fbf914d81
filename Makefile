# make test   — unit + functional tests (installs what it needs on a fresh Debian machine)
# make demo   — the sandboxed demo
PY := .venv/bin/python
PYTEST := $(PY) -m pytest

.PHONY: setup test test-unit test-fv test-all demo bench bench-quick mypy clean

setup:
	@bash scripts/setup-host.sh

test: setup
	$(PYTEST) tests/unit tests/fv -m "not slow" -p no:cacheprovider

test-unit: setup
	$(PYTEST) tests/unit -p no:cacheprovider

test-fv: setup
	$(PYTEST) tests/fv -m "not slow" -p no:cacheprovider

test-all: setup
	$(PYTEST) tests/unit tests/fv -p no:cacheprovider

demo: setup
	$(PY) -m demo $(ARGS)

bench: setup
	$(PY) -m bench.run --full

bench-quick: setup
	$(PY) -m bench.run --quick

mypy: setup
	$(PY) -m mypy felix

clean:
	rm -rf .venv build *.egg-info .pytest_cache .mypy_cache .hypothesis
