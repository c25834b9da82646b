"""FeedbackService end to end: a real gRPC server on 127.0.0.1, a LocalStore, the real sandbox and
pylint, and a local server speaking TGI's /generate for the judge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest

from iterkd.feedback.config import FeedbackConfig, FeedbackFileConfig
from iterkd.feedback.server import build_servicer
from iterkd.shared.config import ConfigError, ServerConfig, load_config, parse_config
from iterkd.shared.formats import Feedback, JudgeResult, Problem, Sample, StaticResult, Verdict, load_humaneval
from iterkd.shared.rpc import Server, Service, connect, service_name
from iterkd.shared.stages import MANIFEST
from iterkd.shared.store import LocalStore
from iterkd.v1 import feedback_pb2, feedback_pb2_grpc
from tests.feedback.tgi_fake import FakeTgi, text

VENV_BIN = Path(sys.executable).parent
BROKEN = "    return None\n"


class RecordingStore(LocalStore):
    """A LocalStore that remembers the order of its writes."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.puts: list[str] = []

    def put_bytes(self, key: str, data: bytes) -> Any:
        self.puts.append(key)
        return super().put_bytes(key, data)


def _judge_reply(body: dict) -> tuple[int, object]:
    # The broken answers are the ones whose body is just "return None".
    return text("Does nothing useful.\nScore: 1/6" if "    return None" in body["inputs"] else "Solid.\nScore: 6/6")


@pytest.fixture(scope="module")
def tgi() -> Iterator[FakeTgi]:
    with FakeTgi(_judge_reply) as server:
        yield server


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tgi: FakeTgi) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("store")
    store = RecordingStore(root)
    cfg = parse_config({
        "sandbox": {"workers": 2, "timeout_s": 5.0, "max_timeout_s": 10.0, "max_batch": 4},
        "static": {"batch_size": 16, "max_codes": 3},
        "judge": {"enabled": True, "endpoint": {"kind": "tgi", "url": tgi.url, "timeout_s": 10}},
        "weights": {"pass_rate": 0.6, "static": 0.1, "judge": 0.3},
    }, FeedbackConfig)
    servicer = build_servicer(cfg, store)
    server = Server([Service(feedback_pb2_grpc.add_FeedbackServiceServicer_to_server, servicer,
                             service_name(feedback_pb2, "FeedbackService"))], ServerConfig(port=0))
    server.start()
    channel, stub = connect(server.target, feedback_pb2_grpc.FeedbackServiceStub, timeout=120)
    problems = {p.id: p for p in load_humaneval()[:3]}
    yield {"store": store, "stub": stub, "problems": problems, "servicer": servicer, "tgi": tgi}
    channel.close()
    server.stop(0)


def _write_inputs(store: LocalStore, problems: dict[str, Problem], prefix: str) -> tuple[str, str]:
    p0, p1, p2 = problems.values()
    samples = [
        Sample(problem_id=p0.id, sample_id="s0", completion=p0.canonical_solution or ""),
        Sample(problem_id=p0.id, sample_id="s1", completion=BROKEN),
        Sample(problem_id=p1.id, sample_id="s2", completion=p1.canonical_solution or ""),
        Sample(problem_id=p1.id, sample_id="s3", completion=p1.canonical_solution or ""),
        Sample(problem_id=p2.id, sample_id="s4", completion=BROKEN),
        Sample(problem_id=p2.id, sample_id="s5", completion=BROKEN),
    ]
    pi = store.put_jsonl(f"{prefix}/problems.jsonl", problems.values())
    si = store.put_jsonl(f"{prefix}/samples.jsonl", samples)
    return pi.uri, si.uri


