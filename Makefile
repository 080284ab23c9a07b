# sparse-adder: the README's two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
REPO ?= model_repository
STAMP := $(VENV)/.installed
SERVICE_STAMP := $(VENV)/.service-installed

.PHONY: setup setup-service system-deps tools models export run test test-stress bench bench-peers bench-path profile soak protos screenshot clean

# Everything the tests, the export and the bench need (torch included).
setup: system-deps $(STAMP)

# Only the service's runtime (no torch): all `make run` needs to serve the committed models.
setup-service: $(SERVICE_STAMP)

# Debian's prometheus binary (a test scrapes the server with it) and chromium + chromium-driver (the
# explorer page's browser test, `make screenshot`). Installed only when missing and we are root with
# apt (CI, containers); elsewhere setup goes on and those tests are skipped.
SYSTEM_PACKAGES := prometheus:prometheus chromium:chromium chromedriver:chromium-driver

system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "note:$$missing not installed (apt-get install$$missing); their tests will be skipped"; fi; fi

$(SERVICE_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

# Pinned CPU torch first: anything ranged would pull a multi-GB CUDA build.
$(STAMP): $(SERVICE_STAMP)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[export,dev,bench]'
	touch $@

# checkov in its own venv: its pins clash with the project's (tests/test_deploy_* use it).
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): requirements-tools.txt
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet -r requirements-tools.txt
	touch $@

# The model repository is committed with the code that made it. Nothing here trains: when export/,
# contract/ or the default config changed since the committed build (a content hash recorded in it),
# this stops with one line naming the fix (`make export`, then commit model_repository/), before any
# other set-up: the targets list `models` first.
models: setup-service
	@$(PY) -m export.fingerprint --repository $(REPO)

# Train, sparsify, compile and prove both builds (~11 min on 2 cores); then commit model_repository/.
export: setup
	$(PY) -m export --repository $(REPO)

run: setup-service models
	ADDER_MODEL_REPOSITORY=$(REPO) $(PY) -m service --host 127.0.0.1

test: models setup tools
	ADDER_MODEL_REPOSITORY=$(REPO) $(PY) -m pytest -q

# The whole suite N times in a row with two CPU-burning processes beside it: no verdict may depend on speed.
STRESS_RUNS ?= 5
test-stress: models setup tools
	ADDER_MODEL_REPOSITORY=$(REPO) PY=$(PY) bash tests/stress.sh $(STRESS_RUNS)

# Dense vs sparse: in-process ORT and end to end over gRPC (starts its own servers); see docs/bench.md.
bench: models setup
	$(PY) -m bench --repository $(REPO) --out bench_results

# Our server beside KServe and MLServer on the same ONNX file, one gRPC client (docs/peers.md). The first
# run makes their venvs, .venv-peers/{kserve,mlserver}, from bench/peers/requirements-*.txt (~1 min).
# More options: make bench-peers PEERS_ARGS="--rounds 7 --workers 2"; python -m bench.peers --help.
PEERS_ARGS ?=
bench-peers: models setup
	$(PY) -m bench.peers --repository $(REPO) --out bench_results/peers $(PEERS_ARGS)

# The request path around the model in three ratios (Add/Check p50, ModelInfer/Add p50, server CPU per
# Add/Check), one server, one sequential client, interleaved rounds; see docs/serving-profile.md.
bench-path: models setup
	$(PY) -m bench.requestpath --repository $(REPO) --out bench_results

# Where a request's server CPU goes at 16 clients (py-spy, and perf where installed): bench_results/profile/.
profile: models setup
	$(PY) -m bench.profile --repository $(REPO) --out bench_results/profile

# 64 clients for 60 s against a server process: no error, every answer a+b, RSS flat (README: Reliability).
soak: models setup
	$(PY) -m bench.soak --repository $(REPO)

# Regenerate the committed gRPC stubs in service/generated/ (a test fails if they drift from protos/).
protos: setup
	$(PY) protos/generate.py

# Refresh docs/explorer.png: the explorer page at 43+59 in headless Chromium (README: REST and the explorer).
screenshot: models setup
	$(PY) tests/explorer_screenshot.py $(REPO) docs/explorer.png

# The venvs and the export's base cache; model_repository/ itself is committed source.
clean:
	rm -rf $(VENV) $(TOOLS) .venv-peers $(REPO)/.base-cache.pt

# Build the image with buildah (MODEL_SOURCE=prebuilt) on a locally made bookworm stand-in for its base,
# run it as the Dockerfile's header says and check it from the host; then play k8s/base's Deployment and the
# KServe ServingRuntime with `podman kube play` and check those pods too. Root: installs buildah/podman.
.PHONY: image-test
image-test: models setup
	PY=$(PY) bash docker/image-test.sh
