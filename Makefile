# Two entry points (see README): `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv node system demo test test-os lint bench mutation clean package checkov

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

test: venv node system checkov
	$(PY) -m pytest

# The Linux fix in real booted Debian 12 guests, one line per network stack and step
# (tests/realos/, docs/real-os.md): root, minutes per stack; the images are cached.
test-os: venv
	@bash scripts/install-system-packages.sh --realos
	$(PY) -m tests.realos.matrix; m=$$?; HAIRPIN_REALOS=1 $(PY) -m pytest -q tests/realos; \
	  p=$$?; exit $$((m || p))

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	$(PY) bench/run_all.py

# Mutation testing (issue 12) of the guard, the plan hash, ARM ID validation and event parsing
# with their tests ([tool.mutmut] in pyproject.toml); figures and survivors from
# scripts/mutation_report.py. About 40 min on 2 shared cores; not part of CI.
MUTMUT_PIN ?= mutmut==3.8.1
mutation: venv
	$(PY) -m pip install -q --disable-pip-version-check "$(MUTMUT_PIN)"
	rm -rf mutants
	$(VENV)/bin/mutmut run --max-children 2 > .mutmut.log 2>&1 || { tail -c 3000 .mutmut.log; exit 1; }
	$(PY) scripts/mutation_report.py

# The Flex Consumption package: dist/<name>-<version>.zip (app + Linux x86_64 CPython 3.11 wheels).
package: venv
	$(PY) scripts/package.py --out dist

# checkov (template scanner) in its own venv: its dependencies clash with the app's pins.
CHECKOV_VENV  ?= .venv-checkov
CHECKOV_PIN   ?= checkov==3.3.30
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp
checkov: $(CHECKOV_STAMP)
$(CHECKOV_STAMP): Makefile
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	echo '*' > $(CHECKOV_VENV)/.gitignore  # out of git and ruff, as Python 3.13's venv does
	$(CHECKOV_VENV)/bin/python -m pip install -q --disable-pip-version-check "$(CHECKOV_PIN)"
	touch $@

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .pytest_cache .hypothesis out dist