def test_evaluate_writes_every_view_and_is_idempotent(env: dict[str, Any]) -> None:
    store: RecordingStore = env["store"]
    problems_uri, samples_uri = _write_inputs(store, env["problems"], "inputs/a")
    out_prefix = "runs/r1/cycle-001/feedback"
    request = feedback_pb2.EvaluateRequest(
        problems_uri=problems_uri, samples_uri=samples_uri, output_prefix=store.uri(out_prefix),
        run_static=True, run_judge=True, k=[1, 2])
    request.run.run_id, request.run.cycle = "r1", 1
    before = len(store.puts)
    reply = env["stub"].Evaluate(request)

    verdicts = store.get_jsonl(store.resolve(reply.verdicts.uri), Verdict)
    assert [(v.sample_id, v.passed) for v in verdicts] == [
        ("s0", True), ("s1", False), ("s2", True), ("s3", True), ("s4", False), ("s5", False)]
    assert verdicts[0].result == "passed" and verdicts[1].result.startswith("failed")
    static = store.get_jsonl(store.resolve(reply.static.uri), StaticResult)
    assert [s.sample_id for s in static] == ["s0", "s1", "s2", "s3", "s4", "s5"]
    assert all(0 <= s.pylint_score <= 10 for s in static)
    judge = store.get_jsonl(store.resolve(reply.judge.uri), JudgeResult)
    assert [j.score for j in judge] == [6.0, 1.0, 6.0, 6.0, 1.0, 1.0]
    feedback = store.get_jsonl(store.resolve(reply.feedback.uri), Feedback)
    ids = list(env["problems"])
    assert [f.problem_id for f in feedback] == ids
    assert [f.pass_rate for f in feedback] == [0.5, 1.0, 0.0]
    f0 = feedback[0]
    s_mean = (static[0].pylint_score + static[1].pylint_score) / 20
    assert f0.static == pytest.approx(s_mean) and f0.judge == pytest.approx(7 / 12)
    assert f0.quality == pytest.approx(0.6 * 0.5 + 0.1 * s_mean + 0.3 * 7 / 12)

    assert reply.metrics["pass@1"] == pytest.approx(0.5)
    assert reply.metrics["pass@2"] == pytest.approx(2 / 3)
    assert reply.metrics["samples"] == 6 and reply.metrics["problems"] == 3
    assert reply.metrics["judge_mean"] == pytest.approx(3.5)
    assert reply.duration_s > 0
    written = store.puts[before:]
    assert written[-1] == f"{out_prefix}/{MANIFEST}"  # the manifest last
    assert sorted(written[:-1]) == sorted(f"{out_prefix}/{n}" for n in (
        "verdicts.jsonl", "static.jsonl", "judge.jsonl", "feedback.jsonl"))
    manifest = store.get_json(f"{out_prefix}/{MANIFEST}")
    assert manifest["stage"] == "feedback" and manifest["run_id"] == "r1" and manifest["cycle"] == 1
    assert manifest["outputs"]["verdicts.jsonl"]["sha256"] == reply.verdicts.sha256

    # Asked again: the stored result, nothing recomputed or rewritten, the judge not called.
    judge_calls = len(env["tgi"].requests)
    n_puts = len(store.puts)
    again = env["stub"].Evaluate(request)
    assert again.cached and not reply.cached
    again.cached = False
    assert again == reply
    assert len(store.puts) == n_puts and len(env["tgi"].requests) == judge_calls

    # A different request for the same prefix is refused, not answered with the stored result.
    other = feedback_pb2.EvaluateRequest()
    other.CopyFrom(request)
    other.run_judge = False
    with pytest.raises(grpc.RpcError) as err:
        env["stub"].Evaluate(other)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "run_judge" in err.value.details()


def test_evaluate_execution_only(env: dict[str, Any]) -> None:
    store: RecordingStore = env["store"]
    problems_uri, samples_uri = _write_inputs(store, env["problems"], "inputs/b")
    reply = env["stub"].Evaluate(feedback_pb2.EvaluateRequest(
        problems_uri=problems_uri, samples_uri=samples_uri, output_prefix="evals/plain", timeout_s=4))
    assert reply.static.uri == "" and reply.judge.uri == ""
    assert set(store.list("evals/plain")) == {"evals/plain/verdicts.jsonl", "evals/plain/feedback.jsonl",
                                              f"evals/plain/{MANIFEST}"}
    assert reply.metrics["pass@1"] == pytest.approx(0.5)
    assert "pass@2" not in reply.metrics  # k defaults to [1]
    feedback = store.get_jsonl("evals/plain/feedback.jsonl", Feedback)
    assert [f.quality for f in feedback] == [0.5, 1.0, 0.0]  # only the execution view: quality = pass rate


