"""Tests made by running a teacher's reference (questions.testgen), in the real sandbox (the
feedback service's gRPC server), and their path through validation and Evolve."""

from __future__ import annotations

import random
from collections.abc import Sequence

from iterkd.questions.config import GenerationConfig, QuestionsConfig, ValidationConfig
from iterkd.questions.generate import Candidate, new_problem, parse_reply
from iterkd.questions.service import QuestionServicer
from iterkd.questions.testgen import arg_types, draw_inputs, fill_tests, read_results
from iterkd.questions.validate import GrpcExecutor, validate
from iterkd.shared.formats import Problem
from iterkd.shared.inference import Generation, SamplingParams
from iterkd.shared.miniature import world
from iterkd.shared.store import LocalStore


def reply(description: str, signature: str, solution: str) -> str:
    return (f"### Description\n{description}\n\n### Signature\n```python\n{signature}\n```\n\n"
            f"### Solution\n```python\n{solution}```\n")


def world_reply(chain: tuple[str, ...], seed: int = 0) -> str:
    task = world.make_task(chain, random.Random(seed))
    return reply(task.description, task.signature, task.code)


PARENT = Problem(id="parent", prompt="Sum a list.", tests="assert True")


def candidate(text: str, k: int = 0) -> Candidate:
    q = parse_reply(text, allow_no_tests=True)
    assert q is not None
    return Candidate(new_problem(q, PARENT, "learning", 1, k), q, PARENT.id, "learning")


def test_a_reply_without_tests_parses_only_when_allowed() -> None:
    text = world_reply(("keep_even", "sum"))
    assert parse_reply(text) is None
    q = parse_reply(text, allow_no_tests=True)
    assert q is not None and q.tests == "" and q.solution and q.entry_point in q.signature


def test_inputs_follow_the_type_hints() -> None:
    types = arg_types("def f(xs: list[int], word: str, pairs: dict[str, int]) -> int:")
    assert types is not None and len(types) == 3
    for xs, word, pairs in draw_inputs(types, random.Random(1), 20):
        assert isinstance(xs, list) and all(isinstance(x, int) for x in xs)
        assert isinstance(word, str) and isinstance(pairs, dict)
    assert arg_types("def f(xs, n: int) -> int:") is None      # a parameter without a hint
    assert arg_types("def f(*xs: int) -> int:") is None


def test_results_are_read_only_from_marked_literal_lines() -> None:
    out = "noise\nMK 0 [1, 2]\nMK 1 <object at 0x1>\nMK 7 3\nMK 2 'a'\nother 3 4\n"
    assert read_results(out, "MK", 3) == {0: [1, 2], 2: "a"}


def test_generated_tests_pass_the_reference_and_fail_trivial_answers(feedback_target: str) -> None:
    chains = [("keep_even", "sort_desc", "take"), ("no_vowels", "upper"), ("digits", "max0"),
              ("word_lengths", "sort_asc")]
    cands = [candidate(world_reply(c, i), i) for i, c in enumerate(chains)]
    no_hints = candidate(reply("Double it.", "def double(n):", "def double(n):\n    return 2 * n\n"), 9)
    always_raises = candidate(reply("Fail.", "def boom(n: int) -> int:", "def boom(n: int) -> int:\n"
                                    "    raise ValueError(n)\n"), 10)
    kept, dropped = fill_tests([*cands, no_hints, always_raises], lambda: GrpcExecutor(feedback_target), 6, 1, 5.0)
    assert [c.problem.id for c in dropped] == [no_hints.problem.id, always_raises.problem.id]
    assert len(kept) == len(cands)
    for c in kept:
        assert 3 <= c.parsed.n_tests <= 6
        assert c.problem.tests == c.parsed.tests
        assert all(t.startswith(f"assert {c.parsed.entry_point}(") for t in c.problem.tests.splitlines())
        assert "Example: " in c.problem.prompt and c.parsed.description in c.problem.prompt
    # the usual validation: the reply's own solution passes, pass/None/first-argument answers fail
    executor = GrpcExecutor(feedback_target)
    try:
        verdicts = validate(kept, None, executor, GenerationConfig(samples_per_question=0), ValidationConfig())
    finally:
        executor.close()
    assert [v.reason for v in verdicts] == ["valid"] * len(kept)
    # deterministic for a seed
    again, _ = fill_tests(cands, lambda: GrpcExecutor(feedback_target), 6, 1, 5.0)
    assert [c.problem.tests for c in again] == [c.problem.tests for c in kept]


class ScriptedTeacher:
    """A TextGenerator answering every question request with the next scripted reply."""

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.i = 0

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[Generation]:
        out = []
        for _ in prompts:
            texts = []
            for _ in range(params.n):
                texts.append(self.replies[self.i % len(self.replies)])
                self.i += 1
            out.append(Generation(texts=texts))
        return out


def test_evolve_makes_tests_for_replies_without_them(tmp_path, feedback_target: str) -> None:
    replies = [world_reply(("keep_odd", "sum"), 1), world_reply(("text_length", "mul"), 2),
               reply("Identity.", "def same(xs: list[int]) -> list[int]:", "def same(xs: list[int]) -> list[int]:\n"
                     "    return xs\n")]
    cfg = QuestionsConfig.model_validate({
        "generation": {"per_question": {"mastered": 0, "learning": 3, "struggling": 0}, "samples_per_question": 0},
        "decontamination": {"humaneval": False}})
    servicer = QuestionServicer(cfg, LocalStore(tmp_path), generator_factory=lambda c: ScriptedTeacher(replies),
                                executor_factory=lambda c: GrpcExecutor(feedback_target))
    result = servicer._evolve([PARENT], {PARENT.id: "learning"}, cfg, 1)
    new = [p for p in result["next_pool"] if p.source == "teacher"]
    assert len(new) == 2  # the identity question's tests let the first-argument answer pass
    assert all(p.tests.count("assert ") >= 3 for p in new)
    reasons = sorted(r["reason"] for r in result["rejected"])
    assert reasons == ["a trivial answer passes"]
    learning = next(s for s in result["stats"] if s["level"] == "learning")
    assert learning["parsed"] == 3 and learning["valid"] == 2
