"""Problems in every language through the feedback service (Evaluate, Execute, ExecuteBatch), the
question service's validation and ``iterkd eval``: real gRPC on 127.0.0.1, the real sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from iterkd.feedback.config import FeedbackConfig, SandboxConfig
from iterkd.feedback.server import build_servicer, sandbox_limits
from iterkd.questions.validate import GrpcExecutor, job
from iterkd.shared.config import ServerConfig, parse_config
from iterkd.shared.formats import Problem, Sample, StaticResult, Verdict
from iterkd.shared.rpc import Server, Service, connect, service_name
from iterkd.shared.store import LocalStore
from iterkd.v1 import feedback_pb2, feedback_pb2_grpc

from .test_languages import TOOLCHAINS

SCRIPT = Path(sys.executable).with_name("iterkd")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "iterkd.feedback.cli"]

# One small problem per language: (answer, tests) in the MBPP style (the answer is the whole program).
CASES: dict[str, tuple[str, str, str]] = {  # language -> (canonical, broken, tests)
    "python": ("def twice(x):\n    return 2 * x\n", "def twice(x):\n    return x\n", "assert twice(3) == 6\n"),
    "c": ("int twice(int x) { return 2 * x; }\n", "int twice(int x) { return x; }\n",
          "int main() {\n    assert(twice(3) == 6);\n    assert(twice(-2) == -4);\n}\n"),
    "cpp": ("#include <vector>\nint twice(int x) { return 2 * x; }\n", "int twice(int x) { return x; }\n",
            "int main() {\n    assert(twice(3) == 6);\n}\n"),
    "java": ("class Solution {\n    static int twice(int x) { return 2 * x; }\n}\n",
             "class Solution {\n    static int twice(int x) { return x; }\n}\n",
             "public class Main {\n    public static void main(String[] a) {\n"
             "        if (Solution.twice(3) != 6) throw new AssertionError(\"twice(3)\");\n    }\n}\n"),
    "javascript": ("function twice(x) { return 2 * x; }\n", "function twice(x) { return x; }\n",
                   "const assert = require('assert');\nassert.strictEqual(twice(3), 6);\n"),
    "go": ("package main\n\nfunc Twice(x int) int { return 2 * x }\n",
           "package main\n\nfunc Twice(x int) int { return x }\n",
           "func main() {\n\tif Twice(3) != 6 {\n\t\tpanic(\"Twice(3) != 6\")\n\t}\n}\n"),
}
LANGS = [lang for lang in CASES if lang == "python" or lang in TOOLCHAINS]
MISSING = sorted(set(CASES) - set(LANGS))


def problem(lang: str) -> Problem:
    return Problem(id=f"twice/{lang}", prompt=f"Write twice(x) in {lang}.", entry_point="twice",
                   tests=CASES[lang][2], language=lang, canonical_solution=CASES[lang][0])


def test_every_toolchain_here() -> None:
    if MISSING:
        pytest.skip(f"no toolchain for {', '.join(MISSING)} on this machine")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    store = LocalStore(tmp_path_factory.mktemp("store"))
    cfg = parse_config({"sandbox": {"workers": 2, "timeout_s": 10.0, "max_timeout_s": 20.0, "max_program_kb": 4},
                        "static": {"batch_size": 16}}, FeedbackConfig)
    servicer = build_servicer(cfg, store)
    server = Server([Service(feedback_pb2_grpc.add_FeedbackServiceServicer_to_server, servicer,
                             service_name(feedback_pb2, "FeedbackService"))], ServerConfig(port=0))
    server.start()
    channel, stub = connect(server.target, feedback_pb2_grpc.FeedbackServiceStub, timeout=120)
    yield {"store": store, "stub": stub, "target": server.target}
    channel.close()
    server.stop(0)


def test_execute_and_batch_in_every_language(env: dict[str, Any]) -> None:
    stub = env["stub"]
    items = []
    for lang in LANGS:
        pj = problem(lang).model_dump_json()
        items += [feedback_pb2.ExecuteRequest(problem_json=pj, completion=CASES[lang][0]),
                  feedback_pb2.ExecuteRequest(problem_json=pj, completion=CASES[lang][1]),
                  feedback_pb2.ExecuteRequest(problem_json=pj, completion="this is not code {")]
    reply = stub.ExecuteBatch(feedback_pb2.ExecuteBatchRequest(items=items))
    got = {lang: [r.passed for r in reply.results[3 * i:3 * i + 3]] for i, lang in enumerate(LANGS)}
    assert got == {lang: [True, False, False] for lang in LANGS}
    reasons = {lang: reply.results[3 * i + 2].result for i, lang in enumerate(LANGS)}
    for lang in set(LANGS) & {"c", "cpp", "java", "go"}:
        assert reasons[lang].startswith("failed: compile error"), (lang, reasons[lang])
    # one call, a HumanEval-X-style record (task_id, prompt, test) that carries its language
    lang = "c" if "c" in LANGS else "python"
    record = json.dumps({"task_id": "C/0", "prompt": "", "test": CASES[lang][2], "entry_point": "twice",
                         "language": lang})
    assert stub.Execute(feedback_pb2.ExecuteRequest(problem_json=record, completion=CASES[lang][0])).passed


def test_execute_refuses_unknown_language_and_counts_every_file(env: dict[str, Any]) -> None:
    stub = env["stub"]
    bad = problem("c").model_copy(update={"language": "cobol"}).model_dump_json()
    with pytest.raises(grpc.RpcError) as err:
        stub.Execute(feedback_pb2.ExecuteRequest(problem_json=bad, completion="x"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "cobol" in err.value.details()
    # max_program_kb is 4: a 3.7 KB answer plus the harness's files is above it (the harness counts)
    big = CASES["javascript"][0] + "// " + "x" * 3700 + "\n"
    with pytest.raises(grpc.RpcError) as err:
        stub.Execute(feedback_pb2.ExecuteRequest(problem_json=problem("javascript").model_dump_json(),
                                                 completion=big))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "above the limit of 4096" in err.value.details()


def test_evaluate_mixed_languages(env: dict[str, Any]) -> None:
    store: LocalStore = env["store"]
    problems = [problem(lang) for lang in LANGS]
    samples = [Sample(problem_id=p.id, sample_id=f"{p.id}#{i}", completion=CASES[p.language][i])
               for p in problems for i in (0, 1)]
    pu = store.put_jsonl("in/problems.jsonl", problems).uri
    su = store.put_jsonl("in/samples.jsonl", samples).uri
    reply = env["stub"].Evaluate(feedback_pb2.EvaluateRequest(problems_uri=pu, samples_uri=su,
                                                              output_prefix="evals/multi", k=[1]))
    verdicts = store.get_jsonl("evals/multi/verdicts.jsonl", Verdict)
    assert [v.passed for v in verdicts] == [True, False] * len(problems)
    assert reply.metrics["pass@1"] == pytest.approx(0.5)


def test_evaluate_static_view_in_every_language(env: dict[str, Any]) -> None:
    store: LocalStore = env["store"]
    problems = [problem(lang) for lang in LANGS]
    warned = {"python": "def twice(x):\n    unused = 1\n    return 2 * x\n",
              "c": "int twice(int x) {\n    int unused;\n    return 2 * x;\n}\n",
              "cpp": "int twice(int x) {\n    int unused;\n    return 2 * x;\n}\n",
              "java": "class Solution {\n    static int twice(int x) {\n"
                      "        java.util.List l = new java.util.ArrayList<String>();\n"
                      "        return 2 * x + l.size();\n    }\n}\n",
              "javascript": "function twice(x) {\n  return 2 * x;\n}\n",
              "go": "package main\n\nimport \"fmt\"\n\nfunc Twice(x int) int {\n\t_ = fmt.Sprintf(\"%d\", \"x\")\n"
                    "\treturn 2 * x\n}\n"}
    samples = [Sample(problem_id=p.id, sample_id=f"{p.id}#w", completion=warned[p.language]) for p in problems]
    pu = store.put_jsonl("in/static-problems.jsonl", problems).uri
    su = store.put_jsonl("in/static-samples.jsonl", samples).uri
    env["stub"].Evaluate(feedback_pb2.EvaluateRequest(problems_uri=pu, samples_uri=su, output_prefix="evals/static",
                                                      run_static=True))
    rows = {r.sample_id.split("/")[1].split("#")[0]: r
            for r in store.get_jsonl("evals/static/static.jsonl", StaticResult)}
    assert set(rows) == set(LANGS)
    tools = {lang: {m["tool"] for m in rows[lang].messages} for lang in LANGS}
    expected_tool = {"python": "pylint", "c": "gcc", "cpp": "g++", "java": "javac", "go": "go vet"}
    for lang in set(LANGS) - {"javascript"}:
        assert tools[lang] == {expected_tool[lang]}, (lang, rows[lang].messages)
        assert 0 < rows[lang].pylint_score < 10, (lang, rows[lang])
    if "javascript" in rows:
        assert rows["javascript"].pylint_score == 10.0 and rows["javascript"].messages == []


def test_validation_runs_questions_in_their_language(env: dict[str, Any]) -> None:
    executor = GrpcExecutor(env["target"])
    try:
        jobs = [job(problem(lang), answer) for lang in LANGS for answer in (CASES[lang][0], CASES[lang][1], "")]
        assert isinstance(jobs[0], str) and all(isinstance(j, tuple) for j in jobs[3:])
        outcomes = executor.execute(jobs, 15.0)
    finally:
        executor.close()
    assert [o.passed for o in outcomes] == [True, False, False] * len(LANGS)


def test_disabled_language_is_a_verdict_and_config_is_checked() -> None:
    cfg = parse_config({"sandbox": {"workers": 1, "disabled_languages": ["go"], "disk_mb": 32,
                                    "compile_timeout_s": 5, "compile_memory_mb": 1024}}, FeedbackConfig)
    limits = sandbox_limits(cfg.sandbox)
    assert (limits.disabled_languages, limits.disk_mb, limits.compile_timeout_s, limits.compile_memory_mb) == (
        ("go",), 32, 5.0, 1024)
    servicer = build_servicer(cfg, None)
    try:
        result = servicer.Execute(feedback_pb2.ExecuteRequest(problem_json=problem("go").model_dump_json(),
                                                              completion=CASES["go"][0]), None)
    finally:
        servicer.close()
    assert not result.passed and result.result == "failed: no toolchain for go"
    for bad in (["python"], ["fortran"]):
        with pytest.raises(ValueError, match="only these languages can be disabled"):
            SandboxConfig(disabled_languages=bad)


def _eval(tmp: Path, samples: list[dict], problems: list[Problem]) -> subprocess.CompletedProcess[str]:
    (tmp / "problems.jsonl").write_text("".join(p.model_dump_json() + "\n" for p in problems))
    (tmp / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return subprocess.run([*COMMAND, "eval", str(tmp / "samples.jsonl"), "--dataset", str(tmp / "problems.jsonl"),
                           "--out", str(tmp / "out.jsonl"), "--workers", "2", "--timeout", "10"],
                          capture_output=True, text=True, timeout=300)


def test_iterkd_eval_multi_language(tmp_path: Path) -> None:
    problems = [problem(lang) for lang in LANGS]
    samples = [{"task_id": p.id, "completion": CASES[p.language][i], "language": p.language}
               for p in problems for i in (0, 1)]
    samples.append({"task_id": problems[-1].id, "completion": CASES[problems[-1].language][0]})  # no language
    proc = _eval(tmp_path, samples, problems)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in rows] == [True, False] * len(problems) + [True]
    # a sample whose language is not its problem's is a usage error naming the line
    samples[2]["language"] = "python"
    proc = _eval(tmp_path, samples, problems)
    assert proc.returncode == 2
    assert "samples.jsonl:3" in proc.stderr and '"language" is python' in proc.stderr
    samples[2]["language"] = "rust"
    proc = _eval(tmp_path, samples, problems)
    assert proc.returncode == 2 and '"language" must be one of' in proc.stderr
