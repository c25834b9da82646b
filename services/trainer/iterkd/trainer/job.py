"""One (run, cycle) training against the artifact store: idempotency, resume, checkpoint.

Layout under ``runs/{run}/cycle-{k:03d}/train/`` (or the request's ``output_uri``):

* ``train_set.jsonl``: the training examples, built by this stage from the problems, the
  teacher's samples and their verdicts (a ready training set the request names is not copied),
  plus, with replay, the examples of an earlier training set that this cycle's do not repeat;
* ``adapter/`` (``model/`` for full fine-tuning): ``save_pretrained`` output plus the tokenizer,
  loadable with peft / transformers as it is;
* ``training_config.json``, ``metrics.json``; ``_manifest.json`` last (the stage is done);
* ``_state/step-{N:06d}/`` while training: trainable weights, optimizer, scheduler, RNG, step and
  data order, with ``_state/latest.json`` (written after the folder is complete) naming the last
  one. A restart with the same inputs resumes from it; a finished stage deletes ``_state/``.

The state is tied to a fingerprint of the inputs (training set bytes, effective config, base
model, starting adapter): a restart with different inputs starts over rather than mixing them.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iterkd.shared.errors import BadRequest
from iterkd.shared.formats import DataError, Problem, Sample, TrainingExample, Verdict
from iterkd.shared.log import event, get_logger
from iterkd.shared.stages import (
    InputEntry,
    StageManifest,
    StageWriter,
    check_run_id,
    check_stored,
    checkpoint_entry,
    hash_inputs,
    read_manifest,
    stage_prefix,
)
from iterkd.shared.store import ArtifactNotFound, ArtifactStore, join
from iterkd.trainer.config import TrainerConfig
from iterkd.trainer.data import build_examples, check_examples, load_train_set
from iterkd.trainer.trainer import StepRecord, StudentTrainer
from iterkd.v1 import common_pb2, trainer_pb2

log = get_logger("iterkd.trainer")
STATE = "_state"
TRAIN_SET = "train_set.jsonl"
Emit = Callable[[trainer_pb2.TrainProgress], None]


@dataclass(frozen=True)
class TrainSpec:
    """A validated training request."""

    run_id: str
    cycle: int
    # Either a ready training set (``train_set``) or verified answers to build one from
    # (``problems``, ``samples``, ``verdicts``), and optionally an earlier training set to replay
    # (``replay``): store keys by input name.
    sources: dict[str, str]
    prefix: str                 # where the stage's outputs go
    base_model: str
    init_key: str | None        # the starting checkpoint folder in the store, if any
    cfg: TrainerConfig

    @property
    def state_prefix(self) -> str:
        return join(self.prefix, STATE)

    @property
    def train_set_key(self) -> str:
        """Where this stage's training set is (the request's own, or the one the stage writes)."""
        if "train_set" in self.sources and "replay" not in self.sources:
            return self.sources["train_set"]
        return join(self.prefix, TRAIN_SET)

    @property
    def inputs(self) -> dict[str, str]:
        return {**self.sources, **({"init": self.init_key} if self.init_key else {})}

    def config(self) -> dict[str, Any]:
        """What the stage's result depends on besides its inputs (recorded in the manifest)."""
        cfg = self.cfg.model_dump(mode="json", by_alias=True,
                                  exclude={"server", "max_batch_prompts", "max_new_tokens", "max_n",
                                           "generate_micro_batch", "load_on_start", "device"})
        cfg["optim"].pop("save_every_steps", None)
        return {"trainer": cfg, "base_model": self.base_model}


def previous_checkpoint(store: ArtifactStore, run_id: str, cycle: int) -> str | None:
    """The checkpoint folder key of cycle ``cycle - 1``'s finished train stage, if there is one."""
    if cycle <= 0:
        return None
    manifest = read_manifest(store, stage_prefix(run_id, cycle - 1, "train"))
    entry = checkpoint_entry(manifest) if manifest is not None else None
    return entry.key if entry is not None else None


