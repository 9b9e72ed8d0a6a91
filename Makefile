# Two entry points (see README): `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv node system demo test lint bench clean

venv: $(STAMP)
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt -e .
	touch $@

node: node_modules/.bin/azurite
node_modules/.bin/azurite: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

# Debian packages for the network-namespace fabric and the HTML report check (root only; skipped otherwise).
system:
	@bash scripts/install-system-packages.sh

demo: venv node system
	$(PY) -m emulator.demo

test: venv node system
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .hypothesis out
