"""Validation with real sandbox runs (the feedback service's gRPC server) and Evolve end to end
over a LocalStore, with a scripted TeacherService on loopback."""

import json
import threading
from pathlib import Path

import grpc
import pytest
import yaml

from iterkd.questions.config import GenerationConfig, ValidationConfig
from iterkd.questions.generate import Candidate, new_problem, parse_reply
from iterkd.questions.server import build_server as build_questions
from iterkd.questions.validate import GrpcExecutor, validate
from iterkd.shared.cli import ServeOptions
from iterkd.shared.formats import Feedback, Problem, load_humaneval
from iterkd.shared.inference import GrpcGenerator
from iterkd.shared.rpc import Server, Service, connect, service_name
from iterkd.shared.store import LocalStore
from iterkd.v1 import common_pb2, questions_pb2, questions_pb2_grpc, teacher_pb2, teacher_pb2_grpc

pytest.importorskip("iterkd.feedback.server")  # the feedback_target fixture (tests/conftest.py) serves it


def reply(desc, sig, tests, solution=None):
    out = f"### Description\n{desc}\n\n### Signature\n```python\n{sig}\n```\n\n### Tests\n```python\n{tests}\n```\n"
    return out + (f"\n### Solution\n```python\n{solution}\n```\n" if solution else "")


GOOD_A = reply("Return the product of the odd digits of a positive integer, or 0 if none are odd.",
               "def odd_digit_product(n: int) -> int:",
               "assert odd_digit_product(135) == 15\nassert odd_digit_product(2468) == 0\n"
               "assert odd_digit_product(7) == 7",
               "def odd_digit_product(n):\n    p, seen = 1, False\n    for c in str(n):\n"
               "        if int(c) % 2:\n            p *= int(c)\n            seen = True\n    return p if seen else 0")
GOOD_B = reply("Count how many times the letter 'z' occurs in a string, ignoring case.",
               "def count_z(text: str) -> int:",
               "assert count_z('Zebra zoo') == 2\nassert count_z('') == 0\nassert count_z('abc') == 0")
TRIVIAL_PASSES = reply("Return nothing for an empty list of chores.", "def chores(items: list) -> None:",
                       "assert chores([]) is None\nassert chores([1]) is None",
                       "def chores(items):\n    return None")
IDENTITY = reply("Return the given word unchanged.", "def same_word(w: str) -> str:",
                 "assert same_word('a') == 'a'\nassert same_word('bc') == 'bc'", "def same_word(w):\n    return w")
WRONG = reply("Return the square of a number.", "def square_it(x: int) -> int:",
              "assert square_it(3) == 9\nassert square_it(-2) == 4", "def square_it(x):\n    return x + x")
HANGS = reply("Return k + 1.", "def next_of(k: int) -> int:",  # the test loops forever on a wrong answer
              "import itertools\nassert next(k for k in itertools.count() if next_of(k) == k + 1) == 0",
              "def next_of(k):\n    return k + 1")
SLOW = reply("Return twice k.", "def slow_k(k: int) -> int:", "assert slow_k(2) == 4",
             "def slow_k(k):\n    while True:\n        pass")


def renamed_humaneval() -> str:
    p = load_humaneval()[0]
    code = (p.prompt + p.canonical_solution).replace("has_close_elements", "near_pair") \
        .replace("numbers", "vals").replace("threshold", "eps")
    return reply("Check if any two values are closer than eps.", "from typing import List\n"
                 "def near_pair(vals: List[float], eps: float) -> bool:",
                 "assert near_pair([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) is True\n"
                 "assert near_pair([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) is True", code)


NEAR_GAMMA = reply("Write a function that returns the number of vowels (a, e, i, o, u) in a lower-case string.",
                   "def vowel_count(s: str) -> int:", "assert vowel_count('banana') == 3",
                   "def vowel_count(s):\n    return sum(c in 'aeiou' for c in s)")

SOLUTIONS = {
    "count_z": "def count_z(text):\n    return text.lower().count('z')\n",
    "square_it": "def square_it(x):\n    return x * 2\n",
    "slow_k": "def slow_k(k):\n    import time\n    time.sleep(30)\n    return 2 * k\n",
}


class ScriptedTeacher(teacher_pb2_grpc.TeacherServiceServicer):
    """Generation prompts are answered by the parent marker they contain; solve prompts by the
    function they name (unknown ones get a wrong answer)."""

    def __init__(self, questions: dict[str, list[str]]):
        self.questions = questions
        self.calls = 0
        self.lock = threading.Lock()

    def Generate(self, request, context):
        with self.lock:
            self.calls += 1
        out = []
        for prompt in request.prompts:
            texts = None
            for marker, replies in self.questions.items():
                if marker in prompt.text and "### Description" in prompt.text:
                    texts = replies
            if texts is None:
                name = next((n for n in SOLUTIONS if f"`{n}`" in prompt.text), None)
                texts = ["```python\n" + (SOLUTIONS[name] if name else "def nothing():\n    pass\n") + "```"]
            for i in range(request.params.n):
                out.append(common_pb2.Completion(prompt_id=prompt.id, index=i, text=texts[i % len(texts)],
                                                 finish_reason="stop"))
        return common_pb2.GenerateResponse(completions=out, model="scripted")


