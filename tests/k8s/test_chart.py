"""helm/iterkd rendered with real Helm: lint, strict schema validation for Kubernetes 1.29 and
1.33, the config every service reads, placement, scaling, the store, the sandbox's network policy,
the checksum that rolls pods, the values schema and NOTES."""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import pytest
import yaml

from iterkd.feedback.config import FeedbackFileConfig
from iterkd.questions.config import QuestionsFileConfig
from iterkd.shared.config import parse_config
from iterkd.teacher.config import TeacherFileConfig
from iterkd.trainer.config import TrainerFileConfig
from tests.k8s.crd import crd
from tests.k8s.render import CHART, PRODUCTION_VALUES, load_values, objects, render, strip_source
from tests.k8s.validate import KUBE_VERSIONS, validation_errors
from tests.k8s.variants import VARIANTS, by_kind, named, rendered, rendered_objects, variant_values

SERVICES = ("teacher", "trainer", "feedback", "questions", "controller")
SERVICE_MODELS = {"teacher": TeacherFileConfig, "trainer": TrainerFileConfig,
                  "feedback": FeedbackFileConfig, "questions": QuestionsFileConfig}


def config_of(variant: str) -> dict[str, Any]:
    cm = named(variant, "ConfigMap", "iterkd-config")
    return yaml.safe_load(cm["data"]["config.yaml"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_lint_is_clean(variant: str) -> None:
    report = helm.lint(CHART, variant_values(variant), strict=True, namespace="iterkd", kube_version="v1.29.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert problems == [], problems


def test_lint_can_fail() -> None:
    report = helm.lint(CHART, {"teacher": {"replicas": "two"}}, strict=True)
    assert any(m["severity"] >= 2 for m in report["messages"]) or report["errors"], report


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_manifest_passes_strict_validation(variant: str, kube: str) -> None:
    objs = rendered_objects(variant)
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "Service", "ConfigMap", "Role", "RoleBinding", "ServiceAccount"} <= kinds
    errors = [e for o in objs for e in validation_errors(strip_source(o), kube)]
    errors += validation_errors(crd(), kube)
    assert errors == []


def test_validation_catches_a_bad_manifest() -> None:
    dep = strip_source(named("default", "Deployment", "iterkd-feedback"))
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    assert validation_errors(dep, "1.33.0")


def test_services_deployments_and_probes() -> None:
    for name in SERVICES:
        dep = named("default", "Deployment", f"iterkd-{name}")
        svc = named("default", "Service", f"iterkd-{name}")
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        port = c["ports"][0]["containerPort"]
        assert c["args"][:2] == ["serve", name]
        assert c["readinessProbe"]["grpc"] == {"port": port} and c["livenessProbe"]["grpc"] == {"port": port}
        assert svc["spec"]["ports"][0]["port"] == port
        assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
        assert "checksum/config" in dep["spec"]["template"]["metadata"]["annotations"]
    assert named("default", "Deployment", "iterkd-feedback")["spec"]["replicas"] == 2
    assert by_kind("default", "HorizontalPodAutoscaler") == []
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind("everything-on", "HorizontalPodAutoscaler")}
    assert hpas == {f"iterkd-{s}" for s in SERVICES}
    assert "replicas" not in named("everything-on", "Deployment", "iterkd-feedback")["spec"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_map_is_a_config_every_service_accepts(variant: str) -> None:
    data = config_of(variant)
    assert set(data) <= {"store", "logging", "teacher", "trainer", "feedback", "questions", "controller", "run"}
    for name, model in SERVICE_MODELS.items():
        cfg = parse_config(data, model, f"{variant}:config.yaml")
        section = getattr(cfg, name)
        assert section.server.host == "0.0.0.0"
        dep = named(variant, "Deployment", f"iterkd-{name}")
        assert dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == section.server.port
    from iterkd.controller.config import ControllerFileConfig

    ctl = parse_config(data, ControllerFileConfig, f"{variant}:config.yaml").controller
    assert ctl.executor == "kubernetes" and ctl.kubernetes.namespace == "iterkd"
    assert ctl.kubernetes.stage_image == named(variant, "Deployment", "iterkd-controller")[
        "spec"]["template"]["spec"]["containers"][0]["image"]
    assert ctl.kubernetes.service_account == "iterkd-stage"
    assert ctl.server.port == named(variant, "Deployment", "iterkd-controller")[
        "spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    for svc, target in ctl.kubernetes.services.items():
        assert target == f"iterkd-{svc}.iterkd.svc:{data[svc]['server']['port']}"


def test_config_map_rejected_by_a_service_fails() -> None:
    """The check above can fail: a typo in a service's config values is an error of that service."""
    data = config_of("default")
    data["trainer"]["optim"] = {"lrr": 1.0}
    with pytest.raises(ValueError, match=r"trainer\.optim\.lrr: unknown field"):
        parse_config(data, TrainerFileConfig, "config.yaml")


def test_store_minio_or_external_s3() -> None:
    default = config_of("default")["store"]
    assert default["endpoint"] == "iterkd-minio.iterkd.svc:9000" and default["secure"] is False
    sts = named("default", "StatefulSet", "iterkd-minio")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    secret = named("default", "Secret", "iterkd-store")
    assert set(secret["data"]) == {"accesskey", "secretkey"}
    prod = config_of("production")["store"]
    assert prod["endpoint"] == "s3.eu-west-1.amazonaws.com:443" and prod["secure"] is True
    assert prod["create_bucket"] is False and prod["credentials_dir"] == "/var/run/secrets/iterkd-store"
    assert by_kind("production", "StatefulSet") == [] and by_kind("production", "Secret") == []
    for _, pod in [(n, d["spec"]["template"]["spec"]) for n, d in
                   [(d["metadata"]["name"], d) for d in by_kind("production", "Deployment")]]:
        vol = next(v for v in pod["volumes"] if v["name"] == "store-credentials")
        assert vol["secret"]["secretName"] == "iterkd-s3"
        assert {i["path"] for i in vol["secret"]["items"]} == {"accesskey", "secretkey"}
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "store-credentials")
        assert mount["mountPath"] == prod["credentials_dir"] and mount["readOnly"]
    with pytest.raises(helm.HelmError, match="externalS3.endpoint"):
        render({"minio": {"enabled": False}, "feedback": {"networkPolicy": {"enabled": False}}})


def test_trainer_on_the_gpu_pool_and_scale_to_zero() -> None:
    prod = named("production", "Deployment", "iterkd-trainer")
    pod = prod["spec"]["template"]["spec"]
    res = pod["containers"][0]["resources"]
    assert res["limits"]["nvidia.com/gpu"] == 1 and res["requests"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "nodeAffinity" in pod["affinity"]
    assert prod["spec"]["replicas"] == 0 and prod["spec"]["strategy"]["type"] == "Recreate"
    scaling = config_of("production")["controller"]["kubernetes"]["trainer_scaling"]
    assert scaling == {"deployment": "iterkd-trainer", "replicas": 1, "scale_to_zero": True}
    role = named("production", "Role", "iterkd-controller")
    scale_rules = [r for r in role["rules"] if "apps" in r["apiGroups"]]
    assert scale_rules == [{"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale"],
                            "resourceNames": ["iterkd-trainer"], "verbs": ["get", "patch", "update"]}]
    default = named("default", "Deployment", "iterkd-trainer")
    assert default["spec"]["replicas"] == 1
    assert "trainer_scaling" not in config_of("default")["controller"]["kubernetes"]
    assert not [r for r in named("default", "Role", "iterkd-controller")["rules"] if "apps" in r["apiGroups"]]
    # Only the GPU images get GPUs; the teacher's hf variant uses the -hf image.
    light = named("default", "Deployment", "iterkd-teacher")["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in light["resources"]["limits"] and light["image"] == "iterkd/teacher:0.1.0"
    hf = named("everything-on", "Deployment", "iterkd-teacher")["spec"]["template"]["spec"]["containers"][0]
    assert hf["image"] == "iterkd/teacher:0.1.0-hf" and hf["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_external_tgi_teacher_in_production() -> None:
    teacher = config_of("production")["teacher"]
    assert teacher["backend"] == "tgi" and teacher["url"].startswith("http://tgi-")
    c = named("production", "Deployment", "iterkd-teacher")["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.example.com/ml/iterkd/teacher:0.1.0"


def test_feedback_network_policy() -> None:
    def egress(variant: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        objs = objects(render(values)) if values is not None else rendered_objects(variant)
        (np,) = [o for o in objs if o["kind"] == "NetworkPolicy"]
        assert np["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "feedback"
        assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        return np["spec"]["egress"]

    def describe(rule: dict[str, Any]) -> tuple[str, frozenset[int]]:
        peer = rule["to"][0]
        what = (peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                or peer.get("podSelector", {}).get("matchLabels", {}).get("k8s-app")
                or peer.get("ipBlock", {}).get("cidr"))
        return what, frozenset(p["port"] for p in rule["ports"])

    assert {describe(r) for r in egress("default")} == {
        ("kube-dns", frozenset({53})), ("minio", frozenset({9000})), ("teacher", frozenset({50051}))}
    assert {describe(r) for r in egress("", {"feedback": {"networkPolicy": {"allowTeacher": False}}})} == {
        ("kube-dns", frozenset({53})), ("minio", frozenset({9000}))}
    prod = egress("production")
    assert {describe(r)[1] for r in prod} == {frozenset({53}), frozenset({443}), frozenset({50051})}
    assert [b["ipBlock"]["cidr"] for r in prod for b in r["to"] if "ipBlock" in b] == ["52.218.0.0/17", "3.5.64.0/21"]
    for rule in egress("default"):
        assert rule.get("to"), "an egress rule without `to` would allow every destination"


def test_checksum_rolls_pods_when_the_config_changes() -> None:
    def checksums(values: dict[str, Any] | None) -> dict[str, str]:
        return {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
                for d in objects(render(values)) if d["kind"] == "Deployment"}

    before = checksums(None)
    assert len(set(before.values())) == 1
    assert checksums(None) == before, "the checksum must be stable across renders"
    after = checksums({"feedback": {"config": {"sandbox": {"timeout_s": 5.0}}}})
    assert set(after) == set(before) and all(after[k] != before[k] for k in before)
    assert checksums({"feedback": {"replicas": 5}}) == before, "a replica count is not config"


BAD_VALUES = [
    ("teacher:\n  replicas: -1\n", r"/teacher/replicas.*minimum"),
    ("feedback:\n  image:\n    tag: latest\n", r"/feedback/image/tag"),
    ("tainer:\n  replicas: 1\n", r"additional properties 'tainer' not allowed"),
    ("trainer:\n  gpu:\n    count: one\n", r"/trainer/gpu/count"),
    ("containerSecurityContext:\n  readOnlyRootFilesystem: false\n", r"/containerSecurityContext/readOnlyRoot"),
    ("externalS3:\n  endpoint: https://s3.example.com\n", r"/externalS3/endpoint"),
    ("teacher:\n  variant: gpu\n", r"/teacher/variant"),
    ("controller:\n  resources:\n    limits:\n      cpu: lots\n", r"/controller/resources/limits/cpu"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_VALUES, ids=[t.split(":")[0] for t, _ in BAD_VALUES])
def test_values_schema_rejects_bad_values_with_a_clear_message(tmp_path: Any, text: str, expected: str) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(text, encoding="utf-8")
    values = load_values(bad)
    with pytest.raises(helm.HelmValuesError) as err:
        render(values)
    assert re.search(expected, str(err.value)), str(err.value)
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(values))


def test_values_schema_accepts_the_shipped_values() -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(chart.values)
        chart.validate_schema(chart.merge_values(load_values(PRODUCTION_VALUES)))


def test_notes_tell_how_to_follow_a_run() -> None:
    notes = rendered("default")["iterkd/templates/NOTES.txt"]
    for cmd in ("kubectl -n iterkd get ikdrun", "kubectl -n iterkd get ikdrun -o wide",
                "kubectl -n iterkd get jobs -l iterkd.io/run=RUN -L iterkd.io/cycle,iterkd.io/stage",
                "kubectl -n iterkd logs deploy/iterkd-controller"):
        assert cmd in notes, cmd
    assert "models.existingClaim is not set" in notes
    assert "models.existingClaim" not in rendered("production")["iterkd/templates/NOTES.txt"]


def test_release_name_flows_into_every_name() -> None:
    objs = objects(render(None, name="prod", namespace="ml"))
    names = {o["metadata"]["name"] for o in objs}
    assert {"prod-iterkd-controller", "prod-iterkd-config", "prod-iterkd-stage"} <= names
    assert {o["metadata"].get("namespace") for o in objs if o["kind"] != "ClusterRole"} == {"ml"}
    cfg = yaml.safe_load(next(o for o in objs if o["kind"] == "ConfigMap")["data"]["config.yaml"])
    assert cfg["questions"]["teacher_target"] == "prod-iterkd-teacher.ml.svc:50051"