def make_spec(store: ArtifactStore, cfg: TrainerConfig, run_id: str, cycle: int, train_set_uri: str = "",
              output_uri: str = "", base_model: str = "", init_adapter_uri: str = "", *, problems_uri: str = "",
              samples_uri: str = "", verdicts_uri: str = "", replay_uri: str = "") -> TrainSpec:
    """Validate a request's fields (BadRequest / InvalidKey with a message naming the field)."""
    if not run_id:
        raise BadRequest("run.run_id is required")
    check_run_id(run_id)
    if cycle < 0:
        raise BadRequest(f"run.cycle must be >= 0, got {cycle}")
    verified = {"problems": problems_uri, "samples": samples_uri, "verdicts": verdicts_uri}
    if any(verified.values()):
        missing = [f"{k}_uri" for k, v in verified.items() if not v]
        if missing or train_set_uri:
            raise BadRequest("give either train_set_uri, or problems_uri, samples_uri and verdicts_uri together"
                             + (f" ({', '.join(missing)} missing)" if missing else ""))
        sources = {k: store.resolve(v) for k, v in verified.items()}
    elif train_set_uri:
        sources = {"train_set": store.resolve(train_set_uri)}
    else:
        raise BadRequest("nothing to learn from: give problems_uri, samples_uri and verdicts_uri (verified "
                         "answers), or train_set_uri (training examples, JSON Lines)")
    if replay_uri:
        sources["replay"] = store.resolve(replay_uri)
    prefix = store.resolve(output_uri) if output_uri else stage_prefix(run_id, cycle, "train")
    if init_adapter_uri:
        init_key: str | None = store.resolve(init_adapter_uri)
        if not store.list(init_key):
            raise BadRequest(f"init_adapter_uri: nothing in the store at {init_adapter_uri}")
    else:
        init_key = previous_checkpoint(store, run_id, cycle)
    if "train_set" in sources and sources["train_set"] == join(prefix, TRAIN_SET):
        raise BadRequest(f"train_set_uri: {train_set_uri} is where this stage writes its own training set")
    if sources.get("replay") == join(prefix, TRAIN_SET):
        raise BadRequest(f"replay_uri: {replay_uri} is where this stage writes its own training set; "
                         "replay the previous cycle's")
    return TrainSpec(run_id, cycle, sources, prefix, base_model or cfg.base_model, init_key, cfg)


def progress(state: str, **fields: Any) -> trainer_pb2.TrainProgress:
    metrics = fields.pop("metrics", None) or {}
    msg = trainer_pb2.TrainProgress(state=state, **fields)
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
            msg.metrics[k] = float(v)
    return msg


def step_progress(rec: StepRecord) -> trainer_pb2.TrainProgress:
    def f(x: float) -> float:
        return 0.0 if math.isnan(x) else x

    return progress(
        "training", step=rec.step, total_steps=rec.total_steps, sft_loss=f(rec.sft_loss),
        contrastive_loss=f(rec.contrastive_loss), loss=f(rec.loss), margin=f(rec.margin),
        tokens_per_second=rec.tokens_per_second, eta_s=rec.eta_s, learning_rate=rec.learning_rate,
        metrics={"grad_norm": rec.grad_norm, "tokens": rec.tokens},
    )


def cached_progress(manifest: StageManifest) -> trainer_pb2.TrainProgress:
    out = checkpoint_entry(manifest)
    ref = common_pb2.ArtifactRef(uri=out.uri, sha256=out.sha256) if out else None
    m = manifest.metrics
    steps = int(m.get("steps", 0))
    return progress("done", cached=True, checkpoint=ref, step=steps, total_steps=int(m.get("total_steps", steps)),
                    sft_loss=m.get("sft_loss", 0.0), contrastive_loss=m.get("contrastive_loss", 0.0),
                    loss=m.get("loss", 0.0), margin=m.get("margin", 0.0), metrics=m)


def fingerprint(spec: TrainSpec, inputs: dict[str, InputEntry]) -> str:
    """Ties a saved training state to the inputs' hashes and the configuration."""
    h = hashlib.sha256()
    h.update(json.dumps({k: v.sha256 for k, v in inputs.items()}, sort_keys=True).encode())
    h.update(json.dumps(spec.config(), sort_keys=True).encode())
    return h.hexdigest()


def stored_result(store: ArtifactStore, spec: TrainSpec) -> tuple[StageManifest | None, dict[str, InputEntry]]:
    """The finished stage's manifest when it answers this request (StageConflict when a different
    request finished there), and the inputs' hashes."""
    for name, key in spec.sources.items():
        if not store.exists(key):
            what = "no training set" if name in ("train_set", "replay") else "nothing"
            raise BadRequest(f"{name}_uri: {what} at {store.uri(key)}")
    inputs = hash_inputs(store, spec.inputs)
    done = read_manifest(store, spec.prefix)
    if done is not None:
        check_stored(store, spec.prefix, done, "train", inputs, spec.config())
    return done, inputs


def training_examples(store: ArtifactStore, spec: TrainSpec) -> tuple[list[TrainingExample], dict[str, int]]:
    """The examples this stage trains on: built from the verified answers, or read from the set,
    then the replayed set's examples that these do not repeat."""
    examples, counts = _cycle_examples(store, spec)
    if "replay" not in spec.sources:
        return examples, counts
    return with_replay(examples, counts, _replayed(store, spec.sources["replay"]))