def start_teacher(script):
    teacher = ScriptedTeacher(script)
    srv = Server([Service(teacher_pb2_grpc.add_TeacherServiceServicer_to_server, teacher,
                          service_name(teacher_pb2, "TeacherService"))])
    srv.start()
    return srv, teacher


def candidate(text, level="learning"):
    q = parse_reply(text)
    assert q is not None
    parent = Problem(id="parent", prompt="x", tests="assert True")
    return Candidate(new_problem(q, parent, level, 1, 0), q, "parent", level)


def test_each_validation_rule_rejects_what_it_should(feedback_target):
    srv, _ = start_teacher({})
    try:
        cands = [candidate(t) for t in (GOOD_A, GOOD_B, TRIVIAL_PASSES, IDENTITY, WRONG, HANGS, SLOW)]
        gen = GenerationConfig(samples_per_question=1, solve_temperature=0.0)
        verdicts = validate(cands, GrpcGenerator(srv.target, timeout=30), GrpcExecutor(feedback_target), gen,
                            ValidationConfig(timeout_s=1.0))
    finally:
        srv.stop(0)
    reasons = [v.reason for v in verdicts]
    assert reasons == ["valid", "valid", "a trivial answer passes", "a trivial answer passes",
                       "no teacher answer passes", "tests time out", "tests time out"]
    assert verdicts[0].solution.startswith("def odd_digit_product")
    assert verdicts[1].solution == SOLUTIONS["count_z"]            # the fresh teacher answer passed
    assert verdicts[4].results["trivial"] and all(r.startswith("failed") for r in verdicts[4].results["trivial"])


@pytest.fixture
def questions(tmp_path, feedback_target):
    store = LocalStore(tmp_path / "store")
    teacher_srv, teacher = start_teacher({
        "ALPHA-MARK": [GOOD_A, "Sorry, I can't write that."],
        "BETA-MARK": [renamed_humaneval(), NEAR_GAMMA],
        "vowel_count": [TRIVIAL_PASSES, GOOD_B],
    })
    cfg = tmp_path / "questions.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"root": str(store.root)}, "questions": {
        "teacher_target": teacher_srv.target, "feedback_target": feedback_target,
        "generation": {"per_question": {"mastered": 2, "learning": 2, "struggling": 2}, "samples_per_question": 1},
        "validation": {"timeout_s": 2.0}}}))
    srv = build_questions(ServeOptions(config=str(cfg), port=0))
    srv.start()
    _, stub = connect(srv.target, questions_pb2_grpc.QuestionServiceStub, timeout=60, wait_ready_s=5)
    yield store, stub, teacher
    srv.stop(0)
    teacher_srv.stop(0)


def gamma_problem() -> Problem:
    """A pool problem in the style new questions have; NEAR_GAMMA (slightly edited) duplicates it."""
    q = parse_reply(NEAR_GAMMA.replace("banana", "cabana"))
    p = new_problem(q, Problem(id="seed", prompt="x", tests="assert True"), "learning", 0, 0)
    return p.model_copy(update={"id": "gamma", "canonical_solution": q.solution, "source": "own",
                                "parent_id": None, "level": None, "cycle": None})


def seed_pool(store):
    pool = [
        Problem(id="alpha", prompt="ALPHA-MARK: return the sum of two integers.", entry_point="add",
                tests="assert add(1, 2) == 3"),
        Problem(id="beta", prompt="BETA-MARK: return the maximum of a list.", entry_point="biggest",
                tests="assert biggest([1, 3]) == 3"),
        gamma_problem(),
    ]
    feedback = [Feedback(problem_id="alpha", pass_rate=1.0, static=0.9, judge=0.9, quality=0.9),
                Feedback(problem_id="beta", pass_rate=0.5, static=0.5, judge=0.5, quality=0.5),
                Feedback(problem_id="gamma", pass_rate=0.0, static=0.2, judge=0.1, quality=0.1)]
    store.put_jsonl("runs/r1/cycle-001/feedback/pool.jsonl", pool)
    store.put_jsonl("runs/r1/cycle-001/feedback/feedback.jsonl", feedback)
    return store.uri("runs/r1/cycle-001/feedback/pool.jsonl"), store.uri("runs/r1/cycle-001/feedback/feedback.jsonl")


