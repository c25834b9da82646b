"""The Executor interface: where a stage's client runs (in this process, or as a Kubernetes Job).

An executor submits one stage at a time for (run, cycle, stage, attempt), reports its status,
returns its logs and cancels it. It never decides what runs next (the planner does) and never
reads or writes artifacts beyond what the stage client confirms.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

from iterkd.controller.config import RunConfig
from iterkd.controller.planner import Step
from iterkd.controller.stagerun import Outcome, Progress

HandleState = Literal["pending", "running", "succeeded", "failed", "cancelled"]


class Stopped(BaseException):
    """The executor was told to stop driving (the controller shuts down or lost its Lease). The
    stage's work goes on (a Job keeps running) and the run stays as it is: the next controller
    adopts the work. A BaseException, so that nothing records it as the stage's failure."""


@dataclass
class StageStatus:
    state: HandleState
    outcome: Outcome | None = None
    message: str = ""           # the failure's cause, or why a pending stage waits (e.g. Unschedulable)
    reason: str = ""            # a short machine word: StageFailed, Unschedulable, ImagePullFailed, ...
    retryable: bool = False
    progress: Progress | None = None


@dataclass
class Handle:
    run_id: str
    step: Step
    attempt: int
    data: dict[str, Any] = field(default_factory=dict)


class Executor(ABC):
    name = "executor"

    @abstractmethod
    def submit(self, run_id: str, step: Step, run: RunConfig, attempt: int) -> Handle: ...

    @abstractmethod
    def status(self, handle: Handle) -> StageStatus: ...

    @abstractmethod
    def cancel(self, handle: Handle) -> None: ...

    def resumable(self, run_id: str, step: Step, attempt: int) -> bool:
        """Whether ``attempt``'s work is still under way outside this process (a Job that has not
        finished), so a restarted controller continues it instead of starting a new attempt."""
        return False

    def logs(self, handle: Handle) -> str:
        return ""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the executor holds (channels, service processes)."""
