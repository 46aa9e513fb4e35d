# The two README commands. Both build the virtualenv and fetch everything on first use.
#   make demo   set up, start the embedded local stack and run the end-to-end demo
#   make test   the whole test suite (what CI runs)

# The interpreter .venv/ is built with: deploy/pick-python's choice unless given
# (`make PYTHON=/path/to/python3.11 ...`). It prefers the distribution's PGO/LTO build.
PYTHON ?=
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export CARGO_TARGET_DIR ?= $(HOME)/.cache/tradetape/cargo-target

# Test worker processes (pytest-xdist), each with its own broker and database. The suite
# mostly waits on the broker: two workers on two cores take ~40 % less wall time than one.
TEST_WORKERS ?= 2

RUST_SOURCES := $(wildcard signer_ffi/Cargo.toml signer_ffi/Cargo.lock signer_ffi/src/*.rs)

.PHONY: demo test setup lint typecheck docs clean down bench

$(STAMP): pyproject.toml $(RUST_SOURCES)
	@test -x $(PY) || { py='$(PYTHON)'; [ -n "$$py" ] || py=$$(sh deploy/pick-python) || exit 1; \
	  echo "creating $(VENV) with $$py ($$($$py -V 2>&1))"; $$py -m venv $(VENV); }
	@echo "installing tradetape and its Python dependencies into $(VENV), building the FROST signer (Rust)" \
	  "(quiet; about a minute with the cargo cache warm, several without) ..."
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

setup: $(STAMP)
	$(VENV)/bin/tradetape setup

demo: setup
	$(VENV)/bin/tradetape demo

test: setup
	@$(PY) -m pytest -n $(TEST_WORKERS) tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo 'no tests ran: failing' >&2; exit 1; fi; exit $$rc

MYPY_PATHS := engine streams projections schemas signer_ffi deploy bench tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(MYPY_PATHS)

typecheck: $(STAMP)
	$(VENV)/bin/mypy $(MYPY_PATHS)

docs: $(STAMP)
	$(PY) -m schemas.export

# Lists the benchmarks (bench/__main__.py); each runs on its own: $(PY) -m bench.NAME
bench: setup
	$(PY) -m bench

down:
	-$(VENV)/bin/tradetape down

clean: down
	rm -rf $(VENV) .tradetape build *.egg-info
