# IterKD: one Makefile for install, tests, lint, protos, benchmarks and the local demo.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# CPU torch is pinned through the constraints file; it also fixes every other version CI uses.
CONSTRAINTS ?= constraints.txt
# shared-torch (iterkd-torchkit) is the torch half of the shared code: only teacher[hf] and trainer need it.
SERVICES := shared shared-torch services/feedback services/teacher[hf] services/trainer services/questions
DEV_TOOLS := pytest pytest-timeout psutil ruff import-linter grpcio-tools 'moto[server]' boto3 kubernetes kubernetes-validate helm-python-sdk

.PHONY: install test lint protos bench demo clean check-protos

$(VENV)/.installed: $(CONSTRAINTS) shared/pyproject.toml shared-torch/pyproject.toml $(wildcard services/*/pyproject.toml)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -c $(CONSTRAINTS) --config-settings editable_mode=compat $(DEV_TOOLS) $(foreach s,$(SERVICES),-e '$(s)')
	touch $@

install: $(VENV)/.installed

test: install
	$(VENV)/bin/pytest -q tests

lint: install
	$(VENV)/bin/ruff check shared shared-torch services tests bench
	$(VENV)/bin/lint-imports

protos: install
	$(PY) -m iterkd.shared.protogen

bench: install
	$(PY) bench/run_all.py

demo: install
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) examples/demo.py

clean:
	rm -rf $(VENV) .pytest_cache
