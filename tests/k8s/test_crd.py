"""The DistillationRun CRD: names, printer columns, a structural schema that passes
kubernetes-validate, and example runs (good and bad) checked against its own openAPIV3Schema."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml

from iterkd.shared.stages import _RUN_ID, STAGES
from tests.k8s.crd import ROOT, crd, name_pattern, run_errors, version
from tests.k8s.validate import validation_errors

GOOD_STATUS: dict[str, Any] = {
    "phase": "Running", "cycle": 2, "cycles": 3, "cycleText": "2/3", "stage": "train",
    "progress": "43%", "progressRatio": 0.43, "lastPassAt1": "0.412", "reason": "StageRunning",
    "message": "cycle 2: train attempt 1", "observedGeneration": 1,
    "startTime": "2026-01-05T10:00:00Z",
    "stages": [
        {"name": "teacher-solve", "cycle": 1, "attempt": 1, "state": "Succeeded",
         "job": "ikd-mbpp-small-c1-teacher-solve-a1",
         "startTime": "2026-01-05T10:00:00Z", "endTime": "2026-01-05T10:20:00Z",
         "artifacts": {"samples": "s3://iterkd/runs/mbpp-small/cycle-001/teacher-solve/samples.jsonl"}},
        {"name": "train", "cycle": 2, "attempt": 2, "state": "Running", "reason": "PodReplaced",
         "message": "resumed from checkpoint step 150"},
    ],
    "conditions": [
        {"type": "Running", "status": "True", "observedGeneration": 1,
         "lastTransitionTime": "2026-01-05T10:00:00Z", "reason": "StageRunning", "message": ""},
        {"type": "Stalled", "status": "False", "lastTransitionTime": "2026-01-05T10:00:00Z",
         "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."},
    ],
}


def example_run() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "examples" / "run.yaml").read_text(encoding="utf-8"))


def minimal() -> dict[str, Any]:
    return {"apiVersion": "iterkd.io/v1alpha1", "kind": "DistillationRun",
            "metadata": {"name": "r1"}, "spec": {"cycles": 1}}


def test_names_scope_and_subresources() -> None:
    spec = crd()["spec"]
    assert crd()["metadata"]["name"] == "distillationruns.iterkd.io"
    assert spec["group"] == "iterkd.io" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "DistillationRun" and spec["names"]["plural"] == "distillationruns"
    assert spec["names"]["shortNames"] == ["ikdrun"]
    assert [v["name"] for v in spec["versions"]] == ["v1alpha1"]
    v = version()
    assert v["served"] and v["storage"] and v["subresources"] == {"status": {}}


def test_printer_columns_tell_the_story() -> None:
    cols = version()["additionalPrinterColumns"]
    default = [(c["name"].upper(), c["jsonPath"]) for c in cols if c.get("priority", 0) == 0]
    assert default == [("PHASE", ".status.phase"), ("CYCLE", ".status.cycleText"), ("STAGE", ".status.stage"),
                       ("PROGRESS", ".status.progress"), ("PASS@1", ".status.lastPassAt1"),
                       ("AGE", ".metadata.creationTimestamp")]
    wide = [(c["name"].upper(), c["jsonPath"]) for c in cols if c.get("priority", 0) == 1]
    assert wide == [("REASON", ".status.reason"), ("MESSAGE", ".status.message")]
    status = version()["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for _, path in default + wide:
        head, _, field = path.rpartition(".")
        if head == ".status":
            assert field in status, f"column {path} reads a field the schema lacks"


def _untyped(node: dict[str, Any], path: str) -> list[str]:
    """Schema nodes without a type: the API server refuses such a (non-structural) CRD."""
    out = []
    if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields") \
            and not node.get("x-kubernetes-int-or-string"):
        out.append(path or "(root)")
    for key, sub in node.get("properties", {}).items():
        out += _untyped(sub, f"{path}.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            out += _untyped(node[key], f"{path}[{key}]")
    return out


def test_schema_is_structural() -> None:
    schema = version()["schema"]["openAPIV3Schema"]
    assert _untyped(schema, "") == []
    assert _untyped({"properties": {"a": {"type": "object", "properties": {"b": {}}}}}, "") == ["(root)", ".a.b"]


@pytest.mark.parametrize("kube", ["1.29.0", "1.33.0"])
def test_crd_passes_strict_validation(kube: str) -> None:
    assert validation_errors(crd(), kube) == []


def test_run_id_rule_matches_the_store() -> None:
    assert name_pattern() == _RUN_ID.pattern


def test_good_runs() -> None:
    run = example_run()
    assert run_errors(run) == []
    assert set(run["spec"]["stages"]) <= set(STAGES), "examples/run.yaml names a stage that does not exist"
    assert run_errors(minimal()) == []
    with_status = copy.deepcopy(run)
    with_status["status"] = GOOD_STATUS
    assert run_errors(with_status) == []


def _set(obj: dict[str, Any], path: str, value: Any) -> None:
    *head, last = path.split(".")
    for part in head:
        obj = obj[int(part)] if part.isdigit() else obj.setdefault(part, {})
    if value is _DELETE:
        del obj[last]
    else:
        obj[last] = value


_DELETE = object()

BAD = [
    ("spec.cycles", 0, r"spec\.cycles: 0 is less than the minimum of 1"),
    ("spec.cycles", _DELETE, r"spec: 'cycles' is a required property"),
    ("spec.cycles", "3", r"spec\.cycles: '3' is not of type 'integer'"),
    ("spec.seed", -1, r"spec\.seed: -1 is less than the minimum of 0"),
    ("spec.cyles", 3, r"spec: Additional properties are not allowed \('cyles' was unexpected\)"),
    ("spec.pool", [1], r"spec\.pool: \[1\] is not of type 'object'"),
    ("status.phase", "Done", r"status\.phase: 'Done' is not one of"),
    ("status.progress", "143%", r"status\.progress: '143%' does not match"),
    ("status.progressRatio", 1.5, r"status\.progressRatio: 1\.5 is greater than the maximum of 1"),
    ("status.stages.0.attempt", _DELETE, r"status\.stages\.0: 'attempt' is a required property"),
    ("status.stages.0.artifacts", {"samples": 3}, r"status\.stages\.0\.artifacts\.samples: 3 is not of type 'string'"),
    ("status.stages.0.startTime", "yesterday", r"status\.stages\.0\.startTime: 'yesterday' is not a 'date-time'"),
    ("status.conditions.0.type", "Ready", r"status\.conditions\.0\.type: 'Ready' is not one of"),
    ("status.conditions.1.reason", "not schedulable", r"conditions\.1\.reason: 'not schedulable' does not match"),
    ("status.conditions.0.lastTransitionTime", _DELETE, r"'lastTransitionTime' is a required property"),
    ("status.conditions.0.observedGeneration", -2, r"observedGeneration: -2 is less than the minimum of 0"),
    ("metadata.name", "Mbpp_Small", r"metadata\.name: 'Mbpp_Small' is not a run id"),
    ("kind", "Run", r"not a DistillationRun"),
]


@pytest.mark.parametrize(("path", "value", "expected"), BAD, ids=[f"{p}={v!r}"[:60] for p, v, _ in BAD])
def test_bad_runs_are_rejected_with_the_field_named(path: str, value: Any, expected: str) -> None:
    run = example_run()
    run["status"] = copy.deepcopy(GOOD_STATUS)
    _set(run, path, value)
    errors = run_errors(run)
    assert len(errors) == 1 and re.search(expected, errors[0]), errors


def test_spec_schema_is_the_run_configuration() -> None:
    """The CRD's spec is generated from the controller's RunConfig (`make k8s`), so the API server
    rejects what `iterkd config check` rejects: a typo in a stage's field, a bad value."""
    from iterkd.controller.config import crd_spec_schema
    from iterkd.controller.crd import rewrite

    text = (ROOT / "helm" / "iterkd" / "crds" / "distillationruns.iterkd.io.yaml").read_text(encoding="utf-8")
    assert rewrite(text) == text, "the CRD's spec schema is out of date: run `make k8s`"
    from iterkd.controller.config import RunConfig
    from iterkd.shared.config import parse_config

    spec_only = {k: v for k, v in example_run()["spec"].items() if k != "kubernetes"}
    assert parse_config(spec_only, RunConfig, "examples/run.yaml").cycles == 3  # the example is a valid run
    spec = crd_spec_schema()
    stages = spec["properties"]["stages"]["properties"]
    assert set(stages) == set(STAGES) and stages["teacher-solve"]["properties"]["n"]["minimum"] == 1
    run = example_run()
    run["spec"]["stages"]["teacher-solve"]["tempreature"] = 0.5
    assert any("tempreature" in e for e in run_errors(run))
    run = example_run()
    run["spec"]["pool"]["limit"] = 0
    assert any("spec.pool.limit" in e for e in run_errors(run))
