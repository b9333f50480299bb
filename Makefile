# Everything a fresh machine needs: `make demo` and `make test` create the
# virtual environment, install the package and the system tools the tests use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the tests drive as independent peers: skopeo reads back what
# we push; docker-registry is the CNCF distribution registry. hyperfine times the
# command's start-up (benchmarks/bench_startup.py).
SYSTEM_PACKAGES := skopeo docker-registry hyperfine

.PHONY: all install system-packages test lint demo bench mutation clean

all: install

# The environment may set PYTHONDONTWRITEBYTECODE, which would leave the editable
# sources to be compiled again at every start of the command: compile them here
# (compileall skips what is up to date).
install: $(STAMP)
	$(BIN)/python -m compileall -q src

$(STAMP): pyproject.toml
	$(MAKE) --no-print-directory system-packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $@

system-packages:
	@missing=""; \
	for pkg in $(SYSTEM_PACKAGES); do \
	  command -v $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "warning: missing system packages:$$missing (install them as root; tests that need them fail in CI)"; \
	  fi; \
	fi

lint: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

demo: install
	$(BIN)/python -m layerhoist.demo

bench: install
	$(BIN)/python benchmarks/bench_registry.py

# Mutation testing of the core modules, each against its own tests (slow, so not part of
# `make test`): scores per module at the end, survivors' diffs in .mutation/survivors.md.
# `make mutation MODULES="budget parts"` runs some of them (names in scripts/mutation.py).
MODULES ?=
mutation: install
	$(BIN)/python -c 'import mutmut' 2>/dev/null || $(BIN)/pip install -q 'mutmut>=3.3'
	$(BIN)/python scripts/mutation.py --max-children 2 $(MODULES)

clean:
	rm -rf .mutation mutants $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
