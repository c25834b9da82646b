"""One stage, run as its owning service's RPC: the client that every executor uses.

The local executor calls :func:`run_stage` in the controller's process; in a cluster a stage Job
runs ``iterkd stage run`` (this same function) in the controller image. It builds the request
from the run configuration and the planner's input keys, calls the RPC with a deadline, lets a
cancel interrupt the call (the RPC is cancelled, not waited out), and confirms the stage by its
manifest. It never runs a service's code and never writes an artifact.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from iterkd.controller.config import RunConfig, Sampling
from iterkd.controller.planner import Step, stage_inputs
from iterkd.shared.rpc import channel
from iterkd.shared.stages import BY_NAME, baseline_prefix, read_manifest, stage_prefix
from iterkd.shared.store import ArtifactStore, join
from iterkd.v1 import (
    common_pb2,
    feedback_pb2,
    feedback_pb2_grpc,
    questions_pb2,
    questions_pb2_grpc,
    teacher_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)

STUBS = {
    "teacher": teacher_pb2_grpc.TeacherServiceStub,
    "trainer": trainer_pb2_grpc.TrainerServiceStub,
    "feedback": feedback_pb2_grpc.FeedbackServiceStub,
    "questions": questions_pb2_grpc.QuestionServiceStub,
}
# Status codes worth another attempt: the service was restarting, overloaded or cut off.
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED,
             grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN)


class StageCancelled(Exception):
    """The stage was cancelled while its RPC ran."""


class StageFailed(Exception):
    """The stage's RPC failed; ``retryable`` says whether another attempt may succeed."""

    def __init__(self, message: str, retryable: bool, code: str = "") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code


@dataclass
class Progress:
    """What a stage reports while it runs (the trainer streams steps; other stages only finish)."""

    step: int = 0
    total: int = 0
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Outcome:
    metrics: dict[str, float]
    outputs: dict[str, str]
    cached: bool


class Clients:
    """One channel and stub per service target."""

    def __init__(self, targets: dict[str, str]) -> None:
        self.targets = dict(targets)
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, Any] = {}

    def stub(self, service: str) -> Any:
        if service not in self._stubs:
            if service not in self.targets:
                raise StageFailed(f"no address for the {service} service", retryable=False)
            ch = channel(self.targets[service])
            self._channels[service] = ch
            self._stubs[service] = STUBS[service](ch)
        return self._stubs[service]

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()
        self._stubs.clear()


def _params(s: Sampling, seed: int) -> common_pb2.GenerationParams:
    return common_pb2.GenerationParams(n=s.n, max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                                       top_p=s.top_p, seed=seed, use_chat_template=s.use_chat_template)


def _seed(run: RunConfig, step: Step, salt: int) -> int:
    """Each (run seed, cycle, stage) samples with its own seed, so reruns are reproducible."""
    return run.seed * 1_000_003 + step.cycle * 101 + salt


class _Call:
    """Runs one RPC so that a cancel from another thread interrupts it."""

    def __init__(self, cancelled: Callable[[], bool], poll_s: float = 0.2) -> None:
        self.cancelled = cancelled
        self.poll_s = poll_s

    def unary(self, method: Any, request: Any, timeout: float) -> Any:
        future = method.future(request, timeout=timeout)
        while True:
            try:
                return future.result(timeout=self.poll_s)
            except grpc.FutureTimeoutError:
                if self.cancelled():
                    future.cancel()
                    raise StageCancelled() from None
            except grpc.RpcError as exc:
                raise _failed(exc) from None

    def stream(self, method: Any, request: Any, timeout: float) -> Iterator[Any]:
        call = method(request, timeout=timeout)
        done = threading.Event()
        stop = threading.Event()

        def watch() -> None:
            while not done.wait(self.poll_s):
                if self.cancelled():
                    stop.set()
                    call.cancel()
                    return

        watcher = threading.Thread(target=watch, name="stage-cancel-watch", daemon=True)
        watcher.start()
        try:
            yield from call
        except grpc.RpcError as exc:
            if stop.is_set():
                raise StageCancelled() from None
            raise _failed(exc) from None
        finally:
            done.set()
        if stop.is_set():
            raise StageCancelled()


def _failed(exc: grpc.RpcError) -> StageFailed:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return StageFailed(f"{code.name}: {details}", retryable=code in RETRYABLE, code=code.name)