def with_replay(examples: list[TrainingExample], counts: dict[str, int], earlier: list[TrainingExample]
                ) -> tuple[list[TrainingExample], dict[str, int]]:
    """This cycle's examples first, then each earlier example whose (problem, chosen answer) this
    cycle does not hold already (this cycle's copy has its newer rejected answers).
    Counts gain ``replayed`` (kept) and ``replay_repeated`` (left out as repeats)."""
    seen = {(e.problem_id, e.chosen) for e in examples}
    kept = []
    for e in earlier:
        if (e.problem_id, e.chosen) not in seen:
            seen.add((e.problem_id, e.chosen))
            kept.append(e)
    return examples + kept, {**counts, "replayed": len(kept), "replay_repeated": len(earlier) - len(kept)}


def _replayed(store: ArtifactStore, key: str) -> list[TrainingExample]:
    """The earlier training set (one a train stage wrote: our examples), read once; an empty one
    (a cycle in which nothing passed) replays nothing."""
    examples = store.get_jsonl(key, TrainingExample)
    return check_examples(examples, store.uri(key)) if examples else []


def _cycle_examples(store: ArtifactStore, spec: TrainSpec) -> tuple[list[TrainingExample], dict[str, int]]:
    if "train_set" in spec.sources:
        examples = load_train_set(store, spec.sources["train_set"])
        return examples, {"examples": len(examples)}
    keys = spec.sources
    try:
        problems = store.get_jsonl(keys["problems"], Problem)
        samples = store.get_jsonl(keys["samples"], Sample)
        verdicts = store.get_jsonl(keys["verdicts"], Verdict)
    except ArtifactNotFound as exc:
        raise BadRequest(f"an input of the train stage is missing: {exc}") from None
    examples, counts = build_examples(problems, samples, verdicts, template=spec.cfg.prompts.solve_template)
    # No answer passed: nothing to learn this cycle (an empty list; run_training keeps the student).
    return (check_examples(examples, store.uri(keys["samples"])) if examples else []), counts


def keep_student(store: ArtifactStore, spec: TrainSpec, inputs: dict[str, InputEntry], counts: dict[str, int],
                 emit: Emit) -> StageManifest:
    """A cycle in which no teacher answer passed its tests: the stage is done without training, and
    its checkpoint is the one it started from (the previous cycle's, recorded by reference), so the
    next cycles continue from it; with none (cycle 1) the student stays the base model."""
    with StageWriter(store, spec.prefix, "train", spec.run_id, spec.cycle, inputs=inputs, config=spec.config()) as w:
        w.put_jsonl(TRAIN_SET, [])
        entry = None
        if spec.init_key is not None:
            name = spec.init_key.rstrip("/").rpartition("/")[2]
            entry = w.record(name if name in ("adapter", "model") else "adapter", spec.init_key,
                             inputs["init"].sha256, 0)
        w.metrics.update({"steps": 0.0, "total_steps": 0.0, **{f"data_{k}": float(v) for k, v in counts.items()}})
        w.extra.update({"skipped": "no teacher answer passed its tests: the student is unchanged",
                        "init_checkpoint": spec.init_key})
    event(log, "train skipped: nothing passed", run=spec.run_id, cycle=spec.cycle, init=spec.init_key or "base")
    emit(progress("done", step=0, total_steps=0, message="no answer passed its tests: the student is unchanged",
                  checkpoint=common_pb2.ArtifactRef(uri=entry.uri, sha256=entry.sha256) if entry else None))
    assert w.manifest is not None
    return w.manifest


