"""Run and stage records, persisted in the store beside the run's artifacts.

``runs/{run}/run.json`` holds the run's configuration and one record per (cycle, stage) — state,
attempt, start, end, duration, key metrics and, for a failure, its cause — so a restarted
controller continues the attempt counters and the history where they were. Whether a stage is
*done* is never read from here: the stage's manifest decides (see :mod:`iterkd.controller.planner`).
``runs/{run}/events.jsonl`` is the run's story, one transition per line (``iterkd logs``), and
``runs/{run}/cancel.json`` is a cancel request from another process (``iterkd cancel``).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from iterkd.controller.planner import Step, all_steps
from iterkd.shared.errors import NotFound
from iterkd.shared.stages import run_prefix
from iterkd.shared.store import ArtifactNotFound, ArtifactStore

RunState = Literal["pending", "running", "succeeded", "failed", "cancelled"]
StageState = Literal["pending", "running", "succeeded", "failed", "cancelled"]
TERMINAL = ("succeeded", "failed", "cancelled")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class StageRecord(BaseModel):
    cycle: int
    stage: str
    state: StageState = "pending"
    attempt: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    message: str = ""
    outputs: dict[str, str] = Field(default_factory=dict)  # output name -> URI


class RunRecord(BaseModel):
    run_id: str
    state: RunState = "pending"
    created_at: str = Field(default_factory=now)
    updated_at: str = Field(default_factory=now)
    cycles: int
    config: dict[str, Any] = Field(default_factory=dict)  # the run section, as given
    stages: list[StageRecord] = Field(default_factory=list)
    message: str = ""
    executor: str = "local"

    @classmethod
    def new(cls, run_id: str, cycles: int, config: dict[str, Any], executor: str = "local") -> RunRecord:
        steps = all_steps(cycles, bool(config.get("evolve_last_cycle", False)))
        return cls(run_id=run_id, cycles=cycles, config=config, executor=executor,
                   stages=[StageRecord(cycle=s.cycle, stage=s.stage) for s in steps])

    @property
    def steps(self) -> list[Step]:
        """The run's steps in order, as fixed when it was created (see :func:`planner.all_steps`)."""
        return [Step(r.cycle, r.stage) for r in self.stages]

    def record(self, cycle: int, stage: str) -> StageRecord:
        for r in self.stages:
            if r.cycle == cycle and r.stage == stage:
                return r
        raise KeyError(f"run {self.run_id} has no stage {stage!r} in cycle {cycle}")

    @property
    def total(self) -> int:
        return len(self.stages)

    @property
    def progress(self) -> float:
        """Finished stages over the run's stages: a fixed denominator, never goes back
        (a stage set aside by --from-stage is pending again, and counts again when it finishes)."""
        if not self.stages:  # a record of a spec refused before any stage existed
            return 0.0
        return sum(r.state == "succeeded" for r in self.stages) / self.total

    @property
    def current(self) -> StageRecord | None:
        running = [r for r in self.stages if r.state == "running"]
        if running:
            return running[0]
        open_ = [r for r in self.stages if r.state != "succeeded"]
        return open_[0] if open_ else None


class RunStore:
    """Reads and writes run records, events and cancel requests in an artifact store."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    @staticmethod
    def key(run_id: str, name: str) -> str:
        return f"{run_prefix(run_id)}/{name}"

    def exists(self, run_id: str) -> bool:
        return self.store.exists(self.key(run_id, "run.json"))

    def load(self, run_id: str) -> RunRecord:
        try:
            data = self.store.get_bytes(self.key(run_id, "run.json"))
        except ArtifactNotFound:
            raise NotFound(f"no run {run_id!r} in the store at {self.store.uri('runs')}") from None
        return RunRecord.model_validate_json(data)

    def save(self, record: RunRecord) -> None:
        record.updated_at = now()
        self.store.put_bytes(self.key(record.run_id, "run.json"), record.model_dump_json(indent=2).encode())

    def list(self) -> list[RunRecord]:
        """Every run, oldest first."""
        ids = sorted({k.split("/")[1] for k in self.store.list("runs") if k.endswith("/run.json")
                      and k.count("/") == 2})
        records = []
        for run_id in ids:
            try:
                records.append(self.load(run_id))
            except (NotFound, ValueError):
                continue
        return sorted(records, key=lambda r: r.created_at)

    def latest(self) -> RunRecord:
        runs = self.list()
        if not runs:
            raise NotFound(f"no runs in the store at {self.store.uri('runs')}; start one with `iterkd run`")
        return runs[-1]

    # -- events ----------------------------------------------------------------------------------
    def events(self, run_id: str) -> list[dict[str, Any]]:
        try:
            data = self.store.get_bytes(self.key(run_id, "events.jsonl"))
        except ArtifactNotFound:
            return []
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]

    def add_event(self, run_id: str, event: dict[str, Any]) -> None:
        key = self.key(run_id, "events.jsonl")
        try:
            data = self.store.get_bytes(key)
        except ArtifactNotFound:
            data = b""
        line = json.dumps({"ts": now(), **event}, default=str, ensure_ascii=False) + "\n"
        self.store.put_bytes(key, data + line.encode("utf-8"))

    # -- cancel requests ---------------------------------------------------------------------------
    def request_cancel(self, run_id: str, reason: str = "cancelled by the user") -> None:
        self.load(run_id)  # NotFound for an unknown run
        self.store.put_json(self.key(run_id, "cancel.json"), {"reason": reason, "at": now(), "t": time.time()})

    def cancel_requested(self, run_id: str) -> str | None:
        try:
            return str(self.store.get_json(self.key(run_id, "cancel.json")).get("reason", "cancelled"))
        except ArtifactNotFound:
            return None

    def clear_cancel(self, run_id: str) -> None:
        self.store.delete(self.key(run_id, "cancel.json"))
