"""``iterkd serve teacher --config FILE --port 0`` as a real process: it prints where it serves,
answers Info and exits 0 on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from iterkd.shared.rpc import connect
from iterkd.teacher.testing import FakeModelServer
from iterkd.v1 import common_pb2, teacher_pb2_grpc

ITERKD = Path(sys.executable).parent / "iterkd"


def serve(config: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen([str(ITERKD), "serve", "teacher", "--config", str(config), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def first_line(proc: subprocess.Popen[str]) -> dict[str, object]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"server exited: {proc.wait(5)}: {proc.stderr.read() if proc.stderr else ''}")
    return json.loads(line)


@pytest.mark.timeout(60)
def test_serve_teacher_hf(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = tmp_path / "iterkd.yaml"
    config.write_text(f"store:\n  root: store\nteacher:\n  backend: hf\n  model: {tiny_model_dir}\n  device: cpu\n")
    proc = serve(config)
    try:
        target = first_line(proc)["serving"]
        assert isinstance(target, str) and target.startswith("127.0.0.1:")
        channel, stub = connect(target, teacher_pb2_grpc.TeacherServiceStub, timeout=20, wait_ready_s=10)
        info = stub.Info(common_pb2.InfoRequest())
        reply = stub.Generate(common_pb2.GenerateRequest(
            prompts=[common_pb2.Prompt(id="a", text="def f():")],
            params=common_pb2.GenerationParams(n=1, max_new_tokens=4)))
        channel.close()
        assert info.backend == "hf" and info.model_id == str(tiny_model_dir)
        assert reply.completions[0].prompt_id == "a"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert (tmp_path / "store").is_dir()  # the store root is relative to the config file
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(60)
def test_serve_teacher_tgi_with_bad_config_exits_2(tmp_path: Path) -> None:
    with FakeModelServer() as fake:
        config = tmp_path / "iterkd.yaml"
        config.write_text(f"teacher:\n  backend: tgi\n  url: {fake.url}\n  retry:\n    max_attempts: 0\n")
        proc = serve(config)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "teacher.retry.max_attempts" in err
