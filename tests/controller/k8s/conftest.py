"""Fixtures: the API server on 127.0.0.1, a local store, a Job configuration with short timers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from iterkd.controller.config import KubernetesConfig
from iterkd.shared.store import LocalStore
from tests.controller.k8s.apiserver import FakeApiServer

NS = "iterkd"


@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def kcfg() -> KubernetesConfig:
    return KubernetesConfig(namespace=NS, store_secret="iterkd-store", service_account="iterkd-stage",
                            pending_deadline_s=600, ttl_after_success_s=300, ttl_after_failure_s=86400,
                            watch_timeout_s=30, labels={"app.kubernetes.io/instance": "iterkd"})
