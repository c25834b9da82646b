"""`iterkd run` with the kubernetes executor creates the run's DistillationRun through the user's
kubeconfig (here: the API server on 127.0.0.1) and prints how to follow it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.controller.k8s.apiserver import FakeApiServer

IKD = str(Path(sys.executable).with_name("iterkd"))


def test_iterkd_run_in_cluster_mode_creates_the_distillationrun(apiserver: FakeApiServer, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": apiserver.url}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "me", "namespace": "iterkd"}}],
        "users": [{"name": "me", "user": {"token": "t"}}]}))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "store": {"backend": "local", "root": str(tmp_path / "store")},
        "controller": {"executor": "kubernetes", "kubernetes": {"namespace": "iterkd"}},
        "run": {"cycles": 3, "pool": {"source": "seed", "limit": 8}}}))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    out = subprocess.run([IKD, "run", "--config", str(cfg), "--run-id", "from-cli"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "from-cli" and "kubectl -n iterkd get ikdrun from-cli" in out.stdout
    obj = apiserver.get("iterkd.io/v1alpha1/distillationruns", "iterkd", "from-cli")
    assert obj is not None and obj["spec"] == {"cycles": 3, "pool": {"source": "seed", "limit": 8}}
    again = subprocess.run([IKD, "run", "--config", str(cfg), "--run-id", "from-cli"], capture_output=True,
                           text=True, env=env, timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr
