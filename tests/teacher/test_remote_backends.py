"""The tgi and openai backends against a local server speaking their wire protocols, through the
real gRPC TeacherService: seeds, stop sequences, retries on 429/500/slow/dropped, the budget,
deadlines, and API keys kept out of errors and logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import grpc
import pytest

from iterkd.shared.inference import GrpcGenerator, SamplingParams
from iterkd.shared.sampling import derive_seed
from iterkd.teacher.config import TeacherConfig
from iterkd.teacher.testing import FakeModelServer, running_teacher
from iterkd.v1 import common_pb2

KEY = "sk-test-0123456789abcdef"


@pytest.fixture
def fake() -> Iterator[FakeModelServer]:
    with FakeModelServer(slow_s=3.0) as server:
        yield server


def make_cfg(backend: str, url: str, **retry: float) -> TeacherConfig:
    policy = {"initial_backoff_s": 0.01, "max_backoff_s": 0.05, "request_timeout_s": 0.5, "total_budget_s": 5.0,
              **retry}
    return TeacherConfig(backend=backend, url=url, retry=policy, max_in_flight=8)


def request(*texts: str, **params: object) -> common_pb2.GenerateRequest:
    defaults: dict[str, object] = {"n": 1, "max_new_tokens": 16, "temperature": 0.7, "seed": 5}
    return common_pb2.GenerateRequest(
        prompts=[common_pb2.Prompt(id=f"p{j}", text=t) for j, t in enumerate(texts)],
        params=common_pb2.GenerationParams(**{**defaults, **params}),
    )


BACKENDS = [("tgi", False), ("tgi", True), ("openai", False), ("openai", True)]


@pytest.mark.parametrize(("backend", "chat"), BACKENDS)
def test_generate_sends_one_seed_per_sample(fake: FakeModelServer, backend: str, chat: bool) -> None:
    with running_teacher(make_cfg(backend, fake.url)) as (_, stub):
        reply = stub.Generate(request("alpha", "beta", n=3, stop=["STOP"], use_chat_template=chat))
    assert [(c.prompt_id, c.index) for c in reply.completions] == [(f"p{j}", i) for j in range(2) for i in range(3)]
    for c in reply.completions:
        j = int(c.prompt_id[1:])
        assert c.seed == derive_seed(5, j, c.index)
        assert c.text == f"[seed={c.seed} t=0.7] {['alpha', 'beta'][j]} "  # stop sequence cut
        assert c.finish_reason == "stop"
    assert len({c.seed for c in reply.completions}) == 6
    assert reply.model == "fake/teacher"
    paths = {r["path"] for r in fake.requests}
    if backend == "tgi":
        assert paths == ({"/v1/chat/completions"} if chat else {"/"})
    else:
        assert paths == ({"/v1/chat/completions"} if chat else {"/v1/completions"})


@pytest.mark.parametrize("backend", ["tgi", "openai"])
def test_greedy_request_shape(fake: FakeModelServer, backend: str) -> None:
    with running_teacher(make_cfg(backend, fake.url)) as (_, stub):
        stub.Generate(request("x", temperature=0.0, top_p=0.9, max_new_tokens=7, use_chat_template=False))
    body = fake.requests[-1]["body"]
    if backend == "tgi":
        params = body["parameters"]
        assert params["do_sample"] is False and "temperature" not in params and "top_p" not in params
        assert params["max_new_tokens"] == 7 and params["details"] is True
    else:
        assert body["temperature"] == 0.0 and body["max_tokens"] == 7 and body["top_p"] == pytest.approx(0.9)


@pytest.mark.parametrize("backend", ["tgi", "openai"])
@pytest.mark.parametrize("fault", ["429", "500", "503", "drop", "slow"])
def test_transient_faults_are_retried(fake: FakeModelServer, backend: str, fault: str) -> None:
    fake.faults.extend([fault, fault])
    with running_teacher(make_cfg(backend, fake.url)) as (_, stub):
        reply = stub.Generate(request("hello", use_chat_template=False))
    assert reply.completions[0].text.endswith("hello STOP tail")
    assert len(fake.requests) == 3  # two failures, then success


@pytest.mark.parametrize("backend", ["tgi", "openai"])
def test_retry_after_is_honoured(fake: FakeModelServer, backend: str) -> None:
    fake.faults.append("429:0.6")
    with running_teacher(make_cfg(backend, fake.url)) as (_, stub):
        stub.Generate(request("hello", use_chat_template=False))
    first, second = fake.requests[0]["t"], fake.requests[1]["t"]
    assert second - first >= 0.6


@pytest.mark.parametrize("backend", ["tgi", "openai"])
def test_persistent_errors_fail_within_budget(fake: FakeModelServer, backend: str) -> None:
    fake.fault_all = "500"
    cfg = make_cfg(backend, fake.url, max_backoff_s=0.1, total_budget_s=1.0)
    cfg.retry.max_attempts = 100
    with running_teacher(cfg) as (_, stub):
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            stub.Generate(request("hello", use_chat_template=False), timeout=10)
        elapsed = time.monotonic() - t0
    assert err.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
    assert "HTTP 500" in err.value.details()
    assert elapsed < 3.0  # budget 1 s; the gRPC client's own UNAVAILABLE retries are not used here
    assert len(fake.requests) >= 3


@pytest.mark.parametrize("backend", ["tgi", "openai"])
def test_attempts_exhausted_is_unavailable(fake: FakeModelServer, backend: str) -> None:
    fake.fault_all = "drop"
    cfg = make_cfg(backend, fake.url)
    cfg.retry.max_attempts = 3
    with running_teacher(cfg) as (_, stub), pytest.raises(grpc.RpcError) as err:
        stub.Generate(request("hello", use_chat_template=False), wait_for_ready=False)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "connection error" in err.value.details()


@pytest.mark.parametrize("backend", ["tgi", "openai"])
def test_caller_deadline_is_passed_on(fake: FakeModelServer, backend: str) -> None:
    fake.fault_all = "slow"
    cfg = make_cfg(backend, fake.url, request_timeout_s=5.0, total_budget_s=30.0)
    with running_teacher(cfg) as (_, stub):
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            stub.Generate(request("hello", use_chat_template=False), timeout=0.8)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The backend saw the deadline: its request timed out and no retry was started after it.
        time.sleep(1.0)
        assert len(fake.requests) == 1
    assert time.monotonic() - t0 < 3.0


@pytest.mark.parametrize("backend", ["tgi", "openai"])
def test_backend_validation_error_is_invalid_argument(fake: FakeModelServer, backend: str) -> None:
    fake.faults.append("422")
    with running_teacher(make_cfg(backend, fake.url)) as (_, stub), pytest.raises(grpc.RpcError) as err:
        stub.Generate(request("hello", use_chat_template=False))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "HTTP 422" in err.value.details()
    assert len(fake.requests) == 1  # not retried


@pytest.mark.parametrize("backend", ["tgi", "openai"])
def test_api_key_from_env_is_sent_and_never_shown(backend: str, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("TEST_TEACHER_KEY", KEY)
    with FakeModelServer(api_key=KEY) as good:
        cfg = make_cfg(backend, good.url)
        cfg.api_key_env = "TEST_TEACHER_KEY"
        with running_teacher(cfg) as (_, stub):
            stub.Generate(request("hi", use_chat_template=False))
        assert good.requests[-1]["headers"]["authorization"] == f"Bearer {KEY}"
    # A server that rejects the key and echoes it back: the key must not leak into errors or logs.
    with FakeModelServer(api_key="another-key") as bad:
        cfg = make_cfg(backend, bad.url)
        cfg.api_key_env = "TEST_TEACHER_KEY"
        cfg.model = "some-model"  # so the openai backend goes straight to the completion request
        iterkd_log = logging.getLogger("iterkd")
        iterkd_log.addHandler(caplog.handler)
        try:
            with caplog.at_level(logging.DEBUG), running_teacher(cfg) as (server, stub):
                stub.Info(common_pb2.InfoRequest())
                with pytest.raises(grpc.RpcError) as err:
                    stub.Generate(request("hi", use_chat_template=False), wait_for_ready=False)
                backend_repr = repr(server.services[0].servicer.backend)
        finally:
            iterkd_log.removeHandler(caplog.handler)
        assert bad.requests[-1]["headers"]["authorization"] == f"Bearer {KEY}"  # the server did see it
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "HTTP 401" in err.value.details()
    assert KEY not in err.value.details()
    assert "***" in err.value.details()  # the echoed key was scrubbed
    assert KEY not in caplog.text
    assert KEY not in backend_repr


def test_api_key_from_mounted_file(fake: FakeModelServer, tmp_path) -> None:
    fake.api_key = KEY
    (tmp_path / "key").write_text(KEY + "\n")
    cfg = make_cfg("openai", fake.url)
    cfg.api_key_file = str(tmp_path / "key")
    with running_teacher(cfg) as (_, stub):
        stub.Generate(request("hi"))
    assert fake.requests[-1]["headers"]["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("backend", ["tgi", "openai"])
def test_info_asks_the_server(fake: FakeModelServer, backend: str) -> None:
    fake.context_length = 1234
    with running_teacher(make_cfg(backend, fake.url)) as (_, stub):
        info = stub.Info(common_pb2.InfoRequest())
        assert (info.model_id, info.backend, info.context_length) == ("fake/teacher", backend, 1234)
        with pytest.raises(grpc.RpcError) as err:
            stub.Generate(request("x", max_new_tokens=1234))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "context length 1234" in err.value.details()


def test_grpc_generator_over_remote_backend(fake: FakeModelServer) -> None:
    with running_teacher(make_cfg("tgi", fake.url)) as (server, _):
        gen = GrpcGenerator(server.target, timeout=10)
        try:
            out = gen.generate(["a", "b"], SamplingParams(n=2, temperature=0.5, seed=9, stop=("STOP",)))
        finally:
            gen.close()
    assert [len(g.texts) for g in out] == [2, 2]
    assert out[1].texts[1] == f"[seed={derive_seed(9, 1, 1)} t=0.5] b "
