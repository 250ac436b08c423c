# Every target creates .venv when it is missing: `make test` on a fresh clone installs everything.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,mlflow]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) jobs/cyclic_mining.py --out runs/demo

test: $(STAMP)
	$(PY) -m pytest

# tests/slow: the multi-node mining runs (minutes); collected only when asked for with -m slow
test-slow: $(STAMP)
	$(PY) -m pytest tests/slow -m slow

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf runs .cache .pytest_cache
