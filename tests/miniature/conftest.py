"""Fixtures for the miniature world's tests: a real feedback server (the sandbox) on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from iterkd.shared.cli import ServeOptions


@pytest.fixture(scope="module")
def feedback_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = pytest.importorskip("iterkd.feedback.server")
    folder = tmp_path_factory.mktemp("feedback")
    cfg = folder / "feedback.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"root": str(folder / "store")},
                                   "feedback": {"sandbox": {"workers": 2}, "static": {"enabled": False}}}))
    srv = server.build_server(ServeOptions(config=str(cfg), port=0))
    srv.start()
    yield srv.target
    srv.stop(0)
