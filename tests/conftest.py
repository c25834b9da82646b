"""Shared pytest fixtures for the IterKD test suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests never touch the network: make huggingface_hub / transformers fail fast instead of downloading.
# Set at import time, before any test module imports transformers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny "small"-preset Llama model + tokenizer (seed 0), built once per test session.

    Loadable offline with ``AutoTokenizer.from_pretrained`` / ``AutoModelForCausalLM.from_pretrained``.
    Treat it as read-only: it is shared by every test that uses it.
    """
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from iterkd.teacher.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "small", preset="small", seed=0)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on an ephemeral loopback port: ``host:port``."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:  # credentials the S3 backend reads
    monkeypatch.setenv("MINIO_ACCESS_KEY", "testing-access")
    monkeypatch.setenv("MINIO_SECRET_KEY", "testing-secret")


@pytest.fixture(scope="module")
def feedback_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real feedback server (the sandbox, 2 workers, no static view) on loopback: its ``host:port``."""
    server = pytest.importorskip("iterkd.feedback.server")
    import yaml

    from iterkd.shared.cli import ServeOptions

    folder = tmp_path_factory.mktemp("feedback")
    cfg = folder / "feedback.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"root": str(folder / "store")},
                                   "feedback": {"sandbox": {"workers": 2}, "static": {"enabled": False}}}))
    srv = server.build_server(ServeOptions(config=str(cfg), port=0))
    srv.start()
    yield srv.target
    srv.stop(0)
