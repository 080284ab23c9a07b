#!/usr/bin/env bash
# `make image-test`: build the Dockerfile unchanged with buildah (MODEL_SOURCE=prebuilt) on a bookworm
# stand-in for python:3.11-slim-bookworm made here with mmdebstrap (no image registry is reachable), run it
# the way the Dockerfile's header says, and check it from the host with a real gRPC client
# (docker/test_image.py). Then plays k8s/base's Deployment and the KServe ServingRuntime with `podman kube
# play` and checks each pod the same way (docker/test_kube_play.py; what podman 4.3 makes of a manifest, and
# every edit between `kubectl kustomize` and the play: docker/kube_play.py).
# Root only (rootful buildah/podman; installs them with apt when missing).
# Everything lives in a scratch folder with its own container storage, removed on exit, by id.
# Facts and quirks of this machine kind: see the project notes on containers (runc, ulimits, CA bundle).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
REPO=model_repository  # the Dockerfile's prebuilt stage copies exactly this folder
BASE=python:3.11-slim-bookworm
TAG=localhost/sparse-adder:image-test
GRACE_SECONDS=10  # the server's default ADDER_GRACE_SECONDS; podman stop waits longer before SIGKILL
HEALTHY_WITHIN=180  # seconds: the HEALTHCHECK start period (120 s) plus three 15 s intervals

say() { printf 'image-test: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { say "needs root (rootful buildah and podman)"; exit 2; }
[ -f "$REPO/adder-sparse/1/model.onnx" ] || { say "no $REPO/ (make export)"; exit 2; }

# catatonit: with no registry, podman builds its pods' infra (pause) image locally from it (kube play).
PACKAGES=(buildah podman runc conmon netavark aardvark-dns containernetworking-plugins iptables uidmap mmdebstrap catatonit)
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

WORK=$(mktemp -d /var/tmp/sparse-adder-image-test.XXXXXX)
CID="" IMAGE_ID="" BASE_ID=""
cleanup() {
  set +e
  [ -n "$CID" ] && podman rm -f -t 0 "$CID" >/dev/null 2>&1  # (its systemd-timer complaint is noise here)
  [ -f "$WORK/kube-pods" ] && xargs -r podman pod rm -f -i -t 0 <"$WORK/kube-pods" >/dev/null 2>&1  # played pods, by id
  [ -n "$IMAGE_ID" ] && podman rmi -f "$IMAGE_ID" >/dev/null
  buildah rm --all >/dev/null 2>&1  # build containers of this run's own storage only
  [ -n "$BASE_ID" ] && podman rmi -f "$BASE_ID" >/dev/null
  podman rmi -f --all >/dev/null 2>&1  # intermediate stages, still only this run's storage
  grep -o " $WORK/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# Storage and engine settings of our own: nothing in /etc/containers or /var/lib/containers is touched.
export CONTAINERS_STORAGE_CONF=$WORK/storage.conf CONTAINERS_CONF=$WORK/containers.conf
cat >"$CONTAINERS_STORAGE_CONF" <<CONF
[storage]
driver = "overlay"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
CONF
# crun refuses hybrid cgroups here: runc. Podman's default ulimits exceed what the sandbox may set.
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] || [ "$nofile" -gt 32768 ] && nofile=32768
[ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
cat >"$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
CONF

start=$SECONDS
say "making the $BASE stand-in from Debian bookworm (mmdebstrap, the machine's own apt sources)"
SOURCES=/etc/apt/sources.list.d/debian.sources
[ -f "$SOURCES" ] || SOURCES=/etc/apt/sources.list
mmdebstrap --quiet --variant=minbase --aptopt='APT::Install-Recommends "false"' --include=python3.11,python3.11-venv,python3-pip,ca-certificates,netbase,tzdata \
  --customize-hook='rm -f "$1/usr/lib/python3.11/EXTERNALLY-MANAGED"' \
  --customize-hook='ln -sf /usr/bin/python3.11 "$1/usr/local/bin/python"' \
  --customize-hook='ln -sf /usr/bin/python3.11 "$1/usr/local/bin/python3"' \
  --customize-hook='ln -sf /usr/bin/pip3 "$1/usr/local/bin/pip"' \
  bookworm "$WORK/base.tar" "$SOURCES"
BASE_ID=$(podman import --quiet \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' "$WORK/base.tar")
podman tag "$BASE_ID" "docker.io/library/$BASE"
rm -f "$WORK/base.tar"
say "base ready after $((SECONDS - start)) s"

# pip in a RUN step cannot verify TLS with the base's bundle here: lend it the host's, for RUN steps only.
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$WORK/pip.conf"
build_start=$SECONDS
buildah bud --quiet --pull=never --format docker --runtime runc --build-arg MODEL_SOURCE=prebuilt \
  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro -v "$WORK/pip.conf:/etc/pip.conf:ro" \
  --iidfile "$WORK/iid" -t "$TAG" -f Dockerfile . >/dev/null
IMAGE_ID=$(cat "$WORK/iid")
size=$(podman image inspect --format '{{.Size}}' "$IMAGE_ID")
say "image built in $((SECONDS - build_start)) s: $((size / 1000000)) MB"

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
GRPC_PORT=$(free_port) METRICS_PORT=$(free_port)
while [ "$METRICS_PORT" = "$GRPC_PORT" ]; do METRICS_PORT=$(free_port); done
# As the Dockerfile's header says (podman's --read-only also mounts tmpfs elsewhere; Docker's does not).
run_start=$SECONDS
# podman logs that it cannot reach systemd to schedule the HEALTHCHECK: kept aside, shown on failure.
CID=$(podman run -d --read-only --read-only-tmpfs=false --tmpfs /tmp \
  -p "127.0.0.1:$GRPC_PORT:8001" -p "127.0.0.1:$METRICS_PORT:8002" "$IMAGE_ID" 2>"$WORK/podman-run.err") \
  || { cat "$WORK/podman-run.err" >&2; exit 1; }
# No systemd here to schedule the HEALTHCHECK: run the image's own check until it passes.
until podman healthcheck run "$CID" >/dev/null 2>&1; do
  if [ "$(podman inspect --format '{{.State.Running}}' "$CID")" != true ] || ((SECONDS - run_start > HEALTHY_WITHIN)); then
    say "never healthy; container log:"; podman logs "$CID" >&2 || true; cat "$WORK/podman-run.err" >&2; exit 1
  fi
  sleep 1
done
say "healthy $((SECONDS - run_start)) s after start (its own HEALTHCHECK)"

IMAGE_TEST_CONTAINER=$CID IMAGE_TEST_IMAGE=$IMAGE_ID IMAGE_TEST_GRPC="127.0.0.1:$GRPC_PORT" \
IMAGE_TEST_METRICS="http://127.0.0.1:$METRICS_PORT/metrics" IMAGE_TEST_STOP_SECONDS=$((GRACE_SECONDS + 10)) \
  "$PY" -m pytest -q -p no:cacheprovider docker/test_image.py 2> >(grep -v 'systemd connection' >&2)

# The manifests, played: one pod at a time, each started, checked and taken down by the tests themselves.
kube_start=$SECONDS
IMAGE_TEST_KUBE_IMAGE=$TAG IMAGE_TEST_WORK=$WORK \
  "$PY" -m pytest -q -p no:cacheprovider docker/test_kube_play.py 2> >(grep -v 'systemd connection' >&2)
say "kube plays (Deployment, ServingRuntime) checked in $((SECONDS - kube_start)) s"
say "done in $((SECONDS - start)) s (image $((size / 1000000)) MB)"
