"""kubernetes-validate in strict mode, as a list of problems (an unknown kind is a problem too)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError

KUBE_VERSIONS = ("1.29.0", "1.33.0")


def validation_errors(obj: dict[str, Any], kube: str) -> list[str]:
    where = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')} on {kube}"
    try:
        kubernetes_validate.validate(obj, kube, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return [f"{where}: {path}: {exc.message}"]
    except SchemaNotFoundError as exc:
        return [f"{where}: {exc.message}"]
    return []
