"""The gRPC ControllerService: thin, over the orchestrator and the run records in the store.

StartRun creates (or resumes) a run and drives it in a background thread with the server's
executor; GetRun / ListRuns read the records and manifests; WatchRun replays the run's transitions
and follows new ones until the run ends; CancelRun asks the driver to cancel the current stage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import yaml

from iterkd.controller.config import RetryConfig, RunConfig
from iterkd.controller.executors.base import Executor
from iterkd.controller.orchestrator import Orchestrator, controller_alive, parse_step
from iterkd.controller.runs import TERMINAL, RunRecord, RunStore
from iterkd.controller.status import run_status
from iterkd.shared.config import ConfigError, parse_config
from iterkd.shared.errors import BadRequest, Conflict
from iterkd.shared.log import get_logger
from iterkd.shared.store import ArtifactStore
from iterkd.v1 import controller_pb2, controller_pb2_grpc

log = get_logger("iterkd.controller.service")


def _stage_msg(r: Any) -> controller_pb2.StageStatus:
    return controller_pb2.StageStatus(
        cycle=r.cycle, stage=r.stage, state=r.state, attempt=r.attempt, duration_s=r.duration_s or 0.0,
        metrics={k: float(v) for k, v in r.metrics.items()}, message=r.message, started_at=r.started_at or "",
        finished_at=r.finished_at or "")


def status_message(store: ArtifactStore, record: RunRecord, details: bool = True) -> controller_pb2.RunStatus:
    current = record.current
    msg = controller_pb2.RunStatus(
        run_id=record.run_id, state=record.state, cycles=record.cycles,
        current_cycle=current.cycle if current else record.cycles, current_stage=current.stage if current else "",
        created_at=record.created_at, updated_at=record.updated_at, progress=record.progress,
        message=record.message, stages=[_stage_msg(r) for r in record.stages])
    if details:
        for c in run_status(store, record)["cycles"]:
            m = c["metrics"]
            cm = controller_pb2.CycleMetrics(levels=m["levels"] or {})
            for name in ("student_pass_at_1", "teacher_pass_rate", "sft_loss", "contrastive_margin", "pool_size"):
                if m[name] is not None:
                    setattr(cm, name, m[name])
            msg.cycle_status.add(cycle=c["cycle"], state=c["state"], metrics=cm,
                                 stages=[_stage_msg(record.record(c["cycle"], s["name"])) for s in c["stages"]])
    return msg


def parse_run_yaml(text: str) -> RunConfig:
    """A run section, or a whole configuration file with a ``run`` section."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise BadRequest(f"config_yaml: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise BadRequest("config_yaml: expected a mapping (the run section)")
    section = data.get("run", data) if "run" in data else data
    try:
        return parse_config(section, RunConfig, "config_yaml: run")
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None


class ControllerServicer(controller_pb2_grpc.ControllerServiceServicer):
    def __init__(self, store: ArtifactStore, executor_factory: Callable[[], Executor],
                 retry: RetryConfig | None = None, launcher: Callable[[RunRecord], None] | None = None) -> None:
        """``launcher``: how a created or resumed run gets driven when not in this process (in a
        cluster: its DistillationRun is created and the operator drives it)."""
        self.store = store
        self.launcher = launcher
        self.runs = RunStore(store)
        self.executor_factory = executor_factory
        self.retry = retry or RetryConfig()
        self._drivers: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def _orchestrator(self) -> Orchestrator:
        return Orchestrator(self.store, self.executor_factory(), self.retry)

    def _drive(self, run_id: str) -> None:
        with self._lock:
            thread = self._drivers.get(run_id)
            if thread is not None and thread.is_alive():
                raise Conflict(f"run {run_id} is already being driven by this controller")
            orch = self._orchestrator()

            def work() -> None:
                try:
                    orch.drive(run_id)
                except Exception:
                    log.exception("run driver stopped", extra={"run": run_id})
                finally:
                    orch.executor.close()

            thread = threading.Thread(target=work, name=f"run-{run_id}", daemon=True)
            self._drivers[run_id] = thread
            thread.start()

    # -- RPCs ----------------------------------------------------------------------------------------
    def StartRun(self, request: controller_pb2.StartRunRequest, context: grpc.ServicerContext) -> Any:
        orch = self._orchestrator()
        if request.resume:
            if not request.run_id:
                raise BadRequest("resume needs run_id")
            record = self.runs.load(request.run_id)
            if request.from_stage:
                try:
                    step = parse_step(request.from_stage, request.from_cycle or None, record)
                except ValueError as exc:
                    raise BadRequest(str(exc)) from None
                orch.rerun_from(record.run_id, step)
        else:
            if request.from_stage:
                raise BadRequest("from_stage needs resume and the run_id of an existing run")
            record = orch.create(parse_run_yaml(request.config_yaml), request.run_id or None)
        orch.executor.close()
        if self.launcher is not None:
            self.launcher(self.runs.load(record.run_id))
        else:
            self._drive(record.run_id)
        return status_message(self.store, self.runs.load(record.run_id), details=False)

    def GetRun(self, request: controller_pb2.GetRunRequest, context: grpc.ServicerContext) -> Any:
        record = self.runs.load(request.run_id) if request.run_id else self.runs.latest()
        return status_message(self.store, record)

    def ListRuns(self, request: Any, context: grpc.ServicerContext) -> Any:
        return controller_pb2.ListRunsResponse(runs=[status_message(self.store, r, details=False)
                                                     for r in self.runs.list()])

    def WatchRun(self, request: controller_pb2.WatchRunRequest, context: grpc.ServicerContext
                 ) -> Iterator[controller_pb2.RunEvent]:
        record = self.runs.load(request.run_id)
        seen = 0
        while context.is_active():
            events = self.runs.events(record.run_id)
            for e in events[seen:]:
                known = {"ts", "run", "cycle", "stage", "state", "attempt", "duration_s", "message", "progress"}
                yield controller_pb2.RunEvent(
                    run_id=record.run_id, cycle=int(e.get("cycle") or 0), stage=e.get("stage") or "",
                    state=e.get("state", ""), attempt=int(e.get("attempt") or 0),
                    duration_s=float(e.get("duration_s") or 0.0), message=str(e.get("message") or ""),
                    progress=float(e.get("progress") or 0.0), ts=str(e.get("ts", "")),
                    metrics={k: float(v) for k, v in e.items() if k not in known and isinstance(v, (int, float))})
            seen = len(events)
            state = self.runs.load(record.run_id).state
            last = events[-1] if events else {}
            if state in TERMINAL and not last.get("stage") and last.get("state") == state:
                return
            time.sleep(0.5)

    def CancelRun(self, request: controller_pb2.CancelRunRequest, context: grpc.ServicerContext) -> Any:
        record = self.runs.load(request.run_id)
        if record.state not in TERMINAL:
            self.runs.request_cancel(record.run_id)
            driver = self._drivers.get(record.run_id)
            if (driver is None or not driver.is_alive()) and not controller_alive(self.store, record.run_id):
                record.state, record.message = "cancelled", "cancelled by the user (no controller was driving it)"
                self.runs.save(record)
            elif driver is not None:
                driver.join(timeout=30)
        return status_message(self.store, self.runs.load(record.run_id), details=False)

    def close(self) -> None:
        for run_id, thread in list(self._drivers.items()):
            if thread.is_alive():
                self.runs.request_cancel(run_id, "the controller is shutting down")
                thread.join(timeout=30)
