"""The judge view: the score parser, the prompt, and a Judge end to end against a local server
speaking text-generation-inference's /generate protocol."""

from __future__ import annotations

import threading
import time

import pytest

from iterkd.feedback.judge import (
    DEFAULT_RUBRIC,
    DEFAULT_TEMPLATE,
    Criterion,
    Judge,
    TgiHttpGenerator,
    check_judge_template,
    parse_score,
    rubric_criteria,
    rubric_max_score,
)
from iterkd.shared.inference import SamplingParams
from iterkd.shared.rpc import Unavailable
from iterkd.shared.sampling import derive_seed
from tests.feedback.tgi_fake import FakeTgi, text

BREAKDOWN = """- Basic functionality: 2/2
- Boundary checks: 0/1
- Requirement coverage: 1/1
- Readability/documentation: 1/1
- Coding practice: 0/1"""

PARSE_CASES = [
    ("Score: 5/6", 5.0),
    ("**Score**: 4.5 / 6", 4.5),
    ("score = 3", 3.0),
    ("I'd give it 5 out of 6", 5.0),
    ('{"score": 4}', 4.0),
    ('Here is my verdict:\n```json\n{"total_score": "5/6", "rationale": "fine"}\n```', 5.0),
    (BREAKDOWN, 4.0),
    (BREAKDOWN + "\n\nScore: 3/6", 3.0),  # an explicit total beats the breakdown
    ("Score: 3/6\nOn reflection the edge cases are handled.\nFinal score: 4/6", 4.0),  # the last one
    ("**Final Score: 6/6**", 6.0),
    ("Score: **5**/6", 5.0),
    ("Total points: 5 / 6.", 5.0),
    ("I rate this solution 4/6.", 4.0),
    ("The rating is 5.", 5.0),
    ("Overall, a score of 5/6 is fair.", 5.0),  # a bare fraction over the maximum
    ("It passes 3 of 6 hidden cases. Score: 2/6", 2.0),
    ("Score: 8/10", 4.8),  # another scale is rescaled
    ("Score: 50%", 3.0),
    ("SCORE:0/6", 0.0),
    ("Score: 7/6", None),  # above the maximum
    ("Score: -1/6", None),
    ("Score: 5/0", None),
    ("Looks good to me!", None),
    ("", None),
    ("Score: X/6", None),  # the template echoed back
    ("Basic functionality (2 points): 2/2", None),  # a lone criterion is no total
    ("Score: 1e309/6", None),
    ("{not json} score: ???", None),
    ("\x00\ufffd" * 1000 + "{" * 500, None),
]


@pytest.mark.parametrize(("reply", "expected"), PARSE_CASES)
def test_parse_score(reply: str, expected: float | None) -> None:
    parsed = parse_score(reply, 6)
    if expected is None:
        assert parsed.score is None, parsed
    else:
        assert parsed.score == pytest.approx(expected), parsed


# The method's authors' judge: a "Score:" heading, one line per rule, half points, no total.
PER_RULE = """Score:
Rule 1. Basic Functionality: 2
Rule 2. Boundary Check: 0.5
Rule 3. Requirement Coverage: 1
Rule 4. Readability and Documentation: 0.5
Rule 5. Coding Practice: 1"""

