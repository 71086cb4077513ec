# keybroker: `make run` and `make test` each set up everything on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV   := .venv
STATE  ?= .keybroker
# `make run PORT=9000` when 8080 is taken (the broker's --port).
PORT   ?=
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: all run test lint typecheck unit bench fuzz system-deps venv schema claims-doc clean

all: test

system-deps:
	@PYTHON=$(PYTHON) scripts/system-deps.sh

# The lean guest client (guest/, docs/boot.md) is a package of its own that the broker's
# package depends on; it is installed from this tree, editable, alongside it.
$(STAMP): pyproject.toml guest/pyproject.toml
	@test -x $(BIN)/pip || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ./guest -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

# Unit tests only: pure code, no PostgreSQL, no SoftHSM.
unit: venv
	$(BIN)/pytest tests/unit

# The whole suite. Integration tests start their own PostgreSQL cluster and SoftHSM token
# under a temporary state directory (broker/localstate), so nothing else needs to run first.
# A private base directory per run: pytest prunes old numbered directories under
# /tmp/pytest-of-<user>, which would pull a PostgreSQL cluster from under a concurrent run.
test: system-deps venv lint typecheck
	@base=$$(mktemp -d /tmp/keybroker-test.XXXXXX); \
	$(BIN)/pytest --basetemp=$$base; status=$$?; rm -rf $$base; exit $$status

# The fuzz campaign (docs/reliability.md), not part of `make test` (which replays the committed
# corpus and a bounded set of mutations): each harness in fuzz/harnesses under atheris, one
# after the other, niced, until FUZZ_EXECS inputs or FUZZ_SECONDS. FUZZ=name... picks some.
FUZZ_EXECS   ?= 1000000
FUZZ_SECONDS ?= 3600
FUZZ_STAMP   := $(VENV)/.fuzz-stamp

$(FUZZ_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ./guest -e '.[test,fuzz]'
	@touch $(FUZZ_STAMP)

fuzz: $(FUZZ_STAMP)
	nice -n 10 $(BIN)/python -m fuzz.run --execs $(FUZZ_EXECS) --seconds $(FUZZ_SECONDS) $(FUZZ)

# `make run TLS=1` serves HTTPS with a demo CA made under $(STATE)/demo/tls (docs/boot.md);
# PORT=N listens elsewhere than 8080.
run: system-deps venv
	$(BIN)/keybroker dev run --demo --state-dir $(STATE) $(if $(TLS),--demo-tls) $(if $(PORT),--port $(PORT))

bench: system-deps venv
	$(BIN)/keybroker bench --state-dir $(STATE)/bench

# Regenerate sql/schema.sql from the migrations (a test keeps the two in step).
schema: venv
	$(BIN)/python -m broker.localstate.schema_dump sql/schema.sql

# Regenerate docs/claims.md from the claim catalogue (a test keeps the two in step).
claims-doc: venv
	$(BIN)/python -m broker.policy.claims_doc > docs/claims.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis fuzz/work
