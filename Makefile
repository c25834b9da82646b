# IterKD: one Makefile for install, tests, lint, protos, benchmarks and the local demo.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# CPU torch is pinned through the constraints file; it also fixes every other version CI uses.
CONSTRAINTS ?= constraints.txt
# shared-torch (iterkd-torchkit) is the torch half of the shared code: only teacher[hf] and trainer need it.
SERVICES := shared shared-torch services/feedback services/teacher[hf] services/trainer services/questions services/controller[kubernetes]
DEV_TOOLS := pytest pytest-timeout psutil ruff import-linter grpcio-tools 'moto[server]' boto3 kubernetes kubernetes-validate helm-python-sdk

.PHONY: install test lint protos bench demo demo-seed clean check-protos experiment images k8s

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

# The embedded default: the miniature world (docs/miniature.md), its models built once under
# $(ITERKD_HOME)/miniature (~5 min on 2 cores), a 2-cycle run (~2 min) and a local store there;
# `iterkd status`, `iterkd report` and `iterkd runs` find the run afterwards.
ITERKD_HOME ?= $(HOME)/.iterkd
export ITERKD_HOME
IKD := $(VENV)/bin/iterkd
MINI := $(ITERKD_HOME)/miniature

demo: install
	@test -f $(MINI)/teacher/config.json -a -f $(MINI)/student/config.json || \
	  $(IKD) models miniature --preset demo --seed 0 --out $(MINI) --overwrite
	@test -f $(MINI)/heldout.jsonl || \
	  $(IKD) world export --split heldout --n 200 --seed 10000 --depth 2 --out $(MINI)/heldout.jsonl
	$(IKD) run

# The seed world: the 66 seed questions with tiny random models (the mechanics, not quality).
demo-seed: install
	@test -f $(ITERKD_HOME)/models/teacher/config.json || \
	  $(IKD) models tiny --out $(ITERKD_HOME)/models/teacher --preset small --seed 0 --warmup-steps 60 --overwrite
	@test -f $(ITERKD_HOME)/models/student/config.json || \
	  $(IKD) models tiny --out $(ITERKD_HOME)/models/student --preset small --seed 1 --warmup-steps 60 --overwrite
	$(IKD) config init --world seed > $(ITERKD_HOME)/seed-world.yaml.tmp
	mv $(ITERKD_HOME)/seed-world.yaml.tmp $(ITERKD_HOME)/seed-world.yaml
	$(IKD) run --config $(ITERKD_HOME)/seed-world.yaml

# Container images, one per service (Docker is needed; nothing here runs it in tests). The teacher
# has two: the light remote gateway (default) and `-hf`, the local transformers backend on CUDA.
DOCKER ?= docker
IMAGE_PREFIX ?= iterkd
IMAGE_TAG ?= 0.1.0
IMAGES := teacher trainer feedback questions controller

images:
	$(foreach s,$(IMAGES),$(DOCKER) build -f services/$(s)/Dockerfile -t $(IMAGE_PREFIX)/$(s):$(IMAGE_TAG) . &&) true
	$(DOCKER) build -f services/teacher/Dockerfile --target hf -t $(IMAGE_PREFIX)/teacher:$(IMAGE_TAG)-hf .

# k8s/: the plain manifests, rendered from helm/iterkd with the default values (real Helm, through
# helm-python-sdk). tests/k8s checks that they stay in sync with the chart.
k8s: install
	$(PY) -m iterkd.controller.crd helm/iterkd/crds/distillationruns.iterkd.io.yaml
	$(PY) -m tests.k8s.render --out k8s

# The miniature experiment (docs/results.md): every arm at 3 seeds, or one with ARM=... SEED=...
ARM ?=
SEED ?=
experiment: install
	$(PY) examples/experiment.py $(if $(ARM),--arms $(ARM)) $(if $(SEED),--seeds $(SEED))

clean:
	rm -rf $(VENV) .pytest_cache