def test_evaluate_bad_requests(env: dict[str, Any]) -> None:
    store: RecordingStore = env["store"]
    stub = env["stub"]
    problems_uri, _ = _write_inputs(store, env["problems"], "inputs/c")
    bad_samples = store.put_jsonl("inputs/c/bad-samples.jsonl", [
        Sample(problem_id="HumanEval/0", sample_id="x0", completion=""),
        Sample(problem_id="Nope/1", sample_id="x1", completion=""),
        Sample(problem_id="Nope/2", sample_id="x2", completion=""),
    ]).uri

    def code_and_details(**kwargs: Any) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as err:
            stub.Evaluate(feedback_pb2.EvaluateRequest(**kwargs))
        return err.value.code(), err.value.details()

    code, details = code_and_details(problems_uri=problems_uri, samples_uri=bad_samples, output_prefix="evals/bad")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'Nope/1', 'Nope/2'" in details
    assert store.list("evals/bad") == []  # nothing half-written
    code, details = code_and_details(problems_uri=problems_uri, samples_uri="", output_prefix="evals/bad")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "samples_uri is empty" in details
    code, details = code_and_details(problems_uri=problems_uri, samples_uri=bad_samples, output_prefix="x",
                                     timeout_s=11)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "above the configured maximum 10" in details
    code, details = code_and_details(problems_uri="file:///elsewhere/p.jsonl", samples_uri=bad_samples,
                                     output_prefix="x")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "outside the local store" in details
    code, details = code_and_details(problems_uri="inputs/none.jsonl", samples_uri=bad_samples, output_prefix="x")
    assert code == grpc.StatusCode.NOT_FOUND


def test_execute_program_and_problem_json(env: dict[str, Any]) -> None:
    stub = env["stub"]
    ok = stub.Execute(feedback_pb2.ExecuteRequest(program="assert sum([1, 2]) == 3\n"))
    assert ok.passed and ok.result == "passed"
    fail = stub.Execute(feedback_pb2.ExecuteRequest(program="print('hi')\nassert 1 == 2\n"))
    assert not fail.passed and fail.result.startswith("failed") and "hi" in fail.stdout
    problem = next(iter(env["problems"].values()))
    pj = problem.model_dump_json()
    assert stub.Execute(feedback_pb2.ExecuteRequest(problem_json=pj, completion=problem.canonical_solution)).passed
    assert not stub.Execute(feedback_pb2.ExecuteRequest(problem_json=pj, completion=BROKEN)).passed
    # a HumanEval record as it is published
    he = json.dumps({"task_id": problem.id, "prompt": problem.prompt, "test": problem.tests,
                     "entry_point": problem.entry_point})
    assert stub.Execute(feedback_pb2.ExecuteRequest(problem_json=he, completion=problem.canonical_solution)).passed
    slow = stub.Execute(feedback_pb2.ExecuteRequest(program="while True:\n    pass\n", timeout_s=0.5))
    assert not slow.passed and slow.result == "timed out" and slow.duration_s < 5


def test_execute_batch_in_order(env: dict[str, Any]) -> None:
    items = [feedback_pb2.ExecuteRequest(program=f"assert {i} % 2 == 0\n", timeout_s=2 if i % 2 else 0)
             for i in range(4)]
    reply = env["stub"].ExecuteBatch(feedback_pb2.ExecuteBatchRequest(items=items))
    assert [r.passed for r in reply.results] == [True, False, True, False]


