"""Check Kubernetes objects against the KServe SDK's own models; run with the tools venv's python
(`make tools`), which has the `kserve` package. Objects as a JSON list on stdin; problems as a JSON list.

Each object is rebuilt field by field through the SDK's generated classes (kserve.models, and
kubernetes.client.models for core types such as V1Container): a field the SDK does not know, a value
of the wrong type, or a required field left out is a problem.
"""

import json
import re
import sys

import kserve.models
import kubernetes.client.models

_CLASSES = (kserve.models, kubernetes.client.models)
_KINDS = {("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
          ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
          ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService"}
_SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float)}


def build(value, kind: str, where: str, problems: list[str]):
    if value is None:
        return None
    if match := re.fullmatch(r"[lL]ist\[(.+)\]", kind):  # kserve.models: list[..], kubernetes 3x: List[..]
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list, got {value!r}")
            return None
        return [build(v, match[1], f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if match := re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", kind):
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a map, got {value!r}")
            return None
        return {k: build(v, match[1] or match[2], f"{where}.{k}", problems) for k, v in value.items()}
    if kind == "object":  # IntOrString, Quantity, free-form: any JSON value
        return value
    if kind in _SCALARS:
        if not isinstance(value, _SCALARS[kind]) or (kind != "bool" and isinstance(value, bool)):
            problems.append(f"{where}: expected {kind}, got {value!r}")
        return value
    cls = next((getattr(m, kind) for m in _CLASSES if hasattr(m, kind)), None)
    if cls is None:
        problems.append(f"{where}: the SDK has no type {kind}")
        return None
    if not isinstance(value, dict):
        problems.append(f"{where}: expected a {kind} object, got {value!r}")
        return None
    names = {json_name: attribute for attribute, json_name in cls.attribute_map.items()}
    arguments = {}
    for key, item in value.items():
        if key not in names:
            problems.append(f"{where}.{key}: {kind} has no such field")
            continue
        attribute = names[key]
        arguments[attribute] = build(item, cls.openapi_types[attribute], f"{where}.{key}", problems)
    try:
        return cls(**arguments)  # the SDK's own client-side checks: required fields, allowed values
    except (ValueError, TypeError) as error:
        problems.append(f"{where}: {error}")
        return None


def main() -> None:
    problems: list[str] = []
    for obj in json.load(sys.stdin):
        kind = _KINDS.get((obj.get("apiVersion"), obj.get("kind")))
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if kind is None:
            problems.append(f"{name}: not a KServe kind this check knows")
            continue
        build(obj, kind, name, problems)
    json.dump(problems, sys.stdout)


if __name__ == "__main__":
    main()