PER_RULE_CASES = [
    (PER_RULE, 5.0),
    (PER_RULE.replace("Check: 0.5", "Check: 0"), 4.5),
    ("The code is fine but misses empty lists.\n\n" + PER_RULE + "\n", 5.0),
    # with a total: the stated total is the score
    (PER_RULE + "\nTotal: 5/6", 5.0),
    (PER_RULE + "\n\nScore: 4.5/6", 4.5),
    # markup: bold names, bold heading, bullets, a markdown table
    ("**Score:**\n" + "\n".join(f"- **{line}**" for line in PER_RULE.splitlines()[1:]), 5.0),
    ("**Score:**\n" + "\n".join(line.replace(": ", ":** ", 1).replace("Rule", "**Rule", 1)
                                  for line in PER_RULE.splitlines()[1:]), 5.0),
    ("| Rule | Points |\n|---|---|\n| 1. Basic Functionality | 1.5 |\n| 2. Boundary Check | 1 |\n"
     "| 3. Requirement Coverage | 1 |\n| 4. Readability and Documentation | 1 |\n| 5. Coding Practice | 0.5 |", 5.0),
    # names as our rubric writes them, numbered without "Rule", points spelled out, half-point fractions
    ("1. Basic functionality: 1 point\n2. Boundary checks: 0 points\n3. Requirement coverage: 1\n"
     "4. Readability and documentation: 1\n5. Coding practice: 0.5", 3.5),
    ("Rule 1. Basic Functionality: 1.5/2\nRule 2. Boundary Check: 0.5/1\nRule 3. Requirement Coverage: 1/1\n"
     "Rule 4. Readability and Documentation: 1/1\nRule 5. Coding Practice: 1/1", 5.0),
    # out of order, matched by name
    ("Coding practice: 1\nBoundary checks: 1\nBasic functionality: 2\nRequirement coverage: 0\n"
     "Readability and documentation: 1", 5.0),
    # a criterion's own "score" is not the total
    ("Basic functionality score: 2\nBoundary checks score: 1\nRequirement coverage score: 1\n"
     "Readability and documentation score: 0\nCoding practice score: 1", 5.0),
    # a criterion above its own maximum, a missing criterion, a negative value: unparsed
    (PER_RULE.replace("Check: 0.5", "Check: 1.5"), None),
    (PER_RULE.replace("Functionality: 2", "Functionality: 3"), None),
    ("\n".join(PER_RULE.splitlines()[:-1]), None),
    (PER_RULE.replace("Practice: 1", "Practice: -1"), None),
    ("Score:\n1. Basic functionality: the code works.", None),  # the heading is no score of 1
]


@pytest.mark.parametrize(("reply", "expected"), PER_RULE_CASES)
def test_parse_per_rule_replies(reply: str, expected: float | None) -> None:
    parsed = parse_score(reply, 6)
    if expected is None:
        assert parsed.score is None, parsed
    else:
        assert parsed.score == pytest.approx(expected), parsed


def test_per_rule_against_a_custom_rubric() -> None:
    rubric = "1. Correctness (3 points): passes.\n2. Style (2 points): tidy.\nMaximum: 5 points."
    criteria = rubric_criteria(rubric)
    assert criteria == (Criterion("Correctness", 3.0), Criterion("Style", 2.0))
    assert parse_score("Rule 1. Correctness: 2.5\nRule 2. Style: 2", 5, criteria).score == 4.5
    assert parse_score("Rule 1. Correctness: 2.5\nRule 2. Style: 2.5", 5, criteria).score is None  # style max 2
    # without the rubric's criteria a per-rule list is not read on another scale
    assert parse_score("Rule 1. Correctness: 2.5\nRule 2. Style: 2", 5).score is None


def test_default_prompt_asks_for_rules_and_total() -> None:
    prompt = Judge(lambda *a: [], batch_size=1).prompt("Add.", "def add(a, b): return a + b")  # type: ignore[arg-type]
    assert '"Score:" on a line of its own' in prompt and '"Rule N. <criterion>: <points>"' in prompt
    assert "half points" in prompt and prompt.rstrip().endswith('"Score: X/6".')
    assert [c.max_points for c in rubric_criteria(DEFAULT_RUBRIC)] == [2.0, 1.0, 1.0, 1.0, 1.0]


def test_parse_score_other_maximum() -> None:
    assert parse_score("Score: 9/10", 10).score == 9.0
    assert parse_score("Score: 3/5", 10).score == 6.0
    assert parse_score("Score: 11", 10).score is None


def test_rubric_maximum_and_template_checks() -> None:
    assert rubric_max_score(DEFAULT_RUBRIC) == 6.0
    assert rubric_max_score("Correctness (3 points)\nStyle (2 points)") == 5.0
    assert rubric_max_score("Grade out of 10.") == 10.0
    assert rubric_max_score("Be nice.") is None
    assert check_judge_template(DEFAULT_TEMPLATE) == DEFAULT_TEMPLATE
    with pytest.raises(ValueError, match=r"unknown field\(s\) \{code\}"):
        check_judge_template("{problem} {code}")
    with pytest.raises(ValueError, match=r"must contain \{answer\}"):
        check_judge_template("{problem}")
    with pytest.raises(ValueError, match="invalid template"):
        check_judge_template("{answer")


