"""The FeedbackService servicer: evaluation over artifacts, and small direct calls.

``Evaluate`` reads problems and samples from the store, runs every sample in the sandbox, the
static view and the judge when asked, aggregates per problem, and writes ``verdicts.jsonl``,
``static.jsonl``, ``judge.jsonl``, ``feedback.jsonl`` and, last, ``_manifest.json`` under the
output prefix. A prefix that already has a manifest is a finished stage: the stored result is
returned without recomputing (a request that differs from the stored one is refused with
FAILED_PRECONDITION rather than answered with the wrong result).

``Execute`` / ``ExecuteBatch`` run answers passed in the request (the question service validates
new questions through ``ExecuteBatch``), ``Static`` and ``Judge`` score answers directly.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from iterkd.feedback.aggregate import Weights, aggregate, summarize
from iterkd.feedback.config import FeedbackConfig
from iterkd.feedback.harness import program_bytes, program_for
from iterkd.feedback.judge import Judge
from iterkd.feedback.sandbox import ExecResult, Program, SandboxPool
from iterkd.feedback.shards import Sharder
from iterkd.feedback.static import StaticAnalyzer, StaticReport, static_code
from iterkd.feedback.static_langs import CompiledStatic
from iterkd.shared.errors import BadRequest, Conflict, Unavailable, require
from iterkd.shared.formats import JudgeResult, Problem, Sample, StaticResult, Verdict, parse_record
from iterkd.shared.log import event
from iterkd.shared.stages import (
    BASELINE,
    STAGES,
    StageManifest,
    StageWriter,
    begin_stage,
    evaluate_step,
    stage_lock,
)
from iterkd.shared.store import ArtifactStore, normalize_key
from iterkd.v1 import common_pb2, feedback_pb2, feedback_pb2_grpc

log = logging.getLogger("iterkd.feedback.service")

OUTPUTS = {"verdicts": "verdicts.jsonl", "static": "static.jsonl", "judge": "judge.jsonl",
           "feedback": "feedback.jsonl"}


def _exec_result(r: ExecResult) -> feedback_pb2.ExecuteResult:
    return feedback_pb2.ExecuteResult(passed=r.passed, result=r.result, duration_s=r.duration_s,
                                      stdout=r.stdout, stderr=r.stderr)


def _static_message(m: dict[str, Any]) -> feedback_pb2.StaticMessage:
    return feedback_pb2.StaticMessage(tool=str(m.get("tool", "")), symbol=str(m.get("symbol", "")),
                                      message_id=str(m.get("message_id", "")), type=str(m.get("type", "")),
                                      line=int(m.get("line") or 0), message=str(m.get("message", "")))


def _limit_list(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(x) for x in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def parse_problem_json(text: str, where: str = "problem_json") -> Problem:
    """A problem record from JSON: our format, or a HumanEval record (task_id, prompt, test, entry_point)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    require(isinstance(obj, dict), f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "task_id" in obj and "test" in obj and "id" not in obj:
        obj = {"id": str(obj["task_id"]), "prompt": obj.get("prompt"), "entry_point": obj.get("entry_point", ""),
               "tests": obj["test"], "harness": "humaneval", "source": "humaneval",
               "language": obj.get("language", "python")}
    return parse_record(Problem, obj, where, None)  # DataError, answered as INVALID_ARGUMENT


class FeedbackServicer(feedback_pb2_grpc.FeedbackServiceServicer):
    """FeedbackService over a store, a sandbox pool, a static analyzer and (optionally) a judge."""

    def __init__(self, cfg: FeedbackConfig, store: ArtifactStore, pool: SandboxPool,
                 analyzer: StaticAnalyzer | None = None, judge: Judge | None = None,
                 closers: Sequence[Callable[[], Any]] = (), self_port: int | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.pool = pool
        self.analyzer = analyzer if cfg.static.enabled else None
        self.judge = judge if cfg.judge.enabled else None
        self.weights = Weights(cfg.weights.pass_rate, cfg.weights.static, cfg.weights.judge)
        self._closers = list(closers)
        self.sharder = Sharder(cfg.peers, self_port, cfg.sandbox.max_batch, cfg.peer_timeout_s)
        self.last_shares: dict[str, int] = {}  # how many samples each replica ran in the last Evaluate

    def close(self) -> None:
        """Stop the sandbox workers and close the judge's connection (Server.stop calls this)."""
        self.pool.close()
        if self.analyzer is not None:
            self.analyzer.close()
        for close in self._closers:
            try:
                close()
            except Exception:  # closing one part must not keep the others open
                log.exception("error while closing")

    # -- validation helpers -------------------------------------------------------------------
    def _timeout(self, timeout_s: float, where: str) -> float:
        sb = self.cfg.sandbox
        require(timeout_s >= 0, f"{where}timeout_s must be >= 0, got {timeout_s:g}")
        require(timeout_s <= sb.max_timeout_s,
                f"{where}timeout_s {timeout_s:g} is above the configured maximum {sb.max_timeout_s:g}")
        return timeout_s or sb.timeout_s

    def _program(self, item: feedback_pb2.ExecuteRequest, where: str) -> tuple[str | Program, float]:
        if item.program:
            require(not item.problem_json,
                    f"{where}give either program or problem_json + completion, not both")
            program: str | Program = item.program
        else:
            require(bool(item.problem_json.strip()),
                    f"{where}empty program: give a program, or problem_json and completion")
            problem = parse_problem_json(item.problem_json, f"{where}problem_json")
            try:
                program = program_for(problem, item.completion)
            except ValueError as exc:  # an unknown language or harness
                raise BadRequest(f"{where}problem_json: {exc}") from None
        limit = self.cfg.sandbox.max_program_kb * 1024
        size = program_bytes(program)
        require(size <= limit, f"{where}program is {size} bytes, above the limit of {limit}")
        return program, self._timeout(item.timeout_s, where)

    def _run_programs(self, programs: Sequence[str | Program], timeouts: Sequence[float]) -> list[ExecResult]:
        """run_many per distinct timeout, results back in input order."""
        results: list[ExecResult | None] = [None] * len(programs)
        for t in dict.fromkeys(timeouts):
            idx = [i for i, ti in enumerate(timeouts) if ti == t]
            for i, r in zip(idx, self.pool.run_many([programs[i] for i in idx], timeout=t)):
                results[i] = r
        return [r for r in results if r is not None]

    # -- direct calls -------------------------------------------------------------------------
    def Execute(self, request: feedback_pb2.ExecuteRequest, context: grpc.ServicerContext) -> Any:
        program, timeout = self._program(request, "")
        return _exec_result(self.pool.run(program, timeout=timeout))

    def ExecuteBatch(self, request: feedback_pb2.ExecuteBatchRequest, context: grpc.ServicerContext) -> Any:
        n = len(request.items)
        require(n > 0, "items is empty: give at least one ExecuteRequest")
        require(n <= self.cfg.sandbox.max_batch,
                f"too many items: {n}, the limit is {self.cfg.sandbox.max_batch} per call")
        prepared = [self._program(item, f"items[{i}]: ") for i, item in enumerate(request.items)]
        results = self._run_programs([p for p, _ in prepared], [t for _, t in prepared])
        return feedback_pb2.ExecuteBatchResult(results=[_exec_result(r) for r in results])

    def Static(self, request: feedback_pb2.StaticRequest, context: grpc.ServicerContext) -> Any:
        if self.analyzer is None:
            raise Conflict("the static view is disabled in this server's configuration (feedback.static.enabled)")
        n = len(request.codes)
        require(n > 0, "codes is empty: give at least one answer")
        require(n <= self.cfg.static.max_codes, f"too many codes: {n}, the limit is {self.cfg.static.max_codes}")
        limit = self.cfg.sandbox.max_program_kb * 1024
        for i, code in enumerate(request.codes):
            require(len(code.encode("utf-8", "replace")) <= limit, f"codes[{i}] is above the limit of {limit} bytes")
        reports = self.analyzer.analyze(list(request.codes), ruff=request.ruff)
        return feedback_pb2.StaticResponse(results=[
            feedback_pb2.StaticResultMessage(
                pylint_score=r.pylint_score,
                messages=[_static_message(m) for m in [*r.messages, *(r.ruff_messages or [])]])
            for r in reports
        ])

    def Judge(self, request: feedback_pb2.JudgeRequest, context: grpc.ServicerContext) -> Any:
        if self.judge is None:
            raise Conflict("the judge is disabled in this server's configuration (feedback.judge.enabled)")
        require(bool(request.problem.strip()), "problem is empty")
        require(bool(request.answer.strip()), "answer is empty")
        result = self._judge_many([(request.problem, request.answer)], [""], request.rubric or None)[0]
        return feedback_pb2.JudgeResponse(score=result.score if result.score is not None else 0.0,
                                          max_score=result.max_score, rationale=result.rationale,
                                          parsed=result.score is not None)

    def _judge_many(self, items: Sequence[tuple[str, str]], ids: Sequence[str],
                    rubric: str | None = None) -> list[JudgeResult]:
        assert self.judge is not None
        try:
            return self.judge.score_many(items, rubric=rubric, sample_ids=ids)
        except (BadRequest, Unavailable):
            raise
        except grpc.RpcError as exc:
            raise Unavailable(f"judge model call failed: {exc.code().name}: {exc.details()}") from None
        except Exception as exc:
            raise Unavailable(f"judge model call failed: {type(exc).__name__}: {exc}") from None

    # -- evaluation over artifacts ------------------------------------------------------------
    def Evaluate(self, request: feedback_pb2.EvaluateRequest, context: grpc.ServicerContext) -> Any:
        require(bool(request.problems_uri), "problems_uri is empty")
        require(bool(request.samples_uri), "samples_uri is empty")
        require(bool(request.output_prefix), "output_prefix is empty")
        ks = sorted(set(request.k)) or list(self.cfg.default_k)
        require(all(k >= 1 for k in ks), f"every k must be >= 1, got {list(request.k)}")
        timeout = self._timeout(request.timeout_s, "")
        if request.run_static and self.analyzer is None:
            raise BadRequest("run_static was asked but the static view is disabled in this server's configuration")
        if request.run_judge and self.judge is None:
            raise BadRequest("run_judge was asked but the judge is not enabled in this server's configuration")
        problems_key = self.store.resolve(request.problems_uri)
        samples_key = self.store.resolve(request.samples_uri)
        prefix = normalize_key(self.store.resolve(request.output_prefix).strip("/"))
        parts = [p for p in prefix.split("/") if p]
        stage = parts[-1] if parts and parts[-1] in STAGES else "feedback"
        step = evaluate_step(prefix)
        if step == BASELINE:  # the base student's verdicts, a step of evaluate
            stage = "evaluate"
        else:
            step = None
        config = {"run_static": request.run_static, "run_judge": request.run_judge, "k": ks, "timeout_s": timeout}
        with stage_lock(self.store, prefix):
            owned = begin_stage(self.store, prefix, stage, inputs={"problems": problems_key, "samples": samples_key},
                                config=config, run_id=request.run.run_id or None,
                                cycle=request.run.cycle if request.run.run_id else None, step=step)
            if isinstance(owned, StageManifest):
                event(log, "evaluate reused", prefix=prefix, **{k: v for k, v in owned.metrics.items() if "@" in k})
                return self._response(owned, cached=True)
            return self._evaluate(request, owned, problems_key, samples_key, ks, timeout)

    def _execute(self, problems: Sequence[Problem], samples: Sequence[Sample], programs: Sequence[str | Program],
                 timeout: float) -> list[ExecResult]:
        """Every sample's verdict: here alone, or shared with the peers (``feedback.peers``)."""
        if not self.cfg.peers:
            return self.pool.run_many(programs, timeout)
        records: dict[str, str] = {}
        items = []
        for p, s in zip(problems, samples):
            if p.id not in records:
                records[p.id] = p.model_dump_json()
            items.append((records[p.id], s.completion))
        results, shares = self.sharder.run(items, timeout,
                                           lambda idx: self.pool.run_many([programs[i] for i in idx], timeout))
        self.last_shares = shares
        event(log, "evaluate shards", **{k.replace(".", "_").replace(":", "_"): v for k, v in shares.items()})
        return results

    def _static_reports(self, ex: ThreadPoolExecutor, languages: Sequence[str],
                        codes: Sequence[str]) -> list[StaticReport | None]:
        """pylint for Python answers, the compiler's warnings (in the sandbox, meanwhile) for the rest."""
        assert self.analyzer is not None
        reports: list[StaticReport | None] = [None] * len(codes)
        others = [i for i, lang in enumerate(languages) if lang != "python"]
        compiled = (ex.submit(CompiledStatic(self.pool).analyze, [(languages[i], codes[i]) for i in others],
                              self.cfg.sandbox.compile_timeout_s) if others else None)
        python = [i for i, lang in enumerate(languages) if lang == "python"]
        if python:
            for i, r in zip(python, self.analyzer.analyze([codes[i] for i in python], ruff=self.cfg.static.ruff)):
                reports[i] = r
        if compiled is not None:
            for i, report in zip(others, compiled.result()):
                reports[i] = report
        return reports

    @staticmethod
    def _response(manifest: StageManifest, cached: bool = False) -> feedback_pb2.EvaluateResponse:
        refs = {}
        for field, name in OUTPUTS.items():
            entry = manifest.outputs.get(name)
            refs[field] = common_pb2.ArtifactRef(uri=entry.uri, sha256=entry.sha256) if entry else None
        return feedback_pb2.EvaluateResponse(**{k: v for k, v in refs.items() if v is not None},
                                             metrics=manifest.metrics, duration_s=manifest.duration_s,
                                             cached=cached)

    def _evaluate(self, request: feedback_pb2.EvaluateRequest, writer: StageWriter, problems_key: str,
                  samples_key: str, ks: list[int], timeout: float) -> Any:
        t0 = time.monotonic()
        problems_list = self.store.get_jsonl(problems_key, Problem)
        samples = self.store.get_jsonl(samples_key, Sample)
        problems: dict[str, Problem] = {}
        for p in problems_list:
            require(p.id not in problems, f"{request.problems_uri}: duplicate problem id {p.id!r}")
            problems[p.id] = p
        require(bool(samples), f"{request.samples_uri}: no samples")
        unknown = sorted({s.problem_id for s in samples if s.problem_id not in problems})
        require(not unknown, f"{request.samples_uri}: samples for unknown problem ids "
                             f"{_limit_list(unknown)} (not in {request.problems_uri})")
        seen: set[str] = set()
        dupes = sorted({s.sample_id for s in samples if s.sample_id in seen or seen.add(s.sample_id)})
        require(not dupes, f"{request.samples_uri}: duplicate sample ids {_limit_list(dupes)}")
        try:
            programs = [program_for(problems[s.problem_id], s.completion) for s in samples]
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        codes = [static_code(problems[s.problem_id], s.completion) for s in samples]

        with ThreadPoolExecutor(3, thread_name_prefix="evaluate") as ex:
            exec_future = ex.submit(self._execute, [problems[s.problem_id] for s in samples], samples, programs,
                                    timeout)
            judge_future = None
            if request.run_judge:
                items = [(problems[s.problem_id].prompt, code) for s, code in zip(samples, codes)]
                judge_future = ex.submit(self._judge_many, items, [s.sample_id for s in samples])
            static_rows: list[StaticResult] | None = None
            notes: list[str] = []
            if request.run_static:
                reports = self._static_reports(ex, [problems[s.problem_id].language for s in samples], codes)
                static_rows = [r.to_record(s.sample_id) for r, s in zip(reports, samples) if r is not None]
                notes = sorted({n for r in reports if r is not None for n in r.notes})
                missing = sorted({problems[s.problem_id].language for r, s in zip(reports, samples) if r is None})
                notes += [f"static view skipped for {lang}: no toolchain" for lang in missing]
            results = exec_future.result()
            judge_rows = judge_future.result() if judge_future is not None else None

        verdicts = [Verdict(sample_id=s.sample_id, problem_id=s.problem_id, passed=r.passed, result=r.result,
                            duration_s=round(r.duration_s, 6)) for s, r in zip(samples, results)]
        order = [p.id for p in problems_list]
        feedback = aggregate(verdicts, static_rows, judge_rows, self.weights, order)
        metrics = summarize(verdicts, feedback, ks, static_rows, judge_rows, problems_total=len(problems))

        writer.put_jsonl(OUTPUTS["verdicts"], verdicts)
        if static_rows is not None:
            writer.put_jsonl(OUTPUTS["static"], static_rows)
        if judge_rows is not None:
            writer.put_jsonl(OUTPUTS["judge"], judge_rows)
        writer.put_jsonl(OUTPUTS["feedback"], feedback)
        writer.metrics.update(metrics)
        writer.extra.update({
                             "skipped_k": [k for k in ks if f"pass@{k}" not in metrics], "notes": notes,
                             "sandbox": json.loads(json.dumps(self.pool.info, default=str))})
        manifest = writer.commit()
        event(log, "evaluate done", prefix=writer.prefix, samples=len(samples),
              duration_s=round(time.monotonic() - t0, 3),
              **{k.replace("@", "_at_"): round(v, 4) for k, v in metrics.items() if k.startswith("pass@")})
        return self._response(manifest)
