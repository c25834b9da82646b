"""Drives a run: the planner picks the next stage, an executor runs it, the run record and the log
tell the story. Nothing here runs a service's code or writes a stage's artifacts.

Level-triggered: before every step the state is recomputed from the manifests that exist, so a
controller that was killed at any point resumes where the artifacts say (``iterkd run --resume``):
finished stages are never redone, an interrupted one runs again with its attempt counter raised.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iterkd.controller.config import RetryConfig, RunConfig
from iterkd.controller.executors.base import Executor, StageStatus, Stopped
from iterkd.controller.inputs import load_problem_set
from iterkd.controller.planner import EVAL_INPUT, POOL_INPUT, Step, later_steps, next_step
from iterkd.controller.runs import TERMINAL, RunRecord, RunStore, StageRecord, now
from iterkd.controller.stagerun import Progress, wait_between_attempts
from iterkd.shared.errors import Conflict
from iterkd.shared.log import event, get_logger
from iterkd.shared.stages import STAGES, check_run_id, read_manifest, run_input_key, run_prefix, stage_prefix
from iterkd.shared.store import ArtifactStore

log = get_logger("iterkd.controller")

# The metrics each transition line shows (all of a stage's metrics stay in its manifest).
KEY_METRICS = {
    "teacher-solve": ("problems", "samples"),
    "verify": ("pass_rate", "samples"),
    "train": ("steps", "sft_loss", "loss", "margin", "data_sft_examples", "data_contrastive_pairs", "data_replayed"),
    "student-solve": ("problems", "samples"),
    "feedback": ("pass_rate", "quality_mean", "static_mean", "judge_mean"),
    "evolve": ("next_pool", "new_questions", "mastered.problems", "learning.problems", "struggling.problems"),
    "evaluate": ("pass@1", "problems"),
}
HEARTBEAT_S = 5.0
CANCEL_CHECK_S = 0.5


@dataclass
class Transition:
    """One change of a stage's or the run's state, as the log, the events file and watchers see it."""

    run_id: str
    cycle: int
    stage: str
    state: str
    attempt: int = 0
    duration_s: float | None = None
    metrics: dict[str, float] | None = None
    message: str = ""
    progress: float = 0.0

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run": self.run_id, "cycle": self.cycle, "stage": self.stage, "state": self.state,
                               "attempt": self.attempt, "progress": round(self.progress, 4)}
        if self.duration_s is not None:
            out["duration_s"] = round(self.duration_s, 3)
        if self.metrics:
            out.update({k: round(v, 4) for k, v in self.metrics.items()})
        if self.message:
            out["message"] = self.message
        return out


Listener = Callable[[Transition], None]
ProgressListener = Callable[[Step, Progress], None]


def new_run_id() -> str:
    return datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S")


def _key_metrics(stage: str, metrics: dict[str, float]) -> dict[str, float]:
    return {k: metrics[k] for k in KEY_METRICS.get(stage, ()) if k in metrics}


class Orchestrator:
    def __init__(self, store: ArtifactStore, executor: Executor, retry: RetryConfig | None = None,
                 listeners: list[Listener] | None = None, on_progress: ProgressListener | None = None,
                 poll_s: float = 0.2) -> None:
        self.store = store
        self.runs = RunStore(store)
        self.executor = executor
        self.retry = retry or RetryConfig()
        self.listeners = list(listeners or [])
        self.on_progress = on_progress
        self.poll_s = poll_s

    # -- creating and preparing runs ---------------------------------------------------------------
    def create(self, run: RunConfig, run_id: str | None = None, base_dir: Path | None = None) -> RunRecord:
        """Write the run's inputs and its record; the run is then pending."""
        run_id = check_run_id(run_id or new_run_id())
        if self.runs.exists(run_id):
            raise Conflict(f"run {run_id!r} already exists; continue it with `iterkd run --resume {run_id}`")
        pool = load_problem_set(run.pool, "run.pool", base_dir)
        evalset = load_problem_set(run.eval, "run.eval", base_dir)
        self.store.put_jsonl(run_input_key(run_id, POOL_INPUT), pool)
        self.store.put_jsonl(run_input_key(run_id, EVAL_INPUT), evalset)
        record = RunRecord.new(run_id, run.cycles, run.model_dump(mode="json", by_alias=True),
                               executor=self.executor.name)
        self.runs.save(record)
        self._emit(record, Transition(run_id, 0, "", "pending", message=f"pool {len(pool)} problems, "
                                      f"eval {len(evalset)} problems, {run.cycles} cycles"))
        return record

    def rerun_from(self, run_id: str, start: Step) -> list[str]:
        """Set aside ``start``'s outputs and every later stage's (moved under ``set-aside/``, never
        silently reused) so that the run continues from ``start``. Returns the prefixes moved."""
        record = self.runs.load(run_id)
        if start.cycle > record.cycles:
            raise Conflict(f"run {run_id} has {record.cycles} cycles; there is no cycle {start.cycle}")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        moved = []
        for step in later_steps(record.steps, start):
            prefix = stage_prefix(run_id, step.cycle, step.stage)
            keys = self.store.list(prefix)
            if keys:
                target = f"{run_prefix(run_id)}/set-aside/{stamp}/cycle-{step.cycle:03d}/{step.stage}"
                for key in keys:
                    self.store.put_bytes(target + key[len(prefix):], self.store.get_bytes(key))
                for key in keys:
                    self.store.delete(key)
                moved.append(prefix)
            rec = record.record(step.cycle, step.stage)
            rec.state, rec.finished_at, rec.duration_s, rec.metrics, rec.outputs = "pending", None, None, {}, {}
            rec.message = "set aside by --from-stage" if keys else ""
        record.state = "pending"
        record.message = f"re-running from cycle {start.cycle} {start.stage}"
        self.runs.save(record)
        self._emit(record, Transition(run_id, start.cycle, start.stage, "pending",
                                      message=f"set aside {len(moved)} finished stage(s)"))
        return moved

    # -- driving --------------------------------------------------------------------------------------
    def reconcile(self, record: RunRecord) -> None:
        """Recompute every stage's state from the manifests: the artifacts are the truth."""
        for step in record.steps:
            rec = record.record(step.cycle, step.stage)
            manifest = read_manifest(self.store, stage_prefix(record.run_id, step.cycle, step.stage))
            if manifest is not None and rec.state != "succeeded":
                rec.state = "succeeded"
                rec.metrics = dict(manifest.metrics)
                rec.outputs = {k: v.uri for k, v in manifest.outputs.items()}
                rec.finished_at = rec.finished_at or manifest.finished_at
                rec.duration_s = rec.duration_s or manifest.duration_s
                rec.message = rec.message or "found finished"
            elif manifest is None and rec.state in ("succeeded", "running"):
                rec.state = "pending"  # interrupted, or its outputs were removed: it runs again

    def drive(self, run_id: str) -> RunRecord:
        """Run stages until the run succeeds, fails or is cancelled; returns the final record."""
        record = self.runs.load(run_id)
        run = RunConfig.model_validate(record.config)
        self.runs.clear_cancel(run_id)
        self.reconcile(record)
        record.state, record.message = "running", ""
        self.runs.save(record)
        self._emit(record, Transition(run_id, 0, "", "running", message=f"executor {self.executor.name}"))
        done = {Step(r.cycle, r.stage) for r in record.stages if r.state == "succeeded"}
        try:
            while True:
                step = next_step(self.store, run_id, record.steps, done)
                if step is None:
                    record.state, record.message = "succeeded", f"{record.cycles} cycle(s) done"
                    self.runs.save(record)
                    self._emit(record, Transition(run_id, record.cycles, "", "succeeded", message=record.message))
                    return record
                if not self._run_step(record, run, step):
                    return record
        except BaseException as exc:  # KeyboardInterrupt, a store failure: leave the record truthful
            if record.state == "running" and not isinstance(exc, Stopped):  # Stopped: the next controller adopts
                record.state, record.message = "failed", f"controller stopped: {type(exc).__name__}: {exc}"
                self.runs.save(record)
                self._emit(record, Transition(run_id, 0, "", "failed", message=record.message))
            raise

    def _run_step(self, record: RunRecord, run: RunConfig, step: Step) -> bool:
        """One stage, with retries of retryable failures. False when the run stops here."""
        rec = record.record(step.cycle, step.stage)
        tries = 0
        while True:
            tries += 1
            if tries == 1 and rec.attempt > 0 and self.executor.resumable(record.run_id, step, rec.attempt):
                # The interrupted attempt's work still runs (a Job a previous controller made):
                # continue it under the same attempt number instead of starting another.
                rec.state, rec.finished_at, rec.message = "running", None, "adopted after a controller restart"
            else:
                rec.attempt += 1
                rec.state, rec.started_at, rec.finished_at, rec.message = "running", now(), None, ""
            self.runs.save(record)
            self._emit(record, Transition(record.run_id, step.cycle, step.stage, "running", rec.attempt,
                                          message=rec.message))
            t0 = time.monotonic()
            status = self._wait(record, step, rec)
            rec.duration_s = round(time.monotonic() - t0, 3)
            rec.finished_at = now()
            if status.state == "succeeded" and status.outcome is not None:
                rec.state, rec.metrics, rec.outputs = "succeeded", status.outcome.metrics, status.outcome.outputs
                rec.message = "cached" if status.outcome.cached else ""
                self.runs.save(record)
                self._emit(record, Transition(record.run_id, step.cycle, step.stage, "succeeded", rec.attempt,
                                              rec.duration_s, _key_metrics(step.stage, rec.metrics), rec.message))
                return True
            if status.state == "cancelled":
                reason = self.runs.cancel_requested(record.run_id) or status.message or "cancelled"
                rec.state, rec.message = "cancelled", reason
                record.state, record.message = "cancelled", reason
                self.runs.save(record)
                self._emit(record, Transition(record.run_id, step.cycle, step.stage, "cancelled", rec.attempt,
                                              rec.duration_s, message=reason))
                return False
            cause = f"{status.reason}: {status.message}" if status.reason else status.message
            if status.retryable and tries < self.retry.max_attempts:
                rec.message = f"attempt {rec.attempt} failed, retrying: {cause}"
                self.runs.save(record)
                self._emit(record, Transition(record.run_id, step.cycle, step.stage, "retrying", rec.attempt,
                                              rec.duration_s, message=cause))
                wait_between_attempts(self.retry.backoff_s * tries,
                                      lambda: self.runs.cancel_requested(record.run_id) is not None)
                continue
            rec.state, rec.message = "failed", cause
            record.state = "failed"
            record.message = f"cycle {step.cycle} {step.stage} failed: {cause}"
            self.runs.save(record)
            self._emit(record, Transition(record.run_id, step.cycle, step.stage, "failed", rec.attempt,
                                          rec.duration_s, message=cause))
            return False

    def _wait(self, record: RunRecord, step: Step, rec: StageRecord) -> StageStatus:
        handle = self.executor.submit(record.run_id, step, RunConfig.model_validate(record.config), rec.attempt)
        last_beat = last_check = 0.0
        last_progress = None
        while True:
            status = self.executor.status(handle)
            if status.state in TERMINAL:
                return status
            if status.progress is not None and status.progress is not last_progress and self.on_progress:
                last_progress = status.progress
                self.on_progress(step, status.progress)
            if time.monotonic() - last_beat > HEARTBEAT_S:
                last_beat = time.monotonic()
                self._heartbeat(record.run_id)
            if time.monotonic() - last_check > CANCEL_CHECK_S:
                last_check = time.monotonic()
                if self.runs.cancel_requested(record.run_id) is not None:
                    self.executor.cancel(handle)
                    return self.executor.status(handle)
            wait = getattr(self.executor, "wait", None)
            if wait is not None:
                wait(handle, self.poll_s)
            else:
                time.sleep(self.poll_s)

    def _heartbeat(self, run_id: str) -> None:
        self.store.put_json(self.runs.key(run_id, "controller.json"),
                            {"host": socket.gethostname(), "pid": os.getpid(), "at": now(), "t": time.time()})

    def _emit(self, record: RunRecord, t: Transition) -> None:
        t.progress = record.progress
        fields = t.fields()
        event(log, "transition", **fields)
        self.runs.add_event(record.run_id, fields)
        for listener in self.listeners:
            listener(t)


