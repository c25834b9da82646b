"""The gRPC TrainerService: trains one (run, cycle) at a time and serves the current student.

Train is idempotent per (run, cycle): a finished stage (its manifest exists) answers one
``done`` record with ``cached=true``; a cycle in training re-attaches the caller to its progress
(a job registry keyed by (run, cycle)); trainings of different cycles queue for the device. A
training runs in its own thread, so a caller that goes away does not stop it.

Serving: Generate / Solve use the shared :class:`iterkd.torchkit.hf_generate.HFGenerator` on the
current student. After a training finishes, the served student is its checkpoint (switched before
the final ``done`` record is sent); Solve for a (run, cycle) whose train stage is done serves that
cycle's checkpoint; LoadStudent switches explicitly. Solve (:func:`iterkd.shared.solve.solve_rpc`,
the teacher's too) asks with the configured prompt format (template and chat wrapping), the one the
student was trained on, unless the request gives a template or asks for chat wrapping.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc

from iterkd.shared.config import merge_overrides
from iterkd.shared.errors import BadRequest, Conflict, Unavailable, require
from iterkd.shared.generation import GenerationLimits, check_generate
from iterkd.shared.inference import SamplingParams
from iterkd.shared.log import event, get_logger
from iterkd.shared.solve import SolveSettings, solve_rpc
from iterkd.shared.stages import checkpoint_entry, read_manifest, stage_prefix
from iterkd.shared.store import ArtifactStore
from iterkd.torchkit.hf_generate import HFGenerator
from iterkd.torchkit.models import is_adapter_dir, pick_device
from iterkd.trainer.config import TrainerConfig
from iterkd.trainer.job import (
    TrainSpec,
    cached_progress,
    make_spec,
    progress,
    read_train_set_or_fail,
    run_training,
    stored_result,
)
from iterkd.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

log = get_logger("iterkd.trainer.service")
# What a request may tune; the model, device and server stay the operator's.
OVERRIDABLE = ("lora", "loss", "optim", "prompts")


class _Job:
    """One training in flight: its progress records, for every caller that follows it."""

    def __init__(self, spec: TrainSpec) -> None:
        self.spec = spec
        self.records: list[trainer_pb2.TrainProgress] = []
        self.cond = threading.Condition()
        self.finished = False
        self.error: BaseException | None = None

    def emit(self, record: trainer_pb2.TrainProgress) -> None:
        with self.cond:
            self.records.append(record)
            self.cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        with self.cond:
            self.finished = True
            self.error = error
            self.cond.notify_all()

    def follow(self, context: grpc.ServicerContext | None, replay: bool) -> Iterator[trainer_pb2.TrainProgress]:
        """Records from the start (``replay``) or from the latest one, until the job ends."""
        with self.cond:
            i = 0 if replay else max(0, len(self.records) - 1)
        while True:
            with self.cond:
                while i >= len(self.records) and not self.finished:
                    self.cond.wait(timeout=1.0)
                    if context is not None and not context.is_active():
                        return
                batch, i = self.records[i:], len(self.records)
                finished = self.finished
            yield from batch
            if finished and i >= len(self.records):
                return


class _Student:
    """The served student: a generator plus where it came from."""

    def __init__(self, generator: HFGenerator, checkpoint_uri: str, checkpoint_key: str = "") -> None:
        self.generator = generator
        self.checkpoint_uri = checkpoint_uri
        self.checkpoint_key = checkpoint_key


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(self, cfg: TrainerConfig, store: ArtifactStore, workdir: str | Path | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self._tmp = tempfile.TemporaryDirectory(prefix="iterkd-trainer-", dir=workdir)
        self.workdir = Path(self._tmp.name)
        self._jobs: dict[tuple[str, int], _Job] = {}
        self._jobs_lock = threading.Lock()
        self._device_lock = threading.Lock()  # one training at a time on the device
        self._student: _Student | None = None
        self._student_lock = threading.Lock()
        self._stopping = threading.Event()
        self._loads = 0

    # -- training -------------------------------------------------------------------------------
    def Train(self, request: trainer_pb2.TrainRequest, context: grpc.ServicerContext
              ) -> Iterator[trainer_pb2.TrainProgress]:
        cfg = merge_overrides(self.cfg, request.config_json, "config_json", OVERRIDABLE)
        require(request.HasField("run"), "run is required: run.run_id and run.cycle")
        spec = make_spec(self.store, cfg, request.run.run_id, request.run.cycle, request.train_set_uri,
                         request.output_uri, request.base_model, request.init_adapter_uri,
                         problems_uri=request.problems_uri, samples_uri=request.samples_uri,
                         verdicts_uri=request.verdicts_uri, replay_uri=request.replay_uri)
        manifest, _ = stored_result(self.store, spec)
        if manifest is not None:
            self._serve_manifest_checkpoint(manifest)
            yield cached_progress(manifest)
            return
        key = (spec.run_id, spec.cycle)
        with self._jobs_lock:
            job = self._jobs.get(key)
            attach = job is not None and not job.finished
            if attach:
                assert job is not None
                if job.spec.inputs != spec.inputs or job.spec.prefix != spec.prefix:
                    raise Conflict(f"run {spec.run_id} cycle {spec.cycle} is already training on "
                                   f"{self.store.uri(job.spec.train_set_key)}")
            else:
                read_train_set_or_fail(self.store, spec)
                job = _Job(spec)
                self._jobs[key] = job
                threading.Thread(target=self._run_job, args=(key, job), name=f"train-{key[0]}-{key[1]}",
                                 daemon=True).start()
        yield from job.follow(context, replay=not attach)
        if job.finished and job.error is not None and context.is_active():
            raise job.error

    def _run_job(self, key: tuple[str, int], job: _Job) -> None:
        held: list[trainer_pb2.TrainProgress] = []

        def emit(record: trainer_pb2.TrainProgress) -> None:
            if record.state == "done":
                held.append(record)  # sent once the new student is served
            else:
                job.emit(record)

        try:
            job.emit(progress("queued"))
            with self._device_lock:
                manifest = run_training(self.store, job.spec, emit, should_stop=self._stopping.is_set,
                                        workdir=self.workdir)
            self._serve_manifest_checkpoint(manifest)
            for record in held:
                job.emit(record)
            job.finish()
        except BaseException as exc:
            log.exception("training failed", extra={"run": key[0], "cycle": key[1]})
            job.emit(progress("failed", message=f"{type(exc).__name__}: {exc}"))
            job.finish(exc)
        finally:
            with self._jobs_lock:
                if self._jobs.get(key) is job:
                    del self._jobs[key]

    # -- the served student ---------------------------------------------------------------------
    def _serve_manifest_checkpoint(self, manifest: Any) -> None:
        out = checkpoint_entry(manifest)
        current = self._student
        if out is None:  # a train stage that learned nothing from the base model: the base is served
            if current is None or current.checkpoint_key:
                self._load(None)
            return
        if current is not None and current.checkpoint_uri == out.uri:
            return
        try:
            self._load(out.key)
        except Exception:
            log.exception("cannot serve the trained checkpoint", extra={"checkpoint": out.uri})

    def _load(self, key: str | None) -> _Student:
        """Load the base model (``key`` None) or a checkpoint folder of the store and serve it."""
        with self._student_lock:
            base = self.cfg.base_model
            device = str(pick_device(self.cfg.device, "trainer.device"))
            mb = self.cfg.generate_micro_batch
            if key is None:
                if not (Path(base) / "config.json").is_file():
                    raise Unavailable(f"the base model {base!r} is not a local transformers model folder")
                gen = HFGenerator(base, device=device, micro_batch_size=mb)
                uri = ""
            else:
                self._loads += 1
                local = self.store.get_dir(key, self.workdir / f"student-{self._loads}")
                if is_adapter_dir(local):
                    gen = HFGenerator(base, adapter_dir=local, device=device, micro_batch_size=mb)
                else:
                    gen = HFGenerator(local, device=device, micro_batch_size=mb)
                uri = self.store.uri(key)
            gen.model_id = uri or base
            self._student = _Student(gen, uri, key or "")
            event(log, "student loaded", checkpoint=uri or "base", model=base)
            return self._student

    def _current(self) -> _Student:
        student = self._student
        return student if student is not None else self._load(None)

    def _info(self, student: _Student) -> common_pb2.ModelInfo:
        gen = student.generator
        return common_pb2.ModelInfo(
            model_id=gen.model_id, backend="student", context_length=gen.context_length,
            max_batch_prompts=self.cfg.max_batch_prompts, max_new_tokens=self.cfg.max_new_tokens,
            max_n=self.cfg.max_n, has_chat_template=gen.has_chat_template, adapter=student.checkpoint_uri,
        )

    def Info(self, request: common_pb2.InfoRequest, context: grpc.ServicerContext) -> common_pb2.ModelInfo:
        return self._info(self._current())

    def LoadStudent(self, request: trainer_pb2.LoadStudentRequest, context: grpc.ServicerContext
                    ) -> common_pb2.ModelInfo:
        if not request.checkpoint_uri:
            return self._info(self._load(None))
        key = self.store.resolve(request.checkpoint_uri)
        if not self.store.list(key):
            raise BadRequest(f"checkpoint_uri: nothing in the store at {request.checkpoint_uri}")
        return self._info(self._load(key))

    def _limits(self, student: _Student) -> GenerationLimits:
        return GenerationLimits(self.cfg.max_n, self.cfg.max_new_tokens, self.cfg.max_batch_prompts,
                                student.generator.context_length)

    def Generate(self, request: common_pb2.GenerateRequest, context: grpc.ServicerContext
                 ) -> common_pb2.GenerateResponse:
        student = self._current()
        ids, texts, params = check_generate(request, self._limits(student))
        outs = student.generator.generate(texts, params, cancelled=lambda: not context.is_active())
        reply = common_pb2.GenerateResponse(model=student.generator.model_id)
        for prompt_id, samples in zip(ids, outs):
            for i, o in enumerate(samples):
                reply.completions.add(prompt_id=prompt_id, index=i, text=o.text, completion_tokens=o.tokens,
                                      finish_reason=o.finish_reason, seed=o.seed)
        return reply

    def Solve(self, request: common_pb2.SolveRequest, context: grpc.ServicerContext) -> common_pb2.SolveResponse:
        """Solve with the student of the request's cycle where its train stage is done, the base
        student for a cycle 0 that trained nothing (a run's baseline: runs count cycles from 1),
        else the one being served; the served checkpoint is one of the stage's inputs."""
        if request.HasField("run") and request.run.run_id:
            manifest = read_manifest(self.store, stage_prefix(request.run.run_id, request.run.cycle, "train"))
            if manifest is not None:
                self._serve_manifest_checkpoint(manifest)
            elif request.run.cycle == 0 and (self._student is None or self._student.checkpoint_key):
                self._load(None)
        student = self._current()

        def generate(prompts: Sequence[str], params: SamplingParams) -> list[list[str]]:
            outs = student.generator.generate(prompts, params, cancelled=lambda: not context.is_active())
            return [[o.text for o in row] for row in outs]

        settings = SolveSettings("student-solve", self.cfg.prompts.solve_template, self.cfg.prompts.use_chat_template,
                                 self._limits(student))
        inputs = {"checkpoint": student.checkpoint_key} if student.checkpoint_key else {}
        return solve_rpc(self.store, request, settings, model=student.generator.model_id, generate=generate,
                         inputs=inputs)

    def close(self) -> None:
        self._stopping.set()
        self._tmp.cleanup()