def _by_answer(body: dict) -> tuple[int, object]:
    prompt = body["inputs"]
    if "GOOD" in prompt:
        return text("Works and is tidy.\nScore: 6/6")
    if "MEH" in prompt:
        return text("Basic functionality: 1/2\nBoundary checks: 0/1\nRequirement coverage: 1/1\n"
                    "Readability/documentation: 1/1\nCoding practice: 1/1")
    return text("I cannot tell.")


def test_judge_end_to_end_over_tgi_protocol() -> None:
    with FakeTgi(_by_answer) as server:
        gen = TgiHttpGenerator(server.url, timeout_s=10, concurrency=3)
        judge = Judge(gen, params=SamplingParams(max_new_tokens=200, temperature=0.0, seed=7), batch_size=2)
        items = [("Add two numbers.", "def add(a, b):  # GOOD\n    return a + b"),
                 ("Add two numbers.", "def add(a, b):  # MEH\n    return a - b + 2 * b"),
                 ("Add two numbers.", "def add(a, b):  # ???\n    pass")]
        results = judge.score_many(items, sample_ids=["s1", "s2", "s3"])
        gen.close()
    assert [r.sample_id for r in results] == ["s1", "s2", "s3"]
    assert [r.score for r in results] == [6.0, 4.0, None]
    assert all(r.max_score == 6.0 for r in results)
    assert results[0].rationale.endswith("Score: 6/6") and results[2].rationale == "I cannot tell."
    assert len(server.requests) == 3
    body = next(b for b in server.requests if "GOOD" in b["inputs"])
    assert "Basic functionality (2 points)" in body["inputs"] and "Add two numbers." in body["inputs"]
    assert body["inputs"].rstrip().endswith('"Score: X/6".')
    params = body["parameters"]
    # one seed rule everywhere: sample i of prompt j (in its batch) uses derive_seed(seed, j, i)
    assert params["max_new_tokens"] == 200 and params["seed"] == derive_seed(7, 0, 0) and params["do_sample"] is False
    assert "temperature" not in params


def test_judge_reads_per_rule_replies_end_to_end() -> None:
    with FakeTgi(lambda body: text("Mostly right; empty input is not handled.\n\n" + PER_RULE)) as server:
        gen = TgiHttpGenerator(server.url, timeout_s=10)
        result = Judge(gen).score("Add two numbers.", "def add(a, b):\n    return a + b")
        gen.close()
    assert (result.score, result.max_score) == (5.0, 6.0)


def test_judge_custom_rubric_and_sampling_parameters() -> None:
    with FakeTgi(lambda body: text("Score: 8/10")) as server:
        gen = TgiHttpGenerator(server.url, timeout_s=10)
        judge = Judge(gen, rubric="Correctness (7 points)\nStyle (3 points)", template="{rubric}|{answer}|{max_score}",
                      params=SamplingParams(max_new_tokens=50, temperature=0.7, top_p=0.9, stop=("\n\n",), seed=3))
        result = judge.score("p", "code")
        gen.close()
    assert result.score == 8.0 and result.max_score == 10.0
    [body] = server.requests
    assert body["inputs"] == "Correctness (7 points)\nStyle (3 points)|code|10"
    assert body["parameters"] == {"max_new_tokens": 50, "seed": derive_seed(3, 0, 0), "details": True,
                                  "do_sample": True, "temperature": 0.7, "top_p": 0.9, "stop": ["\n\n"]}


