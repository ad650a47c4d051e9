# lnlflow: `make run` runs the whole pipeline, `make test` the test suite. Both create .venv if missing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
ROOT := $(abspath .)

export PATH := $(ROOT)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export DVC_SITE_CACHE_DIR := $(ROOT)/.dvc_site_cache
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export PREFECT_HOME := $(ROOT)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export PYTHONDONTWRITEBYTECODE := 1
export NO_MKDOCS_2_WARNING := 1

.PHONY: install run repro track compare test test-fast deploy mlflow-ui prefect-server results results-quick
.PHONY: mlflow-server work-pool deploy-pool worker push pull screenshots serve docs docs-serve

install: $(VENV)/.installed

# Pinned, tested versions (requirements.lock); torch==2.13.0 resolves to the local CPU wheel.
$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -qq --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/python -m pip install -qq --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

# The whole pipeline on params.yaml, then one MLflow run (+ model registration), then the summary.
run: install
	dvc repro
	lnlflow track
	@echo
	@lnlflow summary

repro: install
	dvc repro

track: install
	lnlflow track

# Every run of params.yaml `compare.runs` × `compare.seeds` on the pipeline's cached stage one, one table.
compare: install
	@python -c "import sys; from components.config import load_params; load_params().compare.runs or sys.exit(\
	'make compare: error: params.yaml has no compare.runs to compare (docs/compare.md)')"
	dvc repro
	dvc repro compare/dvc.yaml
	lnlflow track --compare
	@echo
	@cat outputs/comparison.md

# Two workers, one test file each at a time: the end-to-end files wait on subprocesses (dvc, Prefect, MLflow)
# for much of their time, so two of them fill two cores (2 cores: 17.3 min serial, 12.0 min with -n 2).
TEST_WORKERS ?= 2
test: install
	python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: install
	python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

# Register the scheduled Prefect deployment and serve its runs from here (needs `make prefect-server` running).
deploy: install
	PREFECT_API_URL=$(PREFECT_API) python -m flows.deploy

# Prefect server + UI on PREFECT_HOST:PREFECT_PORT (HOST by default). The UI in a browser calls PREFECT_UI_API:
# bound to 0.0.0.0, set it to an address other machines reach, e.g. PREFECT_UI_API=http://<this host>:4200/api.
PREFECT_HOST ?= $(HOST)
PREFECT_PORT ?= 4200
PREFECT_UI_API ?= $(PREFECT_SERVER_API)
prefect-server: install
	PREFECT_UI_API_URL=$(PREFECT_UI_API) prefect server start --host $(PREFECT_HOST) --port $(PREFECT_PORT)

# The registered champion over REST (mlflow models serve, from .venv: it starts uvicorn by name), then the curl line.
SERVE_PORT ?= 5001
serve: install
	lnlflow serve --host $(HOST) --port $(SERVE_PORT)

mlflow-ui: install
	@echo "MLflow UI (model-training view): http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
	python -m components.mlflow_home  # a moved or copied project: point its artifact locations here
	mlflow ui --backend-store-uri sqlite:///$(ROOT)/mlflow.db --host 127.0.0.1 --port 5000

# Scaling out (docs/scaling-out.md). Other machines: MLFLOW_TRACKING_URI=http://<host>:5000 and
# PREFECT_API_URL=http://<host>:4200/api; bind HOST=0.0.0.0 only on a trusted network.
HOST ?= 127.0.0.1
POOL ?= lnlflow
# The server `make prefect-server` starts; deploy, work-pool, deploy-pool and worker talk to an exported
# PREFECT_API_URL when there is one (another machine's server), else to that local server.
PREFECT_SERVER_API = http://$(if $(filter 0.0.0.0,$(PREFECT_HOST)),127.0.0.1,$(PREFECT_HOST)):$(PREFECT_PORT)/api
PREFECT_API ?= $(or $(PREFECT_API_URL),$(PREFECT_SERVER_API))

# Tracking server on the project's store; clients upload artifacts through it (mlflow-artifacts:/ URIs).
mlflow-server: install
	python -m components.mlflow_home
	mlflow server --backend-store-uri sqlite:///$(ROOT)/mlflow.db --artifacts-destination $(ROOT)/mlartifacts \
		--host $(HOST) --port 5000

work-pool: install
	PREFECT_API_URL=$(PREFECT_API) prefect work-pool create $(POOL) --type process --overwrite

# Register the scheduled deployment with the work pool; `make worker` (here or on another machine) runs it.
deploy-pool: install
	PREFECT_API_URL=$(PREFECT_API) python -m flows.deploy --pool $(POOL)

worker: install
	PREFECT_API_URL=$(PREFECT_API) prefect worker start --pool $(POOL)

# DVC remote (configure once: dvc remote add -d <name> <dir | s3://... | gs://...>).
push: install
	dvc push

pull: install
	dvc pull dvc.yaml

# Every results table (benchmarks/results.py; docs/results/ includes them): full (digits, 3 seeds × every noise
# setting, the shipped epochs; about an hour on 2 cores), then the README's block is copied from its file; quick:
# 2 seeds, 2 settings, 10 epochs.
results: install
	python benchmarks/results.py

results-quick: install
	python benchmarks/results.py --quick

# The MLflow run, curves and registered model, the Prefect flow run and deployment, rendered by headless Chromium
# (Debian's package, driven by Playwright) into docs/img/ from real servers on loopback (docs/screenshots.py).
screenshots: install
	@python -c "import playwright" 2>/dev/null || python -m pip install -qq --disable-pip-version-check playwright==1.65.2
	python docs/screenshots.py

# The documentation site (mkdocs.yml, pages under docs/) into site/; --strict: any warning (a broken link or heading
# anchor, a page missing from the nav, a results file the results pages include but cannot find) fails the build.
docs: install
	mkdocs build --strict --site-dir site

# The same site on http://127.0.0.1:$(DOCS_PORT), rebuilt on every save.
DOCS_PORT ?= 8000
docs-serve: install
	mkdocs serve --strict --dev-addr 127.0.0.1:$(DOCS_PORT)
