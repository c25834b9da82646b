"""The value sets the chart is rendered under in tests: defaults, the production example, and one
with every option switched on."""

from __future__ import annotations

from functools import cache
from typing import Any

from tests.k8s.render import PRODUCTION_VALUES, load_values, objects, render

EVERYTHING_ON: dict[str, Any] = {
    "teacher": {"variant": "hf", "gpu": {"count": 1, "resourceName": "nvidia.com/gpu"},
                "autoscaling": {"enabled": True}, "config": {"backend": "hf", "model": "/models/teacher"}},
    "trainer": {"scaleToZeroBetweenRuns": True, "autoscaling": {"enabled": True}},
    "feedback": {"autoscaling": {"enabled": True}},
    "questions": {"autoscaling": {"enabled": True}},
    "controller": {"autoscaling": {"enabled": True}},
    "rbac": {"userRoles": {"aggregate": False}},
    "models": {"existingClaim": "models"},
    "store": {"credentials": {"accessKey": "minio", "secretKey": "minio-secret-key"}},
    "run": {"cycles": 2, "seed": 1},
}

VARIANTS = ("default", "production", "everything-on")


@cache
def variant_values(variant: str) -> dict[str, Any] | None:
    if variant == "default":
        return None
    if variant == "production":
        return load_values(PRODUCTION_VALUES)
    return EVERYTHING_ON


@cache
def rendered(variant: str) -> dict[str, str]:
    return render(variant_values(variant))


def rendered_objects(variant: str) -> list[dict[str, Any]]:
    return objects(rendered(variant))


def by_kind(variant: str, kind: str) -> list[dict[str, Any]]:
    return [o for o in rendered_objects(variant) if o["kind"] == kind]


def named(variant: str, kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in by_kind(variant, kind) if o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{variant}: {kind}/{name}: {len(matches)} found"
    return matches[0]


def pod_specs(variant: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for o in rendered_objects(variant):
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out.append((f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]))
    return out
