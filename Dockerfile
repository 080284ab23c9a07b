# syntax=docker/dockerfile:1
# The sparse-adder gRPC server image. Build from the repository root:
#   docker build -t sparse-adder:0.1.0 .                                    # the committed model_repository/
#   docker build --build-arg MODEL_SOURCE=export -t sparse-adder:0.1.0 .    # trains and exports inside (~15 min)
# Run with the same restrictions as in Kubernetes:
#   docker run --read-only --tmpfs /tmp -p 8000:8000 -p 8001:8001 -p 8002:8002 sparse-adder:0.1.0

# prebuilt: take the committed ./model_repository from the context (proven by `make test` against the
# committed code); export: build the model repository here (its bytes depend on the build machine's CPU).
# (BuildKit, the default builder, builds only the stages the target needs: the other one is skipped.)
ARG MODEL_SOURCE=prebuilt

# ---- models-export: torch lives only in this stage -------------------------------------------
FROM python:3.11-slim-bookworm AS models-export
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# PyTorch's CPU index: the Linux torch on PyPI is the multi-GB CUDA build.
# The pin matches pyproject's `export` extra, so the next install keeps this wheel.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml ./
COPY contract/ contract/
COPY export/ export/
RUN pip install "./[export]" \
 && python -m export --repository /models --quiet

# ---- models-prebuilt: the committed repository (made by `make export`) -----------------------
FROM python:3.11-slim-bookworm AS models-prebuilt
COPY model_repository/ /models/

# ---- models: whichever source was chosen, trimmed to what the server reads and made read-only -
# DL3006 wants a tag, but this FROM names one of the stages above, picked by the build argument.
# checkov:skip=CKV_DOCKER_7: FROM names a build stage picked by MODEL_SOURCE, not an image to tag
# hadolint ignore=DL3006
FROM models-${MODEL_SOURCE} AS models
# The torch checkpoints (model.pt, the export's .base-cache.pt) are for export-side tests and
# re-exports only; the server reads the ONNX builds, manifests and circuits. No write bit anywhere:
# the files are the verified build.
RUN find /models \( -name model.pt -o -name .base-cache.pt \) -delete \
 && chmod -R a-w,a+rX /models

# ---- runtime-deps: the service's dependencies in a venv, copied whole into the runtime -------
FROM python:3.11-slim-bookworm AS runtime-deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the service imports (README.md is metadata an image does not need).
COPY pyproject.toml ./
COPY contract/ contract/
COPY service/ service/
# The runtime install line, pyproject's base dependencies (no torch). tests/test_deploy_runtime.py
# runs this stage's COPY and RUN lines in a fresh venv: keep them in this simple form.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install .

# ---- runtime ----------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="sparse-adder" \
      org.opencontainers.image.description="gRPC and HTTP/REST server for a 2-digit adder transformer and its sparse attention circuit" \
      org.opencontainers.image.version="0.1.0"
# Configuration is ADDER_* variables only (k8s: the adder-config ConfigMap). In a container the
# server must listen on all interfaces; /tmp is the only writable place (a tmpfs / emptyDir; the
# workers' shared metrics files go there). ADDER_WORKERS=0: one server process per CPU the container
# may use (its CPU quota, e.g. `--cpus 2` or a pod's limits.cpu, else its CPU set).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    ADDER_HOST=0.0.0.0 \
    ADDER_HTTP_PORT=8000 \
    ADDER_GRPC_PORT=8001 \
    ADDER_METRICS_PORT=8002 \
    ADDER_MODEL_REPOSITORY=/models \
    ADDER_WORKERS=0 \
    ADDER_INTRA_OP_THREADS=1
COPY --from=runtime-deps /opt/venv /opt/venv
# Owned by root without write bits: the server's UID can read the repository, never change it.
COPY --from=models /models /models
COPY docker/healthcheck.py /opt/sparse-adder/healthcheck.py
# A fixed numeric UID/GID (no passwd entry needed), the same as runAsUser in k8s/base.
USER 10001:10001
EXPOSE 8000 8001 8002
# grpc.health.v1 Check of "": healthy = every model loaded, sha256 checked, 10,000 sums right.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/sparse-adder/healthcheck.py", ""]
ENTRYPOINT ["python", "-m", "service"]
