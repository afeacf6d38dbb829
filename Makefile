# The two commands: `make demo` and `make test`. Each sets up .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
PIP    := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo demo-quickstart test test-unit lint format bench setup clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --constraint constraints.txt --editable '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install Conveyor with the test tools

# Byte-compile the sources, as a wheel install would have them: with PYTHONDONTWRITEBYTECODE
# set (as on CI machines) every `conveyor` process would otherwise compile each module again.
BYTECODE = $(BIN)/python -m compileall -q -j 0 src/conveyor

demo: $(STAMP)  ## run the closed loop end to end on the embedded default (examples/churn)
	@$(BYTECODE)
	$(BIN)/python examples/churn/demo.py

demo-quickstart: $(STAMP)  ## tracking, tuning, registry and pipelines on a bundled dataset
	$(BIN)/python examples/quickstart/demo.py

# The web UI's browser tests drive Debian's chromium (never a downloaded browser): installed
# here when missing and this is a Debian machine we may install on; otherwise they skip.
BROWSER = command -v chromium >/dev/null || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null \
	&& apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1; } \
	|| echo "chromium is not installed: the web UI's browser tests will skip"

test: $(STAMP)  ## run every test (services that cannot be reached skip unless CONVEYOR_REQUIRE_SERVICES=1)
	@$(BYTECODE)
	@$(BROWSER)
	$(BIN)/python -m pytest -q -n 2 --durations=20

test-unit: $(STAMP)
	@$(BYTECODE)
	$(BIN)/python -m pytest -q tests/unit

lint: $(STAMP)  ## ruff, the layer contract, mypy on every package
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)  ## peer-comparison benchmarks; figures go to docs/benchmarks.md
	@$(BYTECODE)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .demo
