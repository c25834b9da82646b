"""Policy over everything the chart renders, under every value set: restricted security contexts,
requests and limits on every container, pinned images, scratch on emptyDir, API tokens only where
needed, and RBAC limited to what the controller and users need (nothing cluster-wide but the CRD
and the aggregated user roles, nothing on secrets)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.k8s.test_dockerfiles import pinned_image_problem
from tests.k8s.variants import VARIANTS, by_kind, pod_specs, rendered_objects

CONTROLLER_RULES = {
    ("batch", "jobs"): {"create", "get", "list", "watch", "delete", "patch"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("iterkd.io", "distillationruns"): {"get", "list", "watch", "create", "patch", "update"},
    ("iterkd.io", "distillationruns/status"): {"get", "list", "watch", "patch", "update"},
    ("iterkd.io", "distillationruns/finalizers"): {"get", "list", "watch", "patch", "update"},
    ("coordination.k8s.io", "leases"): {"create", "get", "update"},
}
# Only with trainer.scaleToZeroBetweenRuns, and only on the trainer's Deployment (resourceNames).
SCALE_RULES = {("apps", "deployments"): {"get", "patch", "update"},
               ("apps", "deployments/scale"): {"get", "patch", "update"}}
USER_RESOURCES = {"distillationruns", "distillationruns/status"}


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return pod.get("initContainers", []) + pod["containers"]


def security_problems(where: str, pod: dict[str, Any]) -> list[str]:
    out = []
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        out.append(f"{where}: pod runAsNonRoot is not true")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        out.append(f"{where}: pod seccompProfile is not RuntimeDefault")
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        out.append(f"{where}: uses host namespaces")
    writable = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v or "persistentVolumeClaim" in v}
    for c in containers(pod):
        cw = f"{where}/{c['name']}"
        sc = c.get("securityContext", {})
        if sc.get("runAsNonRoot") is False or sc.get("runAsUser") == 0:
            out.append(f"{cw}: runs as root")
        if sc.get("readOnlyRootFilesystem") is not True:
            out.append(f"{cw}: root filesystem is writable")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{cw}: allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            out.append(f"{cw}: privileged")
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
            out.append(f"{cw}: capabilities are not drop [ALL]")
        if sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type") != "RuntimeDefault":
            out.append(f"{cw}: seccompProfile is not RuntimeDefault")
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(res.get(kind, {}))
            if missing:
                out.append(f"{cw}: no {kind} for {sorted(missing)}")
        problem = pinned_image_problem(c["image"])
        if problem:
            out.append(f"{cw}: {problem}")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        if mounts.get("/tmp") not in writable:
            out.append(f"{cw}: /tmp is not a writable scratch volume (emptyDir)")
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_is_restricted_and_bounded(variant: str) -> None:
    pods = pod_specs(variant)
    assert len(pods) >= 5
    problems = [p for where, pod in pods for p in security_problems(where, pod)]
    assert problems == []


def test_security_policy_can_fail() -> None:
    pod = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
           "containers": [{"name": "c", "image": "x:latest", "securityContext": {"readOnlyRootFilesystem": True},
                           "resources": {"limits": {"cpu": "1"}}}]}
    problems = security_problems("Deployment/x", pod)
    for fragment in ("allowPrivilegeEscalation", "capabilities", "no requests", "no limits for ['memory']",
                     "tag 'latest'", "/tmp"):
        assert any(fragment in p for p in problems), (fragment, problems)


@pytest.mark.parametrize("variant", VARIANTS)
def test_only_the_controller_gets_an_api_token(variant: str) -> None:
    for where, pod in pod_specs(variant):
        if where.endswith("-controller"):
            assert pod["serviceAccountName"] == "iterkd-controller" and pod["automountServiceAccountToken"]
        else:
            assert pod.get("automountServiceAccountToken") is False, where
            assert "serviceAccountName" not in pod, where
    (stage,) = [s for s in by_kind(variant, "ServiceAccount") if s["metadata"]["name"] == "iterkd-stage"]
    assert stage["automountServiceAccountToken"] is False


def rule_set(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for r in rules:
        assert "*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"], r
        assert not r.get("nonResourceURLs"), r
        for g in r["apiGroups"]:
            for res in r["resources"]:
                out.setdefault((g, res), set()).update(r["verbs"])
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_controller_rbac_is_namespaced_and_limited(variant: str) -> None:
    objs = rendered_objects(variant)
    assert not [o for o in objs if o["kind"] == "ClusterRoleBinding"], "no cluster-wide binding"
    (role,) = [o for o in objs if o["kind"] == "Role" and o["metadata"]["name"] == "iterkd-controller"]
    assert role["metadata"]["namespace"] == "iterkd"
    rules = rule_set(role["rules"])
    scale = {k: v for k, v in rules.items() if k[0] == "apps"}
    assert {k: v for k, v in rules.items() if k[0] != "apps"} == CONTROLLER_RULES
    if scale:
        assert scale == SCALE_RULES
        for r in role["rules"]:
            if "apps" in r["apiGroups"]:
                assert r["resourceNames"] == ["iterkd-trainer"], r
    (binding,) = [o for o in objs if o["kind"] == "RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "iterkd-controller"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "iterkd-controller", "namespace": "iterkd"}]


@pytest.mark.parametrize("variant", VARIANTS)
def test_user_roles_touch_only_distillationruns(variant: str) -> None:
    roles = [o for o in rendered_objects(variant) if o["kind"] in ("Role", "ClusterRole")
             and o["metadata"]["name"] in ("iterkd-editor", "iterkd-viewer")]
    assert len(roles) == 2
    for role in roles:
        rules = rule_set(role["rules"])
        assert {g for g, _ in rules} == {"iterkd.io"} and {r for _, r in rules} <= USER_RESOURCES
        if role["kind"] == "ClusterRole":
            labels = role["metadata"]["labels"]
            assert any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in labels), \
                f"{role['metadata']['name']}: a ClusterRole here must only be aggregated into edit/view"
        if role["metadata"]["name"].endswith("viewer"):
            assert set().union(*rules.values()) == {"get", "list", "watch"}
    assert {r["kind"] for r in roles} == ({"Role"} if variant == "everything-on" else {"ClusterRole"})


@pytest.mark.parametrize("variant", VARIANTS)
def test_nothing_grants_secrets_or_cluster_scope(variant: str) -> None:
    for o in rendered_objects(variant):
        if o["kind"] in ("Role", "ClusterRole"):
            for (_, res), _verbs in rule_set(o["rules"]).items():
                assert res != "secrets", f"{o['kind']}/{o['metadata']['name']} grants secrets"
        if o["kind"] not in ("ClusterRole",):
            assert o["metadata"].get("namespace") == "iterkd", f"{o['kind']}/{o['metadata']['name']} is cluster-scoped"


def test_rbac_policy_can_fail() -> None:
    with pytest.raises(AssertionError):
        rule_set([{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}])
    too_wide = rule_set([{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "update", "get"]}])
    assert too_wide != {("batch", "jobs"): CONTROLLER_RULES[("batch", "jobs")]}