def test_tgi_generator_samples_seeds_and_stop_sequences() -> None:
    def reply(body: dict) -> tuple[int, object]:
        # TGI keeps the stop sequence that ended the text; "END" comes first in the text, though
        # it is second in the request's list: the text is cut at the earliest one.
        return text(f"seed={body['parameters']['seed']}\nEND here STOP", finish="stop_sequence")

    with FakeTgi(reply) as server:
        gen = TgiHttpGenerator(server.url + "/generate", timeout_s=10)
        out = gen.generate(["a", "b"], SamplingParams(n=2, max_new_tokens=5, seed=10, stop=("STOP", "END")))
        gen.close()
    assert [g.texts for g in out] == [[f"seed={derive_seed(10, j, i)}\n" for i in range(2)] for j in range(2)]
    assert len({t for g in out for t in g.texts}) == 4  # every sample its own seed, as the teacher does it
    assert out[0].finish_reasons == ["stop", "stop"]
    assert sorted(r["inputs"] for r in server.requests) == ["a", "a", "b", "b"]
    assert {r["parameters"]["stop"] == ["STOP", "END"] for r in server.requests} == {True}


def test_tgi_generator_retries_5xx_and_429() -> None:
    calls = {"n": 0}
    lock = threading.Lock()

    def flaky(body: dict) -> tuple[int, object]:
        with lock:
            calls["n"] += 1
            n = calls["n"]
        if n == 1:
            return 503, {"error": "overloaded"}
        if n == 2:
            return 429, {"error": "rate limited"}
        return text("Score: 5/6")

    with FakeTgi(flaky) as server:
        gen = TgiHttpGenerator(server.url, timeout_s=10, retries=2, backoff_s=0.01)
        [g] = gen.generate(["x"], SamplingParams())
        gen.close()
    assert g.texts == ["Score: 5/6"] and g.finish_reasons == ["eos"]
    assert calls["n"] == 3


def test_tgi_generator_gives_up_and_refuses_clearly() -> None:
    with FakeTgi(lambda body: (500, {"error": "boom"})) as server:
        gen = TgiHttpGenerator(server.url, timeout_s=10, retries=1, backoff_s=0.01)
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match=r"failed 2 time\(s\); last error: HTTP 500"):
            gen.generate(["x"], SamplingParams())
        assert time.monotonic() - t0 < 5
        gen.close()
        assert len(server.requests) == 2
    with FakeTgi(lambda body: (422, {"error": "max_new_tokens too large"})) as server:
        gen = TgiHttpGenerator(server.url, timeout_s=10, retries=3, backoff_s=0.01)
        with pytest.raises(RuntimeError, match="HTTP 422.*max_new_tokens too large"):
            gen.generate(["x"], SamplingParams())
        gen.close()
        assert len(server.requests) == 1  # a refusal is not retried
    gen = TgiHttpGenerator("http://127.0.0.1:9", timeout_s=2, retries=0)
    with pytest.raises(Unavailable, match="connection error"):
        gen.generate(["x"], SamplingParams())
    gen.close()


def test_judge_over_the_teacher_service_grpc_interface() -> None:
    """The judge through the shared GrpcGenerator, against a TeacherService on loopback."""
    from iterkd.shared.inference import GrpcGenerator
    from iterkd.shared.rpc import Server, Service, service_name
    from iterkd.v1 import common_pb2, teacher_pb2, teacher_pb2_grpc

    seen: list[common_pb2.GenerateRequest] = []

    class Teacher(teacher_pb2_grpc.TeacherServiceServicer):
        def Generate(self, request, context):
            seen.append(request)
            return common_pb2.GenerateResponse(model="fake", completions=[
                common_pb2.Completion(prompt_id=p.id, index=0, text=f"Score: {int(p.id) + 1}/6", finish_reason="eos")
                for p in reversed(request.prompts)])  # out of order on purpose

    server = Server([Service(teacher_pb2_grpc.add_TeacherServiceServicer_to_server, Teacher(),
                             service_name(teacher_pb2, "TeacherService"))])
    with server:
        gen = GrpcGenerator(server.target, timeout=10)
        judge = Judge(gen, params=SamplingParams(max_new_tokens=64), batch_size=2)
        results = judge.score_many([("p", "a"), ("p", "b"), ("p", "c")], sample_ids=["x", "y", "z"])
        gen.close()
    # batches of 2 then 1: prompt ids restart per call
    assert [r.score for r in results] == [1.0, 2.0, 1.0]
    assert [len(r.prompts) for r in seen] == [2, 1]
    assert seen[0].params.max_new_tokens == 64 and seen[0].params.n == 1
