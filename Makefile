# One target per habit. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SAMPLES ?= samples
OUTPUT  ?= output

.PHONY: run test lint typecheck unit system-deps bench cost fuzz deploy clean help

help:
	@echo "make run    - set up, generate sample studies with fake PHI, de-identify them into ./$(OUTPUT)"
	@echo "make test   - set up and run the whole test suite (ruff, mypy strict, pytest)"
	@echo "make bench  - benchmarks side by side with peer tools (writes docs/benchmarks.md)"
	@echo "make cost   - AWS cost per million files, counted from a moto run (writes docs/cost.md)"
	@echo "make fuzz   - longer fuzzing of parse and de-identify"
	@echo "make deploy - build the Lambda packages and deploy the stack (sam deploy --guided; docs/aws.md)"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/medpipe samples $(SAMPLES)
	$(BIN)/medpipe run $(SAMPLES) $(OUTPUT)
	@echo "De-identified files, index.jsonl, index.parquet, series.parquet, manifest.json and report.html (open it in a browser) are in ./$(OUTPUT)"

system-deps:
	@scripts/install-system-deps.sh

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

unit: $(VENV)/.installed-dev
	$(BIN)/pytest -q

test: $(VENV)/.installed-dev system-deps lint typecheck unit

bench: $(VENV)/.installed-dev
	@scripts/install-system-deps.sh bench
	$(BIN)/python -m benchmarks.run

cost: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.cost

# Deploy for an operator: sam build runs build-<LogicalId> below for each function, then
# sam deploy --guided asks for the stack name, region and parameters (infra/samconfig.toml).
SAM ?= tools/sam/bin/sam
deploy: system-deps
	$(SAM) build --template-file infra/template.yaml --config-file $(CURDIR)/infra/samconfig.toml
	$(SAM) deploy --guided --config-file $(CURDIR)/infra/samconfig.toml

fuzz: $(VENV)/.installed-dev
	MEDPIPE_FUZZ_EXAMPLES=5000 $(BIN)/pytest -q tests/unit/test_deidentifier_properties.py -p no:cacheprovider

# `sam build` calls build-<LogicalId> for each function (Metadata: BuildMethod: makefile).
# The instance functions carry Clean Pixel Data (onnxruntime, numpy, the PP-OCR models of
# the rapidocr wheel, pylibjpeg); pyarrow does not fit beside them in Lambda's 250 MB, so
# the index function alone carries it (docs/aws.md). Lambda's python3.12 on arm64 runs
# Amazon Linux 2023 (glibc 2.34): manylinux_2_28 wheels run there.
LAMBDA_PLATFORM := --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 \
	--implementation cp --python-version 3.12 --only-binary=:all:
LAMBDA_BASE := "pydicom>=3.0,<4" "pydantic>=2.6,<3" "python-json-logger>=3.1,<5" \
	"aws-lambda-powertools>=3.0,<4" "blake3>=1"
INSTANCE_DEPS := $(LAMBDA_BASE) "numpy>=1.26" "onnxruntime>=1.17" "Pillow>=10" \
	"pylibjpeg>=2" "pylibjpeg-libjpeg>=2" "pylibjpeg-openjpeg>=2" "pylibjpeg-rle>=2"
INDEX_DEPS := $(LAMBDA_BASE) "pyarrow>=16"
LAMBDA_PIP = $(PYTHON) -m pip install --quiet --target "$(ARTIFACTS_DIR)" $(LAMBDA_PLATFORM)

build-InstanceFunction build-LargeInstanceFunction:
	$(LAMBDA_PIP) $(INSTANCE_DEPS)
	# The models only: rapidocr's own code needs OpenCV, which the detector does not use.
	$(LAMBDA_PIP) --no-deps "rapidocr-onnxruntime>=1.3,<2"
	rm -rf "$(ARTIFACTS_DIR)"/onnxruntime/transformers "$(ARTIFACTS_DIR)"/onnxruntime/quantization \
		"$(ARTIFACTS_DIR)"/onnxruntime/tools "$(ARTIFACTS_DIR)"/rapidocr_onnxruntime/models/*cls*
	find "$(ARTIFACTS_DIR)" -name __pycache__ -prune -exec rm -rf {} +
	cp -r src "$(ARTIFACTS_DIR)/"

build-IndexFunction:
	$(LAMBDA_PIP) $(INDEX_DEPS)
	find "$(ARTIFACTS_DIR)" -name __pycache__ -prune -exec rm -rf {} +
	cp -r src "$(ARTIFACTS_DIR)/"

clean:
	rm -rf $(VENV) $(SAMPLES) $(OUTPUT) .pytest_cache .mypy_cache .ruff_cache
