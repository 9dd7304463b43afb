# Switchboard: the command list. `make run` and `make test` work from a fresh clone;
# every target sets up what it needs (a virtualenv in .venv, generated code, the broker).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf
KAFKA := deploy/kafka/kafka.sh
PROTOS := $(wildcard protos/switchboard/v1/*.proto)
# make run options: SCENARIO=quiet-day|monday-spike|skill-shortage|broker-restart, RATE (arrivals/s), DURATION (s, 0 = until Ctrl-C)
SCENARIO ?= quiet-day
RATE ?=
DURATION ?= 0
PYTEST_ARGS ?=

.PHONY: setup proto lint test test-unit run kafka-up kafka-down topics bench clean

setup: $(VENV)/.installed gen/.stamp

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['dev']))" > $(VENV)/requirements.txt
	@$(PY) -m pip install -q --disable-pip-version-check -r $(VENV)/requirements.txt
	@# The repo and its generated code are importable from the venv without an install step.
	@printf '%s\n%s\n' "$(CURDIR)" "$(CURDIR)/gen" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/switchboard-dev.pth"
	@# The `switchboard` command ([project.scripts]) in $(VENV)/bin: an editable install of
	@# this checkout (no download: setuptools came with the dev dependencies), without
	@# setuptools' notice that editable installs are editable.
	@PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q \
		--disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

proto: gen/.stamp

gen/.stamp: $(PROTOS) $(VENV)/.installed
	@rm -rf gen && mkdir -p gen
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -Iprotos \
		--python_out=gen --grpc_python_out=gen --mypy_out=quiet:gen --mypy_grpc_out=quiet:gen $(PROTOS)
	@touch $@

$(BUF):
	@npm install --silent --no-audit --no-fund --prefix .tools @bufbuild/buf@$(BUF_VERSION) >/dev/null

lint: setup $(BUF)
	$(BUF) lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: setup
	@$(KAFKA) jars
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

kafka-up:
	@$(KAFKA) up

kafka-down:
	@$(KAFKA) down

topics: setup kafka-up
	@$(PY) -m services.common.provision

run: setup
	@$(KAFKA) jars
	$(PY) -m services.launcher --scenario $(SCENARIO) $(if $(RATE),--rate $(RATE)) --duration $(DURATION)

bench: setup
	$(PY) -m bench.router_core
	$(PY) -m bench.end_to_end

clean: kafka-down
	rm -rf $(VENV) gen .tools .run deploy/kafka/.libs deploy/kafka/.data .pytest_cache .mypy_cache .ruff_cache .hypothesis
