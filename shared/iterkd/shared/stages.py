"""The cycle's stages, the artifact layout of a run and the stage contract.

``runs/{run}/run.json`` is the run's record; ``runs/{run}/cycle-{k:03d}/{stage}/...`` holds each
stage's outputs. :data:`CYCLE` declares every stage once: the service and RPC that own it, its
inputs (where they come from) and its outputs (names under the stage prefix). Nothing else in the
code base spells an output name.

The contract every stage RPC keeps (:func:`begin_stage` and :class:`StageWriter` implement it):

* it writes its outputs first and ``_manifest.json`` last: a stage is done exactly when its
  manifest exists, and a stage that dies half-way leaves no manifest;
* the manifest records each input's sha256, the request's configuration and the code version;
* a repeated request for a finished stage (same inputs, same configuration) returns the stored
  result without doing any work; a different request for the same prefix is refused with
  :class:`StageConflict` (FAILED_PRECONDITION at the RPC boundary), never answered from a stale result.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from pydantic import BaseModel, Field

from iterkd.shared.errors import Conflict
from iterkd.shared.store import ArtifactNotFound, ArtifactStore, InvalidKey, join

MANIFEST = "_manifest.json"


@dataclass(frozen=True)
class Input:
    """Where a stage input comes from: ``stage`` (a stage of this cycle, or ``"run"`` for the run's
    own inputs, or ``"pool"`` for this cycle's pool) and the output ``name`` there.
    ``previous=True``: the same stage of the cycle before (the last checkpoint)."""

    stage: str
    name: str
    previous: bool = False
    optional: bool = False


@dataclass(frozen=True)
class Stage:
    """One stage of the cycle: who runs it, what it reads, what it writes (names under its prefix)."""

    name: str
    service: str
    rpc: str
    inputs: dict[str, Input]
    outputs: tuple[str, ...]
    # Outputs that a stage may leave out (the static and judge views when they are off).
    optional_outputs: tuple[str, ...] = ()
    # Steps before the owning RPC: (service, rpc, sub-prefix); each owns its sub-prefix the same way.
    steps: tuple[tuple[str, str, str], ...] = ()

    def output(self, name: str) -> str:
        if name not in self.outputs:
            raise KeyError(f"stage {self.name!r} has no output {name!r}; outputs: {', '.join(self.outputs)}")
        return name


POOL = Input("pool", "problems.jsonl")
# The train stage writes its checkpoint as ``adapter/`` (LoRA) or ``model/`` (full fine-tuning);
# an input named "checkpoint" is whichever of the two the stage's manifest lists.
CHECKPOINTS = ("adapter", "model")
CYCLE: tuple[Stage, ...] = (
    Stage("teacher-solve", "teacher", "Solve", {"problems": POOL}, ("samples.jsonl",)),
    Stage("verify", "feedback", "Evaluate",
          {"problems": POOL, "samples": Input("teacher-solve", "samples.jsonl")},
          ("verdicts.jsonl", "feedback.jsonl")),
    Stage("train", "trainer", "Train",
          {"problems": POOL, "samples": Input("teacher-solve", "samples.jsonl"),
           "verdicts": Input("verify", "verdicts.jsonl"),
           "init": Input("train", "checkpoint", previous=True, optional=True),
           # Used when the run replays: the cycle before's training set, which holds every earlier one.
           "replay": Input("train", "train_set.jsonl", previous=True, optional=True)},
          ("train_set.jsonl", "adapter", "model", "training_config.json", "metrics.json"),
          optional_outputs=("adapter", "model")),
    Stage("student-solve", "trainer", "Solve",
          {"problems": POOL, "checkpoint": Input("train", "checkpoint", optional=True)}, ("samples.jsonl",)),
    Stage("feedback", "feedback", "Evaluate",
          {"problems": POOL, "samples": Input("student-solve", "samples.jsonl")},
          ("verdicts.jsonl", "static.jsonl", "judge.jsonl", "feedback.jsonl"),
          optional_outputs=("static.jsonl", "judge.jsonl")),
    Stage("evolve", "questions", "Evolve",
          {"pool": POOL, "feedback": Input("feedback", "feedback.jsonl")},
          ("next_pool.jsonl", "levels.jsonl", "rejected.jsonl")),
    Stage("evaluate", "feedback", "Evaluate",
          {"problems": Input("run", "eval.jsonl"), "samples": Input("evaluate", "solve/samples.jsonl")},
          ("verdicts.jsonl", "feedback.jsonl"), steps=(("trainer", "Solve", "solve"),)),
)
STAGES = tuple(s.name for s in CYCLE)
BY_NAME = {s.name: s for s in CYCLE}
# Stages whose outputs only the next cycle reads (its pool comes from evolve): a run's last cycle
# leaves them out unless the run asks for them (``evolve_last_cycle``); the run's product, the
# checkpoint, and its evaluation do not depend on them.
NEXT_CYCLE_ONLY = ("student-solve", "feedback", "evolve")


def cycle_stages(cycle: int, cycles: int, evolve_last_cycle: bool = False) -> tuple[str, ...]:
    """The stages cycle ``cycle`` of a ``cycles``-cycle run runs, in order."""
    if cycle == cycles and not evolve_last_cycle:
        return tuple(s for s in STAGES if s not in NEXT_CYCLE_ONLY)
    return STAGES


def stage(name: str) -> Stage:
    try:
        return BY_NAME[name]
    except KeyError:
        raise InvalidKey(f"unknown stage {name!r}; stages are {', '.join(STAGES)}") from None
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


def stage_prefix(run_id: str, cycle: int, stage_name: str) -> str:
    return f"{cycle_prefix(run_id, cycle)}/{stage(stage_name).name}"


BASELINE = "base"  # the step of cycle 1's evaluate that scores the base student
# The evaluate stage's sub-folders, each a step with a manifest of its own: the student's answers
# (a Solve), and the baseline's answers (a Solve) and verdicts (an Evaluate).
EVALUATE_STEPS = {("evaluate", "solve"): "solve", ("evaluate", BASELINE, "solve"): f"{BASELINE}/solve",
                  ("evaluate", BASELINE): BASELINE}


def evaluate_step(prefix: str) -> str | None:
    """The step of the evaluate stage that ``prefix`` (a folder) is, or None."""
    parts = tuple(prefix.rstrip("/").split("/"))
    return next((step for tail, step in EVALUATE_STEPS.items() if parts[-len(tail):] == tail), None)


def baseline_prefix(run_id: str) -> str:
    """Where cycle 1's evaluate scores the base student (``run.stages.evaluate.baseline``): its own
    ``solve/samples.jsonl``, verdicts and manifest (steps ``base/solve`` and ``base`` of evaluate),
    shown as cycle 0."""
    return f"{stage_prefix(run_id, 1, 'evaluate')}/{BASELINE}"


def output_key(run_id: str, cycle: int, stage_name: str, name: str) -> str:
    """The store key of a declared output: ``output_key(run, 1, "verify", "verdicts.jsonl")``."""
    return join(stage_prefix(run_id, cycle, stage_name), stage(stage_name).output(name))


def run_input_key(run_id: str, name: str) -> str:
    """The run's own inputs (the seed pool, the evaluation set), written when the run starts."""
    return f"{run_prefix(run_id)}/inputs/{name}"


class OutputEntry(BaseModel):
    key: str
    uri: str
    sha256: str
    size: int


class InputEntry(BaseModel):
    uri: str
    sha256: str


class StageManifest(BaseModel):
    stage: str
    step: str | None = None
    run_id: str | None = None
    cycle: int | None = None
    inputs: dict[str, InputEntry] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    code_version: str = ""
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
                 cycle: int | None = None, *, step: str | None = None,
                 inputs: dict[str, InputEntry] | None = None, config: dict[str, Any] | None = None) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self.stage = stage
        self.step = step
        self.run_id = run_id
        self.cycle = cycle
        self.inputs = dict(inputs or {})
        self.config = dict(config or {})
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
            stage=self.stage, step=self.step, run_id=self.run_id, cycle=self.cycle, inputs=self.inputs,
            config=self.config, code_version=code_version(), outputs=self.outputs,
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