def run_training(store: ArtifactStore, spec: TrainSpec, emit: Emit,
                 should_stop: Callable[[], bool] | None = None, workdir: str | Path | None = None) -> StageManifest:
    """Train ``spec`` to the end (or return the finished stage's manifest), emitting progress."""
    done, inputs = stored_result(store, spec)
    if done is not None:
        emit(cached_progress(done))
        return done
    t0 = time.monotonic()
    emit(progress("loading", message=f"loading {spec.base_model}"))
    with tempfile.TemporaryDirectory(prefix="iterkd-train-", dir=workdir) as tmp_s:
        tmp = Path(tmp_s)
        examples, counts = training_examples(store, spec)
        if not examples:
            return keep_student(store, spec, inputs, counts, emit)
        init_dir = None
        if spec.init_key is not None:
            init_dir = store.get_dir(spec.init_key, tmp / "init")
        trainer = StudentTrainer(spec.cfg, examples, spec.base_model, init_dir, source=store.uri(spec.train_set_key))
        fp = fingerprint(spec, inputs)
        resumed_from = _maybe_resume(store, spec, trainer, fp, tmp)
        if resumed_from:
            emit(progress("training", step=trainer.step, total_steps=trainer.total_steps,
                          message=f"resumed from step {resumed_from}", metrics={"resumed_from": resumed_from}))
        event(log, "train start", run=spec.run_id, cycle=spec.cycle, total_steps=trainer.total_steps,
              examples=trainer.stats.examples, resumed_from=resumed_from, init=spec.init_key or "base")

        def on_step(rec: StepRecord) -> None:
            emit(step_progress(rec))

        def on_checkpoint(step: int) -> None:
            _save_state(store, spec, trainer, fp, tmp)

        trainer.train(on_step, on_checkpoint, should_stop)
        emit(progress("saving", step=trainer.step, total_steps=trainer.total_steps))
        name = "adapter" if spec.cfg.lora.enabled else "model"
        ckpt = trainer.save_pretrained(tmp / name)
        metrics = trainer.summary()
        metrics["resumed_from"] = float(resumed_from)
        metrics.update({f"data_{k}": float(v) for k, v in counts.items()})
        with StageWriter(store, spec.prefix, "train", spec.run_id, spec.cycle, inputs=inputs,
                         config=spec.config()) as w:
            if spec.train_set_key == join(spec.prefix, TRAIN_SET):
                w.put_jsonl(TRAIN_SET, examples)
            entry = w.put_dir(name, ckpt)
            w.put_bytes("training_config.json", json.dumps({
                "config": spec.config()["trainer"], "base_model": spec.base_model,
                "train_set": store.uri(spec.train_set_key),
                "init_checkpoint": store.uri(spec.init_key) if spec.init_key else None,
                "fingerprint": fp,
            }, indent=2).encode())
            w.put_bytes("metrics.json", json.dumps({"summary": metrics, "steps": [
                {k: v for k, v in vars(r).items()} for r in trainer.history]}, indent=2).encode())
            w.metrics.update(metrics)
            w.extra.update({"checkpoint": name, "base_model": spec.base_model, "init_checkpoint": spec.init_key,
                            "loss_type": spec.cfg.loss.loss_type})
        manifest = w.manifest
        assert manifest is not None
        store.delete_prefix(spec.state_prefix)
    event(log, "train done", run=spec.run_id, cycle=spec.cycle, steps=trainer.step,
          duration_s=round(time.monotonic() - t0, 3), loss=metrics["loss"], margin=metrics["margin"])
    emit(progress("done", step=trainer.step, total_steps=trainer.total_steps,
                  checkpoint=common_pb2.ArtifactRef(uri=entry.uri, sha256=entry.sha256),
                  sft_loss=metrics["sft_loss"], loss=metrics["loss"],
                  contrastive_loss=0.0 if math.isnan(metrics["contrastive_loss"]) else metrics["contrastive_loss"],
                  margin=0.0 if math.isnan(metrics["margin"]) else metrics["margin"], metrics=metrics))
    return manifest


def _save_state(store: ArtifactStore, spec: TrainSpec, trainer: StudentTrainer, fp: str, tmp: Path) -> None:
    name = f"step-{trainer.step:06d}"
    local = trainer.save_state(tmp / "state" / name, {"fingerprint": fp})
    store.put_dir(join(spec.state_prefix, name), local)
    store.put_json(join(spec.state_prefix, "latest.json"), {"step": trainer.step, "folder": name, "fingerprint": fp})
    for key in store.list(spec.state_prefix):  # older states are no longer needed
        part = key[len(spec.state_prefix) + 1:].split("/", 1)[0]
        if part.startswith("step-") and part != name:
            store.delete(key)
    event(log, "train state saved", run=spec.run_id, cycle=spec.cycle, step=trainer.step)


def _maybe_resume(store: ArtifactStore, spec: TrainSpec, trainer: StudentTrainer, fp: str, tmp: Path) -> int:
    try:
        latest = store.get_json(join(spec.state_prefix, "latest.json"))
    except ArtifactNotFound:
        return 0
    if latest.get("fingerprint") != fp:
        event(log, "train state ignored: inputs changed", run=spec.run_id, cycle=spec.cycle)
        store.delete_prefix(spec.state_prefix)
        return 0
    local = store.get_dir(join(spec.state_prefix, latest["folder"]), tmp / "resume")
    try:
        trainer.load_state(local)
    except (ValueError, KeyError, OSError) as exc:
        event(log, "train state unusable; starting over", run=spec.run_id, cycle=spec.cycle, error=str(exc))
        store.delete_prefix(spec.state_prefix)
        return 0
    return trainer.step


def read_train_set_or_fail(store: ArtifactStore, spec: TrainSpec) -> None:
    """Early check used by the service so bad data fails the RPC before any model loads."""
    try:
        training_examples(store, spec)
    except ArtifactNotFound:
        raise BadRequest(f"train_set_uri: no training set at {store.uri(spec.train_set_key)}") from None
    except DataError:
        raise
