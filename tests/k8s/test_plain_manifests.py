"""k8s/ (the plain manifests for users without Helm) is the chart rendered by `make k8s`: in sync,
valid, and deploying the same objects."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.k8s.render import ROOT, plain_manifests, render
from tests.k8s.validate import KUBE_VERSIONS, validation_errors

K8S = ROOT / "k8s"


def test_k8s_folder_is_in_sync_with_the_chart() -> None:
    files = plain_manifests()
    on_disk = {str(p.relative_to(K8S)): p.read_text(encoding="utf-8") for p in K8S.rglob("*.yaml")}
    assert sorted(on_disk) == sorted(files), "k8s/ has other files than `make k8s` writes"
    stale = [f for f in files if on_disk[f] != files[f]]
    assert stale == [], f"out of sync with helm/iterkd, run `make k8s`: {stale}"


def test_check_mode_reports_drift(tmp_path: pytest.TempPathFactory) -> None:
    out = tmp_path / "k8s"  # type: ignore[operator]
    cmd = [sys.executable, "-m", "tests.k8s.render", "--out", str(out)]
    assert subprocess.run([*cmd, "--check"], cwd=ROOT, capture_output=True).returncode == 1
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True).returncode == 0
    assert subprocess.run([*cmd, "--check"], cwd=ROOT, capture_output=True).returncode == 0
    (out / "rbac.yaml").write_text("# edited by hand\n", encoding="utf-8")
    res = subprocess.run([*cmd, "--check"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 1 and "rbac.yaml: out of sync" in res.stderr


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_plain_manifests_validate(kube: str) -> None:
    docs = []
    for f in sorted(K8S.rglob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text(encoding="utf-8")) if d and d["kind"] != "Kustomization"]
    assert len(docs) > 15
    assert [e for d in docs for e in validation_errors(d, kube)] == []
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert sorted(kustomization["resources"]) == sorted(
        str(p.relative_to(K8S)) for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def test_plain_manifests_need_the_store_secret_not_hold_it() -> None:
    kinds = [d["kind"] for f in K8S.rglob("*.yaml") for d in yaml.safe_load_all(f.read_text(encoding="utf-8")) if d]
    assert "Secret" not in kinds
    assert any("kind: Secret" in t for t in render().values()), "the chart itself creates one by default"
