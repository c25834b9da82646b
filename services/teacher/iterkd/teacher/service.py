"""The TeacherService: Generate, GenerateStream, Info and Solve over one backend.

Requests are validated first (INVALID_ARGUMENT with a message that names the field). The caller's
deadline becomes the backend deadline, and generation stops when the caller goes away (the RPC's
termination callback raises a flag every backend checks between requests, retries and decode
steps).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from iterkd.shared.formats import Problem, Sample
from iterkd.shared.hf_generate import GenerationCancelled
from iterkd.shared.inference import SamplingParams
from iterkd.shared.prompts import check_template, extract_code, render_solve_prompt
from iterkd.shared.rpc import require
from iterkd.shared.store import ArtifactStore
from iterkd.teacher.backends import Backend
from iterkd.teacher.config import TeacherConfig
from iterkd.v1 import common_pb2, teacher_pb2_grpc

log = logging.getLogger("iterkd.teacher")


class TeacherServicer(teacher_pb2_grpc.TeacherServiceServicer):
    def __init__(self, cfg: TeacherConfig, backend: Backend, store: ArtifactStore | None = None) -> None:
        self.cfg = cfg
        self.backend = backend
        self.store = store

    # -- validation -------------------------------------------------------------------------
    def check_params(self, p: common_pb2.GenerationParams, use_chat_template: bool | None = None) -> SamplingParams:
        """SamplingParams from the proto, or BadRequest saying which field is wrong."""
        cfg = self.cfg
        require(p.n >= 1, f"params.n must be >= 1, got {p.n}")
        require(p.n <= cfg.max_n, f"params.n={p.n} is over this service's limit max_n={cfg.max_n}")
        require(p.max_new_tokens > 0, f"params.max_new_tokens must be > 0, got {p.max_new_tokens}")
        require(p.max_new_tokens <= cfg.max_new_tokens,
                f"params.max_new_tokens={p.max_new_tokens} is over this service's limit "
                f"max_new_tokens={cfg.max_new_tokens}")
        context = self.backend.info().context_length
        require(not context or p.max_new_tokens < context,
                f"params.max_new_tokens={p.max_new_tokens} does not fit the model's context length {context}")
        require(math.isfinite(p.temperature) and p.temperature >= 0,
                f"params.temperature must be >= 0, got {p.temperature:g}")
        top_p = p.top_p or 1.0
        require(math.isfinite(top_p) and 0 < top_p <= 1, f"params.top_p must be in (0, 1], got {p.top_p:g}")
        return SamplingParams(
            # The proto carries float32: round so 0.7 reaches the backend as 0.7, not 0.699999988.
            n=p.n, max_new_tokens=p.max_new_tokens, temperature=round(float(p.temperature), 6),
            top_p=round(float(top_p), 6),
            stop=tuple(s for s in p.stop if s), seed=int(p.seed),
            use_chat_template=p.use_chat_template if use_chat_template is None else use_chat_template,
        )

    def check_generate(self, request: common_pb2.GenerateRequest) -> tuple[list[str], list[str], SamplingParams]:
        require(len(request.prompts) > 0, "prompts must not be empty")
        require(len(request.prompts) <= self.cfg.max_batch_prompts,
                f"{len(request.prompts)} prompts is over this service's limit max_batch_prompts="
                f"{self.cfg.max_batch_prompts}; split the batch")
        for j, prompt in enumerate(request.prompts):
            require(prompt.text != "", f"prompts[{j}].text is empty")
        require(request.HasField("params"), "params must be set")
        params = self.check_params(request.params)
        ids = [p.id or str(j) for j, p in enumerate(request.prompts)]
        return ids, [p.text for p in request.prompts], params

    # -- plumbing ---------------------------------------------------------------------------
    @staticmethod
    def _call_scope(context: grpc.ServicerContext) -> tuple[Callable[[], bool], float | None]:
        """A 'caller went away' flag and the absolute backend deadline for this RPC."""
        gone = threading.Event()
        context.add_callback(gone.set)
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None and remaining < 1e9 else None

        def cancelled() -> bool:
            return gone.is_set() or not context.is_active()

        return cancelled, deadline

    # -- RPCs -------------------------------------------------------------------------------
    def Info(self, request: Any, context: grpc.ServicerContext) -> common_pb2.ModelInfo:
        info = self.backend.info()
        return common_pb2.ModelInfo(
            model_id=info.model_id, backend=info.backend, context_length=info.context_length,
            max_batch_prompts=self.cfg.max_batch_prompts, max_new_tokens=self.cfg.max_new_tokens,
            max_n=self.cfg.max_n, has_chat_template=info.has_chat_template, adapter=info.adapter,
        )

    def Generate(self, request: common_pb2.GenerateRequest,
                 context: grpc.ServicerContext) -> common_pb2.GenerateResponse:
        ids, prompts, params = self.check_generate(request)
        cancelled, deadline = self._call_scope(context)
        try:
            outs = self.backend.generate(prompts, params, cancelled, deadline)
        except GenerationCancelled:
            context.abort(grpc.StatusCode.CANCELLED, "the caller went away")
        return common_pb2.GenerateResponse(
            completions=[
                common_pb2.Completion(prompt_id=ids[j], index=i, text=o.text, completion_tokens=o.tokens,
                                      finish_reason=o.finish_reason, seed=o.seed)
                for j, samples in enumerate(outs) for i, o in enumerate(samples)
            ],
            model=self.backend.info().model_id,
        )

    def GenerateStream(self, request: common_pb2.GenerateRequest,
                       context: grpc.ServicerContext) -> Iterator[common_pb2.Completion]:
        ids, prompts, params = self.check_generate(request)
        cancelled, deadline = self._call_scope(context)
        try:
            for j, i, o in self.backend.iter_generate(prompts, params, cancelled, deadline):
                yield common_pb2.Completion(prompt_id=ids[j], index=i, text=o.text, completion_tokens=o.tokens,
                                            finish_reason=o.finish_reason, seed=o.seed)
        except GenerationCancelled:
            context.abort(grpc.StatusCode.CANCELLED, "the caller went away")

    def Solve(self, request: common_pb2.SolveRequest, context: grpc.ServicerContext) -> common_pb2.SolveResponse:
        t0 = time.monotonic()
        require(self.store is not None, "this teacher has no artifact store configured")
        assert self.store is not None
        require(request.problems_uri != "", "problems_uri must be set")
        require(request.samples_uri != "", "samples_uri must be set")
        problems_key = self.store.resolve(request.problems_uri)
        samples_key = self.store.resolve(request.samples_uri)
        template = request.prompt_template or self.cfg.prompts.solve_template
        try:
            check_template(template, "prompt_template")
        except ValueError as exc:
            require(False, str(exc))
        require(request.HasField("params"), "params must be set")
        params = self.check_params(request.params,
                                   request.params.use_chat_template or self.cfg.prompts.use_chat_template)
        problems = self.store.get_jsonl(problems_key, Problem)
        prompts = [render_solve_prompt(p, template) for p in problems]
        cancelled, deadline = self._call_scope(context)
        model = self.backend.info().model_id
        try:
            outs = self.backend.generate(prompts, params, cancelled, deadline) if prompts else []
        except GenerationCancelled:
            context.abort(grpc.StatusCode.CANCELLED, "the caller went away")
        rows = [
            Sample(problem_id=p.id, sample_id=f"{p.id}#{i}", model=model,
                   completion=extract_code(o.text, p.entry_point or None))
            for p, samples in zip(problems, outs) for i, o in enumerate(samples)
        ]
        info = self.store.put_jsonl(samples_key, rows)
        duration = time.monotonic() - t0
        log.info("solved", extra={"problems": len(problems), "samples": len(rows), "uri": info.uri,
                                  "duration_s": round(duration, 3), "run": request.run.run_id,
                                  "cycle": request.run.cycle})
        return common_pb2.SolveResponse(
            samples=common_pb2.ArtifactRef(uri=info.uri, sha256=info.sha256), problems=len(problems),
            samples_written=len(rows), duration_s=duration,
        )

    def close(self) -> None:
        self.backend.close()
