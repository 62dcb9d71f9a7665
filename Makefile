# CancerNet-SCa edge: the workstation's and the scanner's everyday commands. `make help` lists them.
PY        := .venv/bin/python
ISIC_DIR  ?= $(firstword $(wildcard data/isic) ../shared/isic)
MODEL     ?= b
MODELS    ?= b c
EPOCHS    ?= 30
ARGS      ?=
STAMP     := .venv/.setup-stamp

.PHONY: help setup test lint train evaluate sources recalibrate quantize bench bundle flash rollback keygen unit-security clean lock wheelhouse pi-check

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

setup: $(STAMP)  ## create .venv with the pinned workstation environment (quick when nothing changed)

$(STAMP): requirements/workstation.txt requirements/device.in pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/workstation.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

test: setup  ## run the test suite (ISIC tests skip without an ISIC folder, and fail under CI without one)
	$(PY) -m pytest -q $(ARGS)

lint: setup  ## ruff (style, imports, likely bugs) and mypy (types) over the code, as .ci/run does before the tests
	$(PY) -m ruff check .
	$(PY) -m mypy

train: setup  ## train MODEL=b|c|resnet50 on ISIC_DIR for EPOCHS epochs (ARGS for more options, e.g. --resume)
	$(PY) -m quantize train --model $(MODEL) --isic-dir $(ISIC_DIR) --epochs $(EPOCHS) $(ARGS)

evaluate: setup  ## score models/<stem>.keras of MODEL=b|c|resnet50 on the test split of ISIC_DIR
	$(PY) -m quantize evaluate --model $(MODEL) --isic-dir $(ISIC_DIR) --split test $(ARGS)

sources: setup  ## per-source report (val, test, val+test, targets, shortcut check) of MODELS' .keras on ISIC_DIR -> reports/sources/
	$(PY) -m quantize sources $(foreach m,$(MODELS),--model $(m)) --isic-dir $(ISIC_DIR) $(ARGS)

SITE_DIR ?=
SITE_OUT ?= data/site-models
recalibrate: setup  ## re-check the threshold on SITE_DIR (a site's labelled captures); new manifests go to SITE_OUT
	@test -n "$(SITE_DIR)" || { echo "give SITE_DIR=<folder of the site's labelled captures>; see docs/training.md"; exit 2; }
	$(PY) -m quantize recalibrate --isic-dir $(SITE_DIR) --out-dir $(SITE_OUT) $(ARGS)

# MODEL given on the command line or in the environment picks one model; otherwise every model in MODELS.
QUANTIZE_MODELS = $(if $(filter command line environment,$(origin MODEL)),$(MODEL),$(MODELS))

quantize: setup  ## int8 (RECIPE, default ptq_mse_pl) + float32 .tflite, manifests, drift report for MODELS (or MODEL=b); exit 1 over budget
	$(PY) -m quantize convert $(foreach m,$(QUANTIZE_MODELS),--model $(m)) --isic-dir $(ISIC_DIR) $(if $(RECIPE),--recipe $(RECIPE)) $(ARGS)

bench:  ## time every model in models/ on this machine (ARGS=--quick for a short run; adds drift when ISIC_DIR exists)
	$(PY) benchmarks/device_bench.py $(if $(wildcard $(ISIC_DIR)/metadata.csv),--isic-dir $(ISIC_DIR)) $(ARGS)

KEY        ?= keys/bundle-signing.key
MODELS_DIR ?= models
DIST       ?= dist
PI_TARGET  ?= bookworm
TARGET      = $(if $(HOST),--host $(HOST)) $(if $(ROOT),--root $(ROOT))

keygen: setup  ## make the Ed25519 bundle-signing key pair (KEY and its .pub); never overwrites an existing key
	$(PY) -m firmware_bridge keygen --key $(KEY) $(ARGS)

lock: setup  ## compile requirements/device.in into requirements/device-<tag>.lock (aarch64 wheels, hashes) per Pi OS release
	$(PY) -m pi_target lock

wheelhouse: setup  ## download the locked aarch64 wheels into data/wheelhouse/ (cached; the bundle carries them)
	$(PY) -m pi_target wheelhouse

bundle: setup wheelhouse  ## pack MODELS_DIR's models, edge_sca, the wheelhouse and the deploy files into DIST/cancernet-sca-<version>.tar.gz, signed with KEY
	$(PY) -m firmware_bridge bundle --models-dir $(MODELS_DIR) --key $(KEY) --out-dir $(DIST) $(ARGS)

flash: setup  ## install the newest dist/ bundle on HOST=user@scanner (verified there, self-test, kept only if it comes up) or ROOT=/mounted/rootfs
	$(PY) -m firmware_bridge flash $(TARGET) --dist-dir $(DIST) --public-key $(basename $(KEY)).pub $(ARGS)

rollback: setup  ## make the previous release current again on HOST=user@scanner or ROOT=/mounted/rootfs
	$(PY) -m firmware_bridge rollback $(TARGET) $(ARGS)

unit-security:  ## rate the scanner's systemd unit (needs systemd-analyze) into reports/deploy/unit-security.txt
	mkdir -p reports/deploy
	systemd-analyze --version | head -1 > reports/deploy/unit-security.txt
	systemd-analyze security --offline=true firmware_bridge/deploy/cancernet-sca.service >> reports/deploy/unit-security.txt
	tail -1 reports/deploy/unit-security.txt

pi-check: setup  ## the scanner in a box: emulated Raspberry Pi OS (PI_TARGET=bookworm|trixie), flash, install, self-test, replay, bench, Arm parity
	$(PY) -m pi_target check --target $(PI_TARGET) $(ARGS)