def checkpoint_entry(manifest: StageManifest) -> OutputEntry | None:
    """The checkpoint folder a finished train stage wrote (adapter or full model), if any."""
    return next((manifest.outputs[n] for n in CHECKPOINTS if n in manifest.outputs), None)


def read_manifest(store: ArtifactStore, prefix: str) -> StageManifest | None:
    try:
        data = store.get_bytes(join(prefix, MANIFEST))
    except ArtifactNotFound:
        return None
    return StageManifest.model_validate_json(data)


def stage_done(store: ArtifactStore, prefix: str) -> bool:
    return store.exists(join(prefix, MANIFEST))


# ---------------------------------------------------------------------------------------------
# Owning a stage: inputs' hashes, the stored result for a repeat, a refusal for a different request


class StageConflict(Conflict):
    """A finished stage holds the result of a different request (FAILED_PRECONDITION)."""


@cache
def code_version() -> str:
    """The installed IterKD version, plus the image's build id where one is set (``ITERKD_BUILD``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("iterkd-shared")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        v = "0+unknown"
    build = os.environ.get("ITERKD_BUILD", "")
    return f"{v}+{build}" if build else v


def artifact_sha256(store: ArtifactStore, key: str) -> str:
    """An artifact's sha256: from its producer's manifest when a stage wrote it (no read), else from
    its bytes; a folder (a checkpoint) hashes its files' keys and digests in order."""
    parent, _, _ = key.rstrip("/").rpartition("/")
    producer = read_manifest(store, parent) if parent else None
    if producer is not None:
        for entry in producer.outputs.values():
            if entry.key == key.rstrip("/"):
                return entry.sha256
    if store.exists(key):
        return hashlib.sha256(store.get_bytes(key)).hexdigest()
    keys = store.list(key.rstrip("/"))
    if not keys:
        raise ArtifactNotFound(key)
    h = hashlib.sha256()
    for k in keys:
        h.update(f"{k}:{hashlib.sha256(store.get_bytes(k)).hexdigest()}\n".encode())
    return h.hexdigest()