def test_evolve_end_to_end(questions):
    store, stub, teacher = questions
    pool_uri, fb_uri = seed_pool(store)
    req = questions_pb2.EvolveRequest(run=common_pb2.RunCycle(run_id="r1", cycle=1), pool_uri=pool_uri,
                                      feedback_uri=fb_uri)
    resp = stub.Evolve(req)
    stats = {s.level: (s.problems, s.asked, s.parsed, s.valid, s.duplicate, s.contaminated, s.kept)
             for s in resp.stats}
    assert stats == {"mastered": (1, 2, 1, 1, 0, 0, 1),
                     "learning": (1, 2, 2, 0, 1, 1, 0),
                     "struggling": (1, 2, 2, 1, 0, 0, 1)}
    key = store.resolve(resp.next_pool.uri)
    assert key == "runs/r1/cycle-001/evolve/next_pool.jsonl"
    assert store.exists("runs/r1/cycle-001/evolve/_manifest.json")
    pool = store.get_jsonl(key, Problem)
    by_parent = {(p.parent_id, p.level): p for p in pool if p.source == "teacher"}
    assert [p.id for p in pool if p.source != "teacher"] == ["beta", "gamma"]
    assert {p.id: p.level for p in pool if p.source != "teacher"} == {"beta": "learning", "gamma": "struggling"}
    assert set(by_parent) == {("alpha", "mastered"), ("gamma", "struggling")}
    for p in by_parent.values():
        assert p.cycle == 1 and p.canonical_solution and p.harness == "mbpp" and "```python" in p.prompt
    assert by_parent[("alpha", "mastered")].entry_point == "odd_digit_product"
    assert by_parent[("gamma", "struggling")].entry_point == "count_z"
    levels = store.get_jsonl(store.resolve(resp.levels.uri), Feedback)
    assert [(r.problem_id, r.level) for r in levels] == [("alpha", "mastered"), ("beta", "learning"),
                                                        ("gamma", "struggling")]
    rejected = [json.loads(x) for x in store.get_bytes("runs/r1/cycle-001/evolve/rejected.jsonl").splitlines()]
    assert sorted(r["reason"] for r in rejected) == ["a trivial answer passes", "contaminated", "duplicate",
                                                     "unparsed"]
    # idempotent: the manifest answers, the teacher is not asked again
    calls = teacher.calls
    again = stub.Evolve(req)
    assert teacher.calls == calls
    assert again.next_pool.sha256 == resp.next_pool.sha256 and list(again.stats) == list(resp.stats)
    # the pool cap keeps room for new questions
    capped = stub.Evolve(questions_pb2.EvolveRequest(
        pool_uri=pool_uri, feedback_uri=fb_uri, run=common_pb2.RunCycle(run_id="r1", cycle=1),
        next_pool_uri=store.uri("runs/r1/cycle-001/evolve-capped/next_pool.jsonl"),
        config_json=json.dumps({"pool": {"max_size": 2, "min_new_fraction": 0.5}})))
    capped_pool = store.get_jsonl(store.resolve(capped.next_pool.uri), Problem)
    assert len(capped_pool) == 2 and [p.source for p in capped_pool].count("teacher") == 1


def test_assign_levels_and_bad_requests(questions, tmp_path):
    store, stub, _ = questions
    pool_uri, fb_uri = seed_pool(store)
    got = stub.AssignLevels(questions_pb2.AssignLevelsRequest(feedback_uri=fb_uri))
    assert [(x.problem_id, x.level) for x in got.levels] == [("alpha", "mastered"), ("beta", "learning"),
                                                             ("gamma", "struggling")]
    store.put_jsonl("bad/feedback.jsonl", [Feedback(problem_id="nobody", pass_rate=1, quality=1)])
    cases = [
        (questions_pb2.EvolveRequest(feedback_uri=fb_uri, run=common_pb2.RunCycle(run_id="r1")), "pool_uri"),
        (questions_pb2.EvolveRequest(pool_uri=pool_uri, feedback_uri=store.uri("bad/feedback.jsonl"),
                                     run=common_pb2.RunCycle(run_id="r1")), "not in the pool"),
        (questions_pb2.EvolveRequest(pool_uri=(tmp_path / "elsewhere.jsonl").as_uri(), feedback_uri=fb_uri,
                                     run=common_pb2.RunCycle(run_id="r1")), "outside"),
        (questions_pb2.EvolveRequest(pool_uri=pool_uri, feedback_uri=fb_uri), "run_id"),
        (questions_pb2.EvolveRequest(pool_uri=pool_uri, feedback_uri=fb_uri, run=common_pb2.RunCycle(run_id="r1"),
                                     config_json='{"dedup": {"threshold": 3}}'), "threshold"),
        (questions_pb2.EvolveRequest(pool_uri=pool_uri, feedback_uri=fb_uri, run=common_pb2.RunCycle(run_id="r1"),
                                     config_json='{"teacher_target": "10.0.0.1:1"}'),
         "teacher_target cannot be overridden per request"),
    ]
    for req, message in cases:
        with pytest.raises(grpc.RpcError) as err:
            stub.Evolve(req)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        assert message in err.value.details()
    assert not Path(store.root / "runs/r1/cycle-000/evolve/_manifest.json").exists()