@pytest.mark.parametrize(("request_", "message"), [
    (feedback_pb2.ExecuteRequest(), "empty program"),
    (feedback_pb2.ExecuteRequest(program="x=1", problem_json="{}"), "not both"),
    (feedback_pb2.ExecuteRequest(problem_json="{oops", completion="x"), "problem_json: invalid JSON"),
    (feedback_pb2.ExecuteRequest(problem_json='{"id": "p"}', completion="x"), 'missing "prompt"'),
    (feedback_pb2.ExecuteRequest(problem_json="[1]", completion="x"), "expected a JSON object"),
    (feedback_pb2.ExecuteRequest(program="x=1", timeout_s=-1), "timeout_s must be >= 0"),
    (feedback_pb2.ExecuteRequest(program="x=1", timeout_s=60), "above the configured maximum 10"),
])
def test_execute_bad_requests(env: dict[str, Any], request_: Any, message: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        env["stub"].Execute(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


def test_execute_batch_bad_requests(env: dict[str, Any]) -> None:
    stub = env["stub"]
    for items, message in [
        ([], "items is empty"),
        ([feedback_pb2.ExecuteRequest(program="x=1")] * 5, "too many items: 5, the limit is 4"),
        ([feedback_pb2.ExecuteRequest(program="x=1"), feedback_pb2.ExecuteRequest()], "items[1]: empty program"),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            stub.ExecuteBatch(feedback_pb2.ExecuteBatchRequest(items=items))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in err.value.details()


def test_static_and_judge_direct_calls(env: dict[str, Any]) -> None:
    stub = env["stub"]
    reply = stub.Static(feedback_pb2.StaticRequest(codes=[
        'def f(x):\n    """Double."""\n    return 2 * x\n', "import os\n", "def f(:\n"]))
    scores = [r.pylint_score for r in reply.results]
    assert scores == [10.0, 0.0, 0.0]
    assert [m.symbol for m in reply.results[1].messages] == ["unused-import"]
    assert reply.results[2].messages[0].symbol == "syntax-error" and reply.results[2].messages[0].line == 1
    with pytest.raises(grpc.RpcError) as err:
        stub.Static(feedback_pb2.StaticRequest(codes=["x = 1\n"] * 4))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "too many codes" in err.value.details()

    good = stub.Judge(feedback_pb2.JudgeRequest(problem="Double x.", answer="def f(x):\n    return 2 * x\n"))
    assert good.parsed and good.score == 6.0 and good.max_score == 6.0 and "Solid." in good.rationale
    custom = stub.Judge(feedback_pb2.JudgeRequest(problem="Double x.", answer="def f(x):\n    return None\n",
                                                  rubric="Correct (5 points)\nStyle (5 points)"))
    assert custom.max_score == 10.0 and custom.score == pytest.approx(1 / 6 * 10)
    with pytest.raises(grpc.RpcError) as err:
        stub.Judge(feedback_pb2.JudgeRequest(problem="", answer="x"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "problem is empty" in err.value.details()


def test_judge_endpoint_down_is_unavailable(tmp_path: Path) -> None:
    cfg = parse_config({"sandbox": {"workers": 1},
                        "judge": {"enabled": True, "endpoint": {"kind": "tgi", "url": "http://127.0.0.1:9",
                                                                "retries": 0, "timeout_s": 2}},
                        "static": {"enabled": False}}, FeedbackConfig)
    servicer = build_servicer(cfg, LocalStore(tmp_path))
    server = Server([Service(feedback_pb2_grpc.add_FeedbackServiceServicer_to_server, servicer,
                             service_name(feedback_pb2, "FeedbackService"))], ServerConfig(port=0))
    with server:
        ch, stub = connect(server.target, feedback_pb2_grpc.FeedbackServiceStub, timeout=30)
        with pytest.raises(grpc.RpcError) as err:
            stub.Judge(feedback_pb2.JudgeRequest(problem="p", answer="a"))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # the shared TGI client (the teacher's too) names the endpoint and the last error
        assert "tgi backend at http://127.0.0.1:9: failed 1 time(s)" in err.value.details()
        assert "connection error" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            stub.Static(feedback_pb2.StaticRequest(codes=["x = 1\n"]))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "static" in err.value.details()
        ch.close()


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("feedback:\n  judge:\n    endpoint: {kind: tgi, url: 'ftp://x'}\n  weights: {judge: -1}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, FeedbackFileConfig)
    assert "feedback.judge.endpoint" in str(err.value) and "feedback.weights.judge" in str(err.value)
    assert FeedbackFileConfig().feedback.server.port == 50053


def test_serve_subprocess_executes_and_stops_cleanly(tmp_path: Path) -> None:
    cfg = tmp_path / "feedback.yaml"
    cfg.write_text("store: {root: store}\nlogging: {level: WARNING}\nfeedback:\n  sandbox: {workers: 1}\n")
    proc = subprocess.Popen([str(VENV_BIN / "iterkd"), "serve", "feedback", "--config", str(cfg), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line, proc.stderr.read() if proc.stderr else ""
        target = json.loads(line)["serving"]
        assert target.startswith("127.0.0.1:")
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert children  # the sandbox worker
        ch, stub = connect(target, feedback_pb2_grpc.FeedbackServiceStub, timeout=30, wait_ready_s=10)
        assert stub.Execute(feedback_pb2.ExecuteRequest(program="assert 2 + 2 == 4\n")).passed
        ch.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(psutil.pid_exists(p) and _running(p) for p in children):
            time.sleep(0.05)
        assert not [p for p in children if psutil.pid_exists(p) and _running(p)]
        assert (tmp_path / "store").is_dir()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
