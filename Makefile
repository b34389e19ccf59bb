# Two commands on a fresh machine: `make repro` (the pipeline at the default size) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
QUIET_PIP := 2>&1 | grep -v 'WARNING: Location' || test $${PIPESTATUS[0]} -eq 0
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export MPLBACKEND := Agg
# a path or URL for `make push` / `make pull` instead of the default DVC remote (docs/sharing.md)
REMOTE ?=
DVC_REMOTE = $(if $(REMOTE),dvc remote add --local -f override '$(REMOTE)' && dvc $(1) -r override,dvc $(1))

.PHONY: env repro smoke paper paper-smoke ablations students claims push pull test unit lab bench gpu-check clean-runs

env: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip $(QUIET_PIP)
	$(BIN)/python -m pip install -q -e '.[lab,test]' $(QUIET_PIP)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (webiml)" >/dev/null
	@touch $(STAMP)

repro: env            ## the whole pipeline at the default (mini) size, then the docs' generated numbers
	python -m webiml.stage link
	dvc repro
	python -m webiml.report.facts

smoke: env            ## the whole DAG at smoke size, in runs/smoke
	python -m webiml.stage workspace smoke runs/smoke
	cd runs/smoke && dvc repro

paper: env            ## the whole DAG at paper size (GPUs), in runs/paper
	python -m webiml.stage workspace paper runs/paper
	cd runs/paper && dvc repro

paper-smoke: env      ## the paper's shapes through the whole DAG with a few steps (part of make test), in runs/paper-smoke
	python -m webiml.stage workspace paper-smoke runs/paper-smoke
	cd runs/paper-smoke && dvc repro

ablations: env        ## every Web-IML variant x 2 seeds and BoxPromptIML student x 3 seeds at mini size, in runs/ablations
	python -m webiml.stage workspace ablations runs/ablations
	cd runs/ablations && dvc repro

students: env         ## every BoxPromptIML student x 3 seeds at mini size, in runs/students
	python -m webiml.stage workspace students runs/students
	cd runs/students && dvc repro

claims: env           ## what the claim verdicts need, 3 seeds (runs/claims, over 2 h on 2 cores); publishes its report to docs/results and the README
	python -m webiml.stage workspace claims runs/claims
	cd runs/claims && dvc repro
	python -m webiml.report.publish runs/claims

push: env             ## upload the outputs in dvc.lock to the DVC remote (REMOTE=path or URL for another)
	$(call DVC_REMOTE,push)

pull: env             ## download the outputs in dvc.lock from the DVC remote (REMOTE=...): `dvc repro` then has nothing to run
	$(call DVC_REMOTE,pull)

test: env             ## unit tests, notebooks and the smoke DAG
	python -m pytest -q

unit: env             ## unit tests only (no notebooks, no DAG)
	python -m pytest -q -m "not slow"

bench: env            ## speed and memory benchmarks (numbers for the README)
	python benchmarks/bench_collect.py
	python benchmarks/bench_register.py
	python benchmarks/bench_annotate.py
	python benchmarks/bench_webiml_infer.py
	python benchmarks/bench_boxprompt.py
	python benchmarks/bench_train.py
	python benchmarks/bench_data.py

# No env: a GPU machine may lack DVC and Papermill; it needs torch, timm, OpenCV, scikit-image,
# segment-anything and the offline-weights wheel (docs/gpu.md)
gpu-check:            ## every trainer and inference path at paper shapes on the GPU -> reports/metrics/gpu_check.json
	PYTHONPATH=src $(PYTHON) benchmarks/gpu_check.py --device cuda --out reports/metrics/gpu_check.json

lab: env              ## JupyterLab on the repository (notebooks/ opens first; reports/ and docs/ in reach)
	jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks

clean-runs:
	rm -rf runs/
