# rock-env: `make demo` and `make test` set everything up on a fresh Debian machine.
SHELL := /bin/bash
.SHELLFLAGS := --norc --noprofile -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: setup system system-test venv docker image demo test lint typecheck clean

setup: system venv docker

system:
	bash --norc --noprofile scripts/setup-system.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e ".[server,ray,dev]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

docker:
	bash --norc --noprofile scripts/ensure-docker.sh

image: venv docker
	$(BIN)/rock-env image build-base

demo: system venv
	$(BIN)/python -m rock_env.demo

system-test:
	bash --norc --noprofile scripts/setup-system.sh --test

test: setup system-test image
	$(BIN)/python -m pytest -n 2 --timeout 600 $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check rock_env tests benchmarks
	$(BIN)/ruff format --check rock_env tests benchmarks

typecheck: venv
	$(BIN)/mypy rock_env

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
