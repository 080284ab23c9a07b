"""k8s/: every kustomization renders, validates strictly against Kubernetes' own schemas, and
matches what the server really serves (ports, ADDER_* settings, grpc.health.v1 names).
"""

import json
import os
import shutil
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, latest_version, major_minor, schema_contents
from referencing import Registry, Resource

import contract
from deploy_support import (config_map_data, dockerfile_stages, health_services, kustomizations, of_kind,
                            render, server_container, service_env_names)
from service.config import Config, from_env

# The oldest Kubernetes the manifests need (native preStop sleep is on by default from 1.30),
# and the newest one kubernetes-validate bundles.
K8S_VERSIONS = ["1.30", major_minor(latest_version())]

# Objects whose schemas are not part of Kubernetes: their CRDs come from the Prometheus operator
# and kubernetes-validate bundles only the built-in API. Their metadata is still validated
# strictly (ObjectMeta is the same for every kind) and their spec checked by the tests below.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "Prometheus-operator CRD, not a built-in kind",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "Prometheus-operator CRD, not a built-in kind",
}

KUSTOMIZATIONS = kustomizations()
DEFAULTS = Config()


def validate_object_meta(metadata: dict, version: str) -> None:
    """Strictly validate metadata against ObjectMeta from the bundled schema definitions."""
    schema_dir = f"kubernetes-json-schema/v{version}.0-local-strict"
    definitions = schema_contents(f"{schema_dir}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ Registry()
    schema = {"$ref": "https://kubernetes.io/api/_definitions.json"
                      "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(metadata)


def test_kustomizations_found():
    assert "base" in KUSTOMIZATIONS and len(KUSTOMIZATIONS) >= 4, KUSTOMIZATIONS


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renders_unique_objects(kustomization):
    objects = render(kustomization)
    ids = [(o["apiVersion"], o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(ids) == len(set(ids)), ids
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
            "ConfigMap", "Namespace"} <= {o["kind"] for o in objects}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_validates_strictly(kustomization, version):
    errors = []
    for obj in render(kustomization):
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            validate_object_meta(obj["metadata"], version)
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except SchemaNotFoundError as error:
            errors.append(f"{name}: {error.message} (add it to CRD_KINDS with a reason if it is a CRD)")
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{name}: {'.'.join(map(str, error.path))}: {error.message}")
    assert not errors, "\n".join(errors)


def deployments():
    """(kustomization, rendered objects, Deployment) for every Deployment in every kustomization."""
    return [pytest.param(k, objs, d, id=f"{k}:{d['metadata']['name']}")
            for k in KUSTOMIZATIONS for objs in [render(k)] for d in of_kind(objs, "Deployment")]


@pytest.mark.parametrize("kustomization, objects, deployment", deployments())
def test_settings_are_the_servers(kustomization, objects, deployment):
    settings = config_map_data(objects, deployment)
    env = {e["name"]: e for e in server_container(deployment).get("env", [])}
    unknown = (set(settings) | set(env)) - service_env_names()
    assert not unknown, f"the server reads no such variable: {sorted(unknown)}"
    config = from_env(settings)  # the server's own parser accepts every value
    assert config.host == "0.0.0.0", "in a pod the server must listen beyond loopback"
    assert (config.grpc_port, config.metrics_port, config.http_port) == \
        (DEFAULTS.grpc_port, DEFAULTS.metrics_port, DEFAULTS.http_port)


@pytest.mark.parametrize("kustomization, objects, deployment", deployments())
def test_ports_and_probes_match_the_server(kustomization, objects, deployment):
    config = from_env(config_map_data(objects, deployment))
    container = server_container(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": config.grpc_port, "metrics": config.metrics_port, "http": config.http_port}

    probes = {kind: container[f"{kind}Probe"]["grpc"] for kind in ("startup", "readiness", "liveness")}
    assert {p["port"] for p in probes.values()} == {config.grpc_port}
    services = {kind: probe.get("service", "") for kind, probe in probes.items()}
    assert set(services.values()) <= health_services(), services
    # Liveness is the process only; start-up and readiness wait for the models.
    from service import health

    assert services["liveness"] == health.LIVENESS
    assert services["startup"] == services["readiness"] in {health.OVERALL, *contract.MODELS}


@pytest.mark.parametrize("kustomization, objects, deployment", deployments())
def test_model_repository_is_the_images_or_mounted_read_only(kustomization, objects, deployment):
    config = from_env(config_map_data(objects, deployment))
    image_repository = dockerfile_stages()["runtime"].env()["ADDER_MODEL_REPOSITORY"]
    mounts = {m["mountPath"]: m for m in server_container(deployment).get("volumeMounts", [])}
    path = str(config.model_repository)
    assert path == image_repository or mounts.get(path, {}).get("readOnly") is True, path
    served = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"].get("service", "")
    if path != image_repository:  # a single-model overlay: its init container copies that model
        (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
        assert init["args"] == [f"{image_repository}/{served}", f"{path}/{served}"]


@pytest.mark.parametrize("kustomization, objects, deployment", deployments())
def test_cpu_threads_and_drain_timing(kustomization, objects, deployment):
    container = server_container(deployment)
    resources = container["resources"]
    assert resources["requests"] == resources["limits"], "Guaranteed QoS: requests = limits"
    workers = {e["name"]: e for e in container["env"]}["ADDER_WORKERS"]["valueFrom"]["resourceFieldRef"]
    assert workers == {"containerName": "server", "resource": "limits.cpu", "divisor": "1"}  # a process per core

    config = from_env(config_map_data(objects, deployment))
    assert config.intra_op_threads == 1  # per worker: the workers already use every core
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace_period = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace_period > pre_stop + config.grace_seconds, "SIGKILL must not cut the drain short"


@pytest.mark.parametrize("kustomization, objects, deployment", deployments())
def test_restricted_security_context(kustomization, objects, deployment):
    pod = deployment["spec"]["template"]["spec"]
    uid = int(dockerfile_stages()["runtime"].args("USER")[0].split(":")[0])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container["securityContext"]
        assert context["runAsUser"] == uid and context["runAsNonRoot"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    tmp = {m["mountPath"]: m["name"] for m in server_container(deployment)["volumeMounts"]}["/tmp"]
    assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}[tmp]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_services_reach_named_container_ports(kustomization):
    objects = render(kustomization)
    (deployment,) = of_kind(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    container_ports = {p["name"] for p in server_container(deployment)["ports"]}
    services = of_kind(objects, "Service")
    for service in services:
        assert service["spec"]["selector"].items() <= pod_labels.items(), service["metadata"]["name"]
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
    by_headless = {s["spec"].get("clusterIP") == "None": s for s in services}
    assert {p["name"] for p in by_headless[False]["spec"]["ports"]} == {"grpc", "http", "metrics"}
    assert {p["name"] for p in by_headless[True]["spec"]["ports"]} == {"grpc"}


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_autoscaler_scales_on_inflight_requests_with_cpu_fallback(kustomization):
    objects = render(kustomization)
    (hpa,) = of_kind(objects, "HorizontalPodAutoscaler")
    (deployment,) = of_kind(objects, "Deployment")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Pods"]["pods"]["metric"]["name"] == "adder_inflight_requests"
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    from prometheus_client import CollectorRegistry

    from service.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry)
    assert registry.get_sample_value("adder_inflight_requests") is not None, "the server exports no such gauge"


def test_service_monitor_scrapes_the_metrics_port():
    objects = render("overlays/monitoring")
    (monitor,) = of_kind(objects, "ServiceMonitor")
    selected = [s for s in of_kind(objects, "Service")
                if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    ports = {p["name"] for s in selected for p in s["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"] and "metrics" in ports
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [selected[0]["metadata"]["namespace"]]


def test_alert_rules_use_metrics_the_server_exports():
    (rule,) = of_kind(render("overlays/monitoring"), "PrometheusRule")
    exprs = json.dumps([r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]])
    for name in ("adder_answers_total", "adder_request_duration_seconds_bucket"):
        assert name in exprs
    from prometheus_client import CollectorRegistry

    from service.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry)
    exported = {m.name for m in registry.collect()}
    assert {"adder_answers", "adder_request_duration_seconds"}.issubset(exported), exported


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool missing (make setup installs Debian's prometheus)")
def test_alert_rules_parse_with_promtool(tmp_path):
    """The PrometheusRule's spec is a Prometheus rule file: promtool parses every expression."""
    (rule,) = of_kind(render("overlays/monitoring"), "PrometheusRule")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"]))
    result = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validation_is_not_vacuous():
    """The checks above would catch a typo: an unknown field, or bad metadata on a CRD object."""
    deployment = json.loads(json.dumps(of_kind(render("base"), "Deployment")[0]))
    server_container(deployment)["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    with pytest.raises(jsonschema.ValidationError):
        validate_object_meta({"name": "x", "labelz": {}}, K8S_VERSIONS[-1])


def test_rendering_uses_the_projects_kubectl_not_the_one_on_path(tmp_path, monkeypatch):
    """A machine whose PATH has a broken (or old, or no) kubectl still renders: the `dev` extra's is used."""
    broken = tmp_path / "kubectl"
    broken.write_text("#!/bin/sh\necho 'broken kubectl on PATH' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert subprocess.run(["kubectl", "version", "--client"], capture_output=True).returncode == 3
    objects = render.__wrapped__("base")  # uncached: really runs kubectl again
    assert of_kind(objects, "Deployment")