def run_stage(store: ArtifactStore, run_id: str, step: Step, run: RunConfig, clients: Clients,
              cancelled: Callable[[], bool] = lambda: False, on_progress: Callable[[Progress], None] | None = None,
              timeout_s: float = 6 * 3600) -> Outcome:
    """Run ``step`` through its service's RPC(s) and return its manifest's metrics and outputs."""
    spec = BY_NAME[step.stage]
    keys = stage_inputs(store, run_id, step)
    uri = {name: store.uri(key) for name, key in keys.items()}
    prefix = stage_prefix(run_id, step.cycle, step.stage)
    rc = common_pb2.RunCycle(run_id=run_id, cycle=step.cycle)
    call = _Call(cancelled)
    st = run.stages
    report = on_progress or (lambda p: None)
    cached = False

    if step.stage == "teacher-solve":
        s = st.teacher_solve
        reply = call.unary(clients.stub("teacher").Solve, common_pb2.SolveRequest(
            run=rc, problems_uri=uri["problems"], samples_uri=store.uri(join(prefix, "samples.jsonl")),
            params=_params(s, _seed(run, step, 1)), include_references=s.include_references), timeout_s)
        cached = reply.cached
    elif step.stage in ("verify", "feedback"):
        is_feedback = step.stage == "feedback"
        reply = call.unary(clients.stub("feedback").Evaluate, feedback_pb2.EvaluateRequest(
            run=rc, problems_uri=uri["problems"], samples_uri=uri["samples"], output_prefix=store.uri(prefix),
            run_static=is_feedback and st.feedback.static, run_judge=is_feedback and st.feedback.judge,
            timeout_s=(st.feedback.timeout_s if is_feedback else st.verify.timeout_s)), timeout_s)
        cached = reply.cached
    elif step.stage == "train":
        request = trainer_pb2.TrainRequest(
            run=rc, problems_uri=uri["problems"], samples_uri=uri["samples"], verdicts_uri=uri["verdicts"],
            replay_uri=uri.get("replay", "") if st.train.replay else "",
            config_json=json.dumps(st.train.config) if st.train.config else "")
        last = None
        for rec in call.stream(clients.stub("trainer").Train, request, timeout_s):
            last = rec
            if rec.state == "training":
                report(Progress(step=rec.step, total=rec.total_steps, message=f"loss {rec.loss:.3f}",
                                metrics={"loss": rec.loss, "margin": rec.margin,
                                         "tokens_per_second": rec.tokens_per_second}))
            elif rec.state != "done":
                report(Progress(message=rec.state))
        if last is None or last.state != "done":
            detail = last.message if last is not None else "the stream ended without a result"
            raise StageFailed(f"training did not finish: {detail}", retryable=last is None)
        cached = last.cached
    elif step.stage == "student-solve":
        s = st.student_solve
        reply = call.unary(clients.stub("trainer").Solve, common_pb2.SolveRequest(
            run=rc, problems_uri=uri["problems"], samples_uri=store.uri(join(prefix, "samples.jsonl")),
            params=_params(s, _seed(run, step, 2))), timeout_s)
        cached = reply.cached
    elif step.stage == "evolve":
        reply = call.unary(clients.stub("questions").Evolve, questions_pb2.EvolveRequest(
            run=rc, pool_uri=uri["pool"], feedback_uri=uri["feedback"],
            next_pool_uri=store.uri(join(prefix, "next_pool.jsonl")),
            config_json=json.dumps(st.evolve.config) if st.evolve.config else ""), timeout_s)
        cached = reply.cached
    elif step.stage == "evaluate":
        s = st.evaluate

        def evaluate(student: common_pb2.RunCycle, out: str) -> Any:
            samples = store.uri(join(out, "solve", "samples.jsonl"))
            call.unary(clients.stub("trainer").Solve, common_pb2.SolveRequest(
                run=student, problems_uri=uri["problems"], samples_uri=samples,
                params=_params(s, _seed(run, step, 3))), timeout_s)
            return call.unary(clients.stub("feedback").Evaluate, feedback_pb2.EvaluateRequest(
                run=rc, problems_uri=uri["problems"], samples_uri=samples, output_prefix=store.uri(out), k=s.k,
                timeout_s=s.timeout_s), timeout_s)

        if s.baseline and step.cycle == 1:  # the trainer serves the base student for cycle 0
            evaluate(common_pb2.RunCycle(run_id=run_id, cycle=0), baseline_prefix(run_id))
        cached = evaluate(rc, prefix).cached
    else:  # pragma: no cover - STAGES and this function change together
        raise StageFailed(f"no client for stage {step.stage!r}", retryable=False)

    manifest = read_manifest(store, prefix)
    if manifest is None:
        raise StageFailed(f"{spec.service}.{spec.rpc} returned but {store.uri(prefix)} has no manifest",
                          retryable=True)
    return Outcome(metrics=dict(manifest.metrics), outputs={k: v.uri for k, v in manifest.outputs.items()},
                   cached=cached)


def wait_between_attempts(seconds: float, cancelled: Callable[[], bool]) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cancelled():
            raise StageCancelled()
        time.sleep(min(0.2, max(0.0, end - time.monotonic())))
