"""Validation of new questions by execution in the feedback service's sandbox.

A question is valid when

* at least one teacher answer (the reply's own solution and ``samples_per_question`` fresh
  solutions of the question's prompt) passes its tests within ``timeout_s``, and
* every trivial answer built from its signature (``pass``, ``return None``, returning the first
  argument) fails them, and none of them times out: tests that hang on a wrong answer would
  stall every later cycle.

A teacher answer that times out while another passes does not reject the question: that shows a
slow answer, not slow tests. Everything of one Evolve runs in as few ``ExecuteBatch`` calls as
the batch limit allows.

A question in another language than Python goes to the sandbox as its problem record plus the
answer (the feedback service assembles it in that language); its trivial answer is the empty
answer (tests that pass without the function check nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from iterkd.questions.config import GenerationConfig, ValidationConfig
from iterkd.questions.generate import Candidate, ParsedQuestion
from iterkd.shared.errors import Unavailable
from iterkd.shared.formats import Problem
from iterkd.shared.inference import SamplingParams, TextGenerator
from iterkd.shared.programs import mbpp_program
from iterkd.shared.rpc import connect
from iterkd.shared.solve import solve_answers
from iterkd.v1 import feedback_pb2, feedback_pb2_grpc


@dataclass(frozen=True)
class ExecOutcome:
    passed: bool
    result: str
    duration_s: float = 0.0
    stdout: str = ""  # what the program printed (truncated by the sandbox); used by testgen

    @property
    def timed_out(self) -> bool:
        return self.result == "timed out"


Job = str | tuple[str, str]  # a complete Python program, or (problem record as JSON, answer)


def job(problem: Problem, answer: str) -> Job:
    """What the sandbox runs to judge ``answer`` (a whole program) against ``problem``'s tests."""
    if problem.language == "python":
        return mbpp_program(answer, problem.test_setup, problem.tests)
    return problem.model_dump_json(), answer


class Executor(Protocol):
    def execute(self, programs: Sequence[Job], timeout_s: float) -> list[ExecOutcome]:
        """Run each complete program; one outcome per program, in order."""
        ...


class GrpcExecutor:
    """An :class:`Executor` over FeedbackService.ExecuteBatch at ``target``."""

    def __init__(self, target: str, rpc_timeout_s: float = 600.0, max_batch: int = 256) -> None:
        self.target = target
        self.max_batch = max_batch
        self._channel, self._stub = connect(target, feedback_pb2_grpc.FeedbackServiceStub, timeout=rpc_timeout_s)

    def execute(self, programs: Sequence[Job], timeout_s: float) -> list[ExecOutcome]:
        import grpc

        out: list[ExecOutcome] = []
        for start in range(0, len(programs), self.max_batch):
            chunk = programs[start:start + self.max_batch]
            request = feedback_pb2.ExecuteBatchRequest(
                items=[feedback_pb2.ExecuteRequest(program=p, timeout_s=timeout_s) if isinstance(p, str) else
                       feedback_pb2.ExecuteRequest(problem_json=p[0], completion=p[1], timeout_s=timeout_s)
                       for p in chunk])
            try:
                reply = self._stub.ExecuteBatch(request)
            except grpc.RpcError as exc:
                raise Unavailable(f"feedback service at {self.target}: ExecuteBatch failed: "
                                  f"{exc.code().name}: {exc.details()}") from None
            if len(reply.results) != len(chunk):
                raise Unavailable(f"feedback service at {self.target} returned {len(reply.results)} results "
                                  f"for {len(chunk)} programs")
            out.extend(ExecOutcome(r.passed, r.result, r.duration_s, r.stdout) for r in reply.results)
        return out

    def close(self) -> None:
        self._channel.close()


def trivial_answers(q: ParsedQuestion, kinds: Sequence[str]) -> list[str]:
    """Answers that must fail the tests: ``pass``, ``return None``, ``return <first argument>``."""
    head = f"{q.imports}\n" if q.imports else ""
    out = []
    for kind in kinds:
        if kind == "pass":
            out.append(f"{head}{q.signature}\n    pass\n")
        elif kind == "return_none":
            out.append(f"{head}{q.signature}\n    return None\n")
        elif kind == "first_arg" and q.params:
            out.append(f"{head}{q.signature}\n    return {q.params[0]}\n")
    return out


@dataclass
class Verdict:
    valid: bool
    reason: str  # "valid" | "no teacher answer passes" | "a trivial answer passes" | "tests time out"
    solution: str | None = None
    results: dict[str, list[str]] = field(default_factory=dict)


def judge(teacher: Sequence[ExecOutcome], trivial: Sequence[ExecOutcome], answers: Sequence[str]) -> Verdict:
    """Apply the rules to one question's outcomes."""
    results = {"teacher": [o.result for o in teacher], "trivial": [o.result for o in trivial]}
    passing = [a for a, o in zip(answers, teacher) if o.passed]
    if any(o.timed_out for o in trivial):
        return Verdict(False, "tests time out", None, results)
    if any(o.passed for o in trivial):
        return Verdict(False, "a trivial answer passes", None, results)
    if not passing:
        if teacher and all(o.timed_out for o in teacher):
            return Verdict(False, "tests time out", None, results)
        return Verdict(False, "no teacher answer passes", None, results)
    return Verdict(True, "valid", passing[0], results)


def validate(candidates: Sequence[Candidate], generator: TextGenerator | None, executor: Executor,
             gen: GenerationConfig, val: ValidationConfig, cycle: int = 0) -> list[Verdict]:
    """One :class:`Verdict` per candidate: teacher answers are asked in one batch, every program
    (teacher and trivial answers of every candidate) runs in one batch."""
    answers: list[list[str]] = [[] for _ in candidates]
    if gen.use_reply_solution:
        for i, c in enumerate(candidates):
            if c.parsed.solution:
                answers[i].append(c.parsed.solution)
    if gen.samples_per_question > 0 and candidates and generator is not None:
        params = SamplingParams(n=gen.samples_per_question, max_new_tokens=gen.solve_max_new_tokens,
                                temperature=gen.solve_temperature, top_p=gen.top_p,
                                seed=gen.seed + 1_000_003 * cycle + 17, use_chat_template=gen.use_chat_template)
        model = generator
        solved = solve_answers([c.problem for c in candidates],
                               lambda prompts, p: [g.texts for g in model.generate(prompts, p)],
                               params, gen.solve_template, gen.batch_prompts)
        for i, codes in enumerate(solved):
            answers[i].extend(code for code in codes if code.strip())
    programs: list[Job] = []
    spans: list[tuple[int, int, int]] = []
    for c, ans in zip(candidates, answers):
        trivial = trivial_answers(c.parsed, val.trivial_answers) if c.problem.language == "python" else [""]
        begin = len(programs)
        programs.extend(job(c.problem, a) for a in ans)
        programs.extend(job(c.problem, t) for t in trivial)
        spans.append((begin, len(ans), len(trivial)))
    outcomes = executor.execute(programs, val.timeout_s) if programs else []
    verdicts = []
    for (begin, n_ans, n_triv), ans in zip(spans, answers):
        teacher = outcomes[begin:begin + n_ans]
        trivial = outcomes[begin + n_ans:begin + n_ans + n_triv]
        verdicts.append(judge(teacher, trivial, ans))
    return verdicts