def hash_inputs(store: ArtifactStore, inputs: dict[str, str]) -> dict[str, InputEntry]:
    """``{name: key}`` -> ``{name: InputEntry(uri, sha256)}``; a missing input is ArtifactNotFound."""
    return {name: InputEntry(uri=store.uri(key), sha256=artifact_sha256(store, key))
            for name, key in sorted(inputs.items())}


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def stage_lock(store: ArtifactStore, prefix: str) -> Iterator[None]:
    """One request at a time per output prefix in this process (a second identical request waits
    and then reads the stored result instead of doing the work twice)."""
    name = f"{id(store)}:{prefix.strip('/')}"
    with _locks_guard:
        lock = _locks.setdefault(name, threading.Lock())
    with lock:
        yield


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def check_stored(store: ArtifactStore, prefix: str, done: StageManifest, stage_name: str,
                 inputs: dict[str, InputEntry], config: dict[str, Any], step: str | None = None) -> StageManifest:
    """The stored manifest when it answers this request; StageConflict naming what differs if not."""
    differ = []
    if done.stage != stage_name or done.step != step:
        differ.append(f"stage {done.stage}{'/' + done.step if done.step else ''}")
    differ += [f"input {n}" for n in sorted(set(inputs) | set(done.inputs))
               if n not in inputs or n not in done.inputs or inputs[n].sha256 != done.inputs[n].sha256]
    config = _jsonable(config)
    differ += [f"config {k}" for k in sorted(set(config) | set(done.config)) if config.get(k) != done.config.get(k)]
    if differ:
        raise StageConflict(f"{store.uri(prefix)} already holds a finished {done.stage!r} stage of a different "
                            f"request ({', '.join(differ)} differ); use another output location or set the "
                            "finished stage aside first")
    return done


def begin_stage(store: ArtifactStore, prefix: str, stage_name: str, *, inputs: dict[str, str],
                config: dict[str, Any], run_id: str | None = None, cycle: int | None = None,
                step: str | None = None) -> StageManifest | StageWriter:
    """Start owning ``prefix`` for a stage (call it under :func:`stage_lock`).

    Returns the stored manifest when this request is already done, or a :class:`StageWriter` that
    records the inputs' hashes, the configuration and the code version; raises
    :class:`StageConflict` when a different request finished there."""
    stage(stage_name)
    hashed = hash_inputs(store, inputs)
    done = read_manifest(store, prefix)
    if done is not None:
        return check_stored(store, prefix, done, stage_name, hashed, config, step)
    return StageWriter(store, prefix, stage_name, run_id, cycle, step=step, inputs=hashed,
                       config=_jsonable(config))
