"""The local executor: each stage's client runs in a thread of the controller's process, against
services on 127.0.0.1 (started by :mod:`iterkd.controller.services`, or given as targets)."""

from __future__ import annotations

import threading

from iterkd.controller.config import RunConfig
from iterkd.controller.executors.base import Executor, Handle, StageStatus
from iterkd.controller.planner import Step
from iterkd.controller.stagerun import Clients, Progress, StageCancelled, StageFailed, run_stage
from iterkd.shared.store import ArtifactStore


class _Running:
    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.status = StageStatus(state="running")


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, store: ArtifactStore, targets: dict[str, str], rpc_timeout_s: float = 6 * 3600) -> None:
        self.store = store
        self.clients = Clients(targets)
        self.rpc_timeout_s = rpc_timeout_s

    def submit(self, run_id: str, step: Step, run: RunConfig, attempt: int) -> Handle:
        running = _Running()
        handle = Handle(run_id, step, attempt, {"running": running})

        def progress(p: Progress) -> None:
            running.status = StageStatus(state="running", progress=p)

        def work() -> None:
            try:
                outcome = run_stage(self.store, run_id, step, run, self.clients, running.cancel.is_set, progress,
                                    self.rpc_timeout_s)
                running.status = StageStatus(state="succeeded", outcome=outcome)
            except StageCancelled:
                running.status = StageStatus(state="cancelled", message="cancelled", reason="Cancelled")
            except StageFailed as exc:
                running.status = StageStatus(state="failed", message=str(exc), reason=exc.code or "StageFailed",
                                             retryable=exc.retryable)
            except Exception as exc:  # a bug or a broken input: recorded as the stage's cause
                running.status = StageStatus(state="failed", message=f"{type(exc).__name__}: {exc}",
                                             reason="StageFailed", retryable=False)
            finally:
                running.done.set()

        threading.Thread(target=work, name=f"stage-{step.cycle}-{step.stage}", daemon=True).start()
        return handle

    def status(self, handle: Handle) -> StageStatus:
        running: _Running = handle.data["running"]
        return running.status

    def wait(self, handle: Handle, timeout: float) -> bool:
        running: _Running = handle.data["running"]
        return running.done.wait(timeout)

    def cancel(self, handle: Handle) -> None:
        running: _Running = handle.data["running"]
        running.cancel.set()
        running.done.wait(60)

    def close(self) -> None:
        self.clients.close()