def controller_alive(store: ArtifactStore, run_id: str, within_s: float = 3 * HEARTBEAT_S) -> bool:
    """Whether a controller drives ``run_id``: its heartbeat is fresh, and, when it ran on this host,
    its process still exists (a killed `iterkd run` is known dead at once, not 15 s later)."""
    try:
        beat = store.get_json(RunStore.key(run_id, "controller.json"))
    except Exception:
        return False
    if time.time() - float(beat.get("t", 0)) >= within_s:
        return False
    pid = beat.get("pid")
    if beat.get("host") == socket.gethostname() and isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: alive
            return True
    return True


def parse_step(stage: str, cycle: int | None, record: RunRecord) -> Step:
    """``--from-stage S [--cycle C]``: C defaults to the first cycle where S is not finished."""
    if stage not in STAGES:
        raise ValueError(f"--from-stage: unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    if cycle is None:
        cycle = next((r.cycle for r in record.stages if r.stage == stage and r.state != "succeeded"), record.cycles)
    if not 1 <= cycle <= record.cycles:
        raise ValueError(f"--cycle: run {record.run_id} has cycles 1..{record.cycles}, not {cycle}")
    step = Step(cycle, stage)
    if step not in record.steps:
        raise ValueError(f"--from-stage {stage}: cycle {cycle} of run {record.run_id} does not run {stage} (the "
                         "last cycle leaves out student-solve, feedback and evolve unless the run sets "
                         "evolve_last_cycle); name an earlier --cycle")
    return step

