"""The artifact layout of a run and the stage-manifest convention.

``runs/{run}/run.json`` is the run's manifest; ``runs/{run}/cycle-{k:03d}/{stage}/...`` holds each
stage's outputs. A stage writes its outputs first and ``_manifest.json`` (outputs with sha256,
metrics, timings) last: a stage whose manifest exists is done, so a restarted controller resumes
without redoing or duplicating work.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from iterkd.shared.store import ArtifactNotFound, ArtifactStore, InvalidKey, join

STAGES = ("teacher-solve", "verify", "train", "student-solve", "feedback", "evolve", "evaluate")
MANIFEST = "_manifest.json"
_RUN_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")


def check_run_id(run_id: str) -> str:
    """Run ids become Kubernetes names and store keys: lower-case letters, digits and '-'."""
    if not _RUN_ID.match(run_id):
        raise InvalidKey(
            f"invalid run id {run_id!r}: use 1-40 lower-case letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return run_id


def run_prefix(run_id: str) -> str:
    return f"runs/{check_run_id(run_id)}"


def cycle_prefix(run_id: str, cycle: int) -> str:
    if cycle < 0:
        raise InvalidKey(f"invalid cycle {cycle}: must be >= 0")
    return f"{run_prefix(run_id)}/cycle-{cycle:03d}"


def stage_prefix(run_id: str, cycle: int, stage: str) -> str:
    if stage not in STAGES:
        raise InvalidKey(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    return f"{cycle_prefix(run_id, cycle)}/{stage}"


class OutputEntry(BaseModel):
    key: str
    uri: str
    sha256: str
    size: int


class StageManifest(BaseModel):
    stage: str
    run_id: str | None = None
    cycle: int | None = None
    outputs: dict[str, OutputEntry] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    started_at: str
    finished_at: str
    duration_s: float
    extra: dict[str, Any] = Field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class StageWriter:
    """Collects a stage's outputs and writes its manifest last.

    >>> with StageWriter(store, prefix, "verify") as w:   # doctest: +SKIP
    ...     w.put_jsonl("verdicts.jsonl", rows)
    ...     w.metrics["pass_rate"] = 0.5
    If the block raises, no manifest is written: the stage is not done.
    """

    def __init__(self, store: ArtifactStore, prefix: str, stage: str, run_id: str | None = None,
                 cycle: int | None = None) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self.stage = stage
        self.run_id = run_id
        self.cycle = cycle
        self.outputs: dict[str, OutputEntry] = {}
        self.metrics: dict[str, float] = {}
        self.extra: dict[str, Any] = {}
        self._t0 = time.monotonic()
        self._started = _now()
        self.manifest: StageManifest | None = None

    def key(self, name: str) -> str:
        return join(self.prefix, name)

    def record(self, name: str, key: str, sha256: str, size: int) -> OutputEntry:
        entry = OutputEntry(key=key, uri=self.store.uri(key), sha256=sha256, size=size)
        self.outputs[name] = entry
        return entry

    def put_bytes(self, name: str, data: bytes) -> OutputEntry:
        info = self.store.put_bytes(self.key(name), data)
        return self.record(name, info.key, info.sha256, info.size)

    def put_jsonl(self, name: str, rows: Any) -> OutputEntry:
        info = self.store.put_jsonl(self.key(name), rows)
        return self.record(name, info.key, info.sha256, info.size)

    def put_dir(self, name: str, local_dir: Any) -> OutputEntry:
        """A folder (a checkpoint): recorded by the sha256 of its files' sorted digests."""
        import hashlib

        infos = self.store.put_dir(self.key(name), local_dir)
        digest = hashlib.sha256("".join(f"{i.key}:{i.sha256}\n" for i in infos).encode()).hexdigest()
        return self.record(name, self.key(name), digest, sum(i.size for i in infos))

    def commit(self) -> StageManifest:
        # JSON has no NaN or infinity: such a metric (e.g. a margin with no pairs) is left out and
        # named in extra, so the manifest always reads back.
        finite = {k: float(v) for k, v in self.metrics.items() if math.isfinite(v)}
        if len(finite) != len(self.metrics):
            self.extra["non_finite_metrics"] = sorted(k for k in self.metrics if k not in finite)
        manifest = StageManifest(
            stage=self.stage, run_id=self.run_id, cycle=self.cycle, outputs=self.outputs,
            metrics=finite, started_at=self._started, finished_at=_now(),
            duration_s=round(time.monotonic() - self._t0, 6), extra=self.extra,
        )
        self.store.put_bytes(self.key(MANIFEST), manifest.model_dump_json(indent=2).encode("utf-8"))
        self.manifest = manifest
        return manifest

    def __enter__(self) -> StageWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and self.manifest is None:
            self.commit()


def read_manifest(store: ArtifactStore, prefix: str) -> StageManifest | None:
    try:
        data = store.get_bytes(join(prefix, MANIFEST))
    except ArtifactNotFound:
        return None
    return StageManifest.model_validate_json(data)


def stage_done(store: ArtifactStore, prefix: str) -> bool:
    return store.exists(join(prefix, MANIFEST))
