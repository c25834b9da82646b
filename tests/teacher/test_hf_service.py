"""The hf backend end to end: a tiny model built in the test session, served by the real gRPC
TeacherService; bad requests; Solve into a local store; GrpcGenerator (the judge interface)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from iterkd.shared.formats import Problem, Sample, read_samples
from iterkd.shared.inference import GrpcGenerator, SamplingParams
from iterkd.shared.sampling import derive_seed
from iterkd.shared.store import LocalStore
from iterkd.teacher.backends import HFBackend
from iterkd.teacher.config import TeacherConfig
from iterkd.teacher.testing import running_teacher
from iterkd.torchkit.hf_generate import HFGenerator
from iterkd.v1 import common_pb2


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    return LocalStore(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def teacher(tiny_model_dir: Path, store: LocalStore) -> Iterator[tuple[Any, Any]]:
    cfg = TeacherConfig(backend="hf", model=str(tiny_model_dir), device="cpu", micro_batch_size=4, max_n=8,
                        max_batch_prompts=8, max_new_tokens=256, context_length=512)
    with running_teacher(cfg, HFBackend(cfg), store) as (server, stub):
        yield server, stub


def gen_request(*texts: str, **params: Any) -> common_pb2.GenerateRequest:
    defaults: dict[str, Any] = {"n": 1, "max_new_tokens": 12, "temperature": 1.0, "seed": 1,
                                "use_chat_template": True}
    return common_pb2.GenerateRequest(
        prompts=[common_pb2.Prompt(id=f"q{j}", text=t) for j, t in enumerate(texts)],
        params=common_pb2.GenerationParams(**{**defaults, **params}),
    )


def texts(reply: common_pb2.GenerateResponse) -> list[str]:
    return [c.text for c in reply.completions]


def test_info_reports_the_model(teacher: tuple[Any, Any], tiny_model_dir: Path) -> None:
    info = teacher[1].Info(common_pb2.InfoRequest())
    assert info.backend == "hf" and info.model_id == str(tiny_model_dir)
    assert info.context_length == 512
    assert info.has_chat_template
    assert (info.max_n, info.max_batch_prompts, info.max_new_tokens) == (8, 8, 256)


def test_samples_differ_and_reruns_repeat(teacher: tuple[Any, Any]) -> None:
    stub = teacher[1]
    req = gen_request("def add(a, b):", "import os\n", n=2, seed=7)
    first = stub.Generate(req)
    assert [(c.prompt_id, c.index) for c in first.completions] == [("q0", 0), ("q0", 1), ("q1", 0), ("q1", 1)]
    assert [c.seed for c in first.completions] == [derive_seed(7, j, i) for j in range(2) for i in range(2)]
    assert texts(first)[0] != texts(first)[1]
    assert all(c.completion_tokens > 0 and c.finish_reason in ("length", "eos") for c in first.completions)
    assert texts(stub.Generate(req)) == texts(first)
    assert texts(stub.Generate(gen_request("def add(a, b):", "import os\n", n=2, seed=8))) != texts(first)


def test_sample_does_not_depend_on_its_batch(teacher: tuple[Any, Any], tiny_model_dir: Path) -> None:
    """Served with micro-batches of 4 (rows of different lengths padded together) or one row at a
    time by a separate engine: every sample is the same."""
    req = gen_request("a = 1", "b = 2 + 3 * 4", "class C:\n    pass", n=2, seed=3, max_new_tokens=10)
    served = texts(teacher[1].Generate(req))
    alone = HFGenerator(tiny_model_dir, device="cpu", micro_batch_size=1)
    params = SamplingParams(n=2, max_new_tokens=10, temperature=1.0, seed=3, use_chat_template=True)
    single = alone.generate([p.text for p in req.prompts], params)
    assert served == [o.text for row in single for o in row]


def test_stop_sequences_cut(teacher: tuple[Any, Any]) -> None:
    stub = teacher[1]
    free = stub.Generate(gen_request("def f():", max_new_tokens=24, temperature=0.0)).completions[0]
    assert len(free.text) > 6
    stop = free.text[4:6]
    cut = stub.Generate(gen_request("def f():", max_new_tokens=24, temperature=0.0, stop=[stop])).completions[0]
    assert cut.finish_reason == "stop"
    assert stop not in cut.text and free.text.startswith(cut.text)
    assert cut.completion_tokens < free.completion_tokens


def test_stream_yields_every_completion(teacher: tuple[Any, Any]) -> None:
    req = gen_request("x = 1", "y = 2", "z = 3", n=3, seed=11)
    streamed = list(teacher[1].GenerateStream(req))
    assert sorted((c.prompt_id, c.index) for c in streamed) == [(f"q{j}", i) for j in range(3) for i in range(3)]
    unary = {(c.prompt_id, c.index): c.text for c in teacher[1].Generate(req).completions}
    assert {(c.prompt_id, c.index): c.text for c in streamed} == unary


@pytest.mark.parametrize(("change", "message"), [
    ({"prompts": []}, "prompts must not be empty"),
    ({"n": 0}, "params.n must be >= 1, got 0"),
    ({"n": 9}, "params.n=9 is over this service's limit max_n=8"),
    ({"temperature": -0.5}, "params.temperature must be >= 0, got -0.5"),
    ({"top_p": 1.5}, "params.top_p must be in (0, 1], got 1.5"),
    ({"max_new_tokens": 0}, "params.max_new_tokens must be > 0, got 0"),
    ({"max_new_tokens": 300}, "params.max_new_tokens=300 is over this service's limit max_new_tokens=256"),
    ({"prompts": ["p"] * 9}, "9 prompts is over this service's limit max_batch_prompts=8"),
    ({"prompts": ["word " * 400], "max_new_tokens": 200}, "over the context length 512"),
    ({"prompts": ["ok", ""]}, "prompts[1].text is empty"),
])
def test_bad_requests_are_invalid_argument(teacher: tuple[Any, Any], change: dict[str, Any], message: str) -> None:
    prompts = change.pop("prompts", ["fine"])
    req = gen_request(*prompts, **change)
    for call in (teacher[1].Generate, lambda r: list(teacher[1].GenerateStream(r))):
        with pytest.raises(grpc.RpcError) as err:
            call(req)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in err.value.details()


def test_solve_writes_samples(teacher: tuple[Any, Any], store: LocalStore) -> None:
    problems = [
        Problem(id="p/1", prompt="Write add(a, b).", entry_point="add", tests="assert add(1, 2) == 3"),
        Problem(id="p/2", prompt="Write neg(x).", entry_point="neg", tests="assert neg(1) == -1"),
    ]
    store.put_jsonl("runs/r1/cycle-001/pool/problems.jsonl", problems)
    reply = teacher[1].Solve(common_pb2.SolveRequest(
        run=common_pb2.RunCycle(run_id="r1", cycle=1),
        problems_uri=store.uri("runs/r1/cycle-001/pool/problems.jsonl"),
        samples_uri=store.uri("runs/r1/cycle-001/teacher-solve/samples.jsonl"),
        params=common_pb2.GenerationParams(n=3, max_new_tokens=16, temperature=0.8, seed=2),
    ))
    assert (reply.problems, reply.samples_written) == (2, 6)
    key = "runs/r1/cycle-001/teacher-solve/samples.jsonl"
    assert reply.samples.uri == store.uri(key) and reply.samples.sha256 == store.info(key).sha256
    rows = store.get_jsonl(key, Sample)
    assert [r.sample_id for r in rows] == ["p/1#0", "p/1#1", "p/1#2", "p/2#0", "p/2#1", "p/2#2"]
    assert all(r.model for r in rows)
    assert read_samples(store.local_path(key)) == rows


def test_solve_bad_template_and_missing_problems(teacher: tuple[Any, Any], store: LocalStore) -> None:
    params = common_pb2.GenerationParams(n=1, max_new_tokens=8)
    with pytest.raises(grpc.RpcError) as err:
        teacher[1].Solve(common_pb2.SolveRequest(problems_uri="runs/x/p.jsonl", samples_uri="runs/x/s.jsonl",
                                                 params=params, prompt_template="{nope}"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "{nope}" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        teacher[1].Solve(common_pb2.SolveRequest(problems_uri="runs/x/p.jsonl", samples_uri="runs/x/s.jsonl",
                                                 params=params))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_grpc_generator_is_the_judge_interface(teacher: tuple[Any, Any]) -> None:
    server, stub = teacher
    gen = GrpcGenerator(server.target, timeout=60)
    try:
        out = gen.generate(["Rate this code: x = 1", "Rate: y = 2"],
                           SamplingParams(n=2, max_new_tokens=8, temperature=0.9, seed=4))
    finally:
        gen.close()
    direct = stub.Generate(gen_request("Rate this code: x = 1", "Rate: y = 2", n=2, max_new_tokens=8,
                                       temperature=0.9, seed=4))
    assert [t for g in out for t in g.texts] == texts(direct)
    assert all(len(g.texts) == 2 and len(g.finish_reasons) == 2 for g in out)


def _wait_until(check: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return bool(check())


def test_cancelled_call_stops_generation(tiny_model_dir: Path) -> None:
    """A caller that goes away stops the work at the next decode step."""
    cfg = TeacherConfig(backend="hf", model=str(tiny_model_dir), device="cpu", micro_batch_size=1)
    backend = HFBackend(cfg)
    steps = {"n": 0}
    real_forward = backend.generator.model.forward

    def counting_forward(*args: Any, **kwargs: Any) -> Any:
        steps["n"] += 1
        time.sleep(0.01)
        return real_forward(*args, **kwargs)

    backend.generator.model.forward = counting_forward
    # 4 prompts x 4 samples, one row per micro-batch, 200 tokens each: >= 3200 forward calls
    # (>= 32 s at 10 ms each) if nothing stops it.
    total = 16 * 200
    with running_teacher(cfg, backend) as (_, stub):
        future = stub.Generate.future(gen_request("a", "b", "c", "d", n=4, max_new_tokens=200), timeout=120)
        # Decoding has really started (prefill plus several decode steps) before the caller leaves.
        assert _wait_until(lambda: steps["n"] >= 10, 60), "generation never started"
        at_cancel = steps["n"]
        future.cancel()
        # Then the work stops: the count stays put for 0.5 s, and it stops long before the end.
        last = {"n": -1, "t": time.monotonic()}

        def quiet() -> bool:
            now = steps["n"]
            if now != last["n"]:
                last.update(n=now, t=time.monotonic())
            return time.monotonic() - last["t"] >= 0.5

        assert _wait_until(quiet, 20), f"generation went on after the cancel ({steps['n']} forward calls)"
        stopped_at = steps["n"]
    assert future.cancelled() or future.exception() is not None
    assert at_cancel >= 10
    assert stopped_at < at_cancel + 100 and stopped_at < total // 4, (at_cancel, stopped_at)


def test_deadline_stops_hf_generation(tiny_model_dir: Path) -> None:
    cfg = TeacherConfig(backend="hf", model=str(tiny_model_dir), device="cpu", micro_batch_size=1)
    backend = HFBackend(cfg)
    finished = threading.Event()
    real = backend.generator.generate_rows

    def watched(*args: Any, **kwargs: Any) -> Any:
        try:
            yield from real(*args, **kwargs)
        finally:
            finished.set()

    backend.generator.generate_rows = watched
    with running_teacher(cfg, backend) as (_, stub):
        with pytest.raises(grpc.RpcError) as err:
            stub.Generate(gen_request(*["p"] * 8, n=8, max_new_tokens=200), timeout=0.5)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert finished.wait(2.0)  # the server stopped too, soon after the deadline
