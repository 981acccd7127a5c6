# The README's commands. Everything a fresh clone needs is installed from here:
# a virtualenv with the locked Python packages, and the control plane binaries
# built once with the machine's Go toolchain (cached outside the repo).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
ARGS ?=

.PHONY: help venv envtest helm lint typecheck test test-unit test-chart demo crds local-cluster lock clean

help:
	@echo "make demo          start a local control plane and show a MachinePool"
	@echo "make test          lint, type-check and run every test"
	@echo "make envtest       build (once) kube-apiserver and etcd for tests"
	@echo "make helm          build (once) helm for the chart tests"
	@echo "make test-chart    the Helm chart tests only (render, dry-run, install, RBAC)"
	@echo "make local-cluster run the local control plane until Ctrl-C"
	@echo "make crds          regenerate the committed CRDs from the API models"
	@echo "make lock          re-resolve requirements*.lock from pyproject.toml"

$(STAMP): pyproject.toml requirements-dev.lock
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; Python 3.11+ is needed" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "make: Python 3.11+ is needed, $(PYTHON) is $$($(PYTHON) --version)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements-dev.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

venv: $(STAMP)

envtest:
	@./hack/envtest/build.sh >/dev/null

helm:
	@./hack/helm/build.sh >/dev/null

lint: $(STAMP)
	$(BIN)/ruff check controller tests bench
	$(BIN)/ruff format --check controller tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) envtest helm lint typecheck
	KUBEBUILDER_ASSETS="$$(./hack/envtest/build.sh)" $(BIN)/pytest $(PYTEST_ARGS)

test-chart: $(STAMP) envtest helm
	KUBEBUILDER_ASSETS="$$(./hack/envtest/build.sh)" $(BIN)/pytest tests/chart tests/test_docker.py $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

demo: $(STAMP) envtest
	KUBEBUILDER_ASSETS="$$(./hack/envtest/build.sh)" $(BIN)/machinepool-controller demo $(ARGS)

local-cluster: $(STAMP) envtest
	KUBEBUILDER_ASSETS="$$(./hack/envtest/build.sh)" $(BIN)/machinepool-controller local-cluster --kubeconfig-out $(or $(KUBECONFIG_OUT),local-cluster.kubeconfig)

crds: $(STAMP)
	$(BIN)/machinepool-controller crds --output-dir charts/machinepool-controller/crds

lock:
	$(BIN)/uv pip compile --quiet pyproject.toml --python-version 3.11 -o requirements.lock
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev --python-version 3.11 -o requirements-dev.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
