"""The DistillationRun CRD's own schema, used as the API server would use it."""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "helm" / "iterkd" / "crds" / "distillationruns.iterkd.io.yaml"


@cache
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text(encoding="utf-8"))


def version(name: str = "v1alpha1") -> dict[str, Any]:
    return next(v for v in crd()["spec"]["versions"] if v["name"] == name)


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The openAPIV3Schema with unknown fields rejected where the API server's strict field
    validation (kubectl's default) rejects them: objects that list properties and do not preserve
    unknown fields. metadata is left to the API server's own ObjectMeta schema."""
    out = copy.deepcopy(schema)

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            if not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for key, sub in node["properties"].items():
                if f"{path}.{key}" != ".metadata":
                    walk(sub, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}.*")

    walk(out, "")
    return out


def name_pattern() -> str:
    """The run-id pattern in the CRD's CEL rule on metadata.name."""
    rules = version()["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
    m = re.search(r"self\.metadata\.name\.matches\('(.+)'\)", rules[0]["rule"])
    assert m, rules
    return m.group(1)


def run_errors(obj: dict[str, Any]) -> list[str]:
    """Every way ``obj`` breaks the CRD's schema, as 'path: message', sorted."""
    schema = strict_schema(version()["schema"]["openAPIV3Schema"])
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
              for e in validator.iter_errors(obj)]
    name = (obj.get("metadata") or {}).get("name", "")
    if not re.fullmatch(name_pattern(), name):
        errors.append(f"metadata.name: {name!r} is not a run id")
    if obj.get("apiVersion") != f"{crd()['spec']['group']}/v1alpha1" or obj.get("kind") != "DistillationRun":
        errors.append(f"(root): not a DistillationRun: {obj.get('apiVersion')}/{obj.get('kind')}")
    return sorted(errors)
