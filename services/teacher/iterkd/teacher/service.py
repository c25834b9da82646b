"""The TeacherService: Generate, GenerateStream, Info and Solve over one backend.

Requests are validated first by :mod:`iterkd.shared.generation` (INVALID_ARGUMENT with a message
that names the field); Solve is :func:`iterkd.shared.solve.solve_rpc`, the trainer's too. The caller's
deadline becomes the backend deadline, and generation stops when the caller goes away (the RPC's
termination callback raises a flag every backend checks between requests, retries and decode
steps).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

from iterkd.shared.generation import GenerationLimits, check_generate
from iterkd.shared.inference import SamplingParams
from iterkd.shared.solve import SolveSettings, solve_rpc
from iterkd.shared.store import ArtifactStore
from iterkd.teacher.backends import Backend
from iterkd.teacher.config import TeacherConfig
from iterkd.v1 import common_pb2, teacher_pb2_grpc


class TeacherServicer(teacher_pb2_grpc.TeacherServiceServicer):
    def __init__(self, cfg: TeacherConfig, backend: Backend, store: ArtifactStore | None = None) -> None:
        self.cfg = cfg
        self.backend = backend
        self.store = store

    # -- validation -------------------------------------------------------------------------
    def limits(self) -> GenerationLimits:
        return GenerationLimits(self.cfg.max_n, self.cfg.max_new_tokens, self.cfg.max_batch_prompts,
                                self.backend.info().context_length)

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
        ids, prompts, params = check_generate(request, self.limits())
        cancelled, deadline = self._call_scope(context)
        outs = self.backend.generate(prompts, params, cancelled, deadline)
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
        ids, prompts, params = check_generate(request, self.limits())
        cancelled, deadline = self._call_scope(context)
        for j, i, o in self.backend.iter_generate(prompts, params, cancelled, deadline):
            yield common_pb2.Completion(prompt_id=ids[j], index=i, text=o.text, completion_tokens=o.tokens,
                                        finish_reason=o.finish_reason, seed=o.seed)

    def Solve(self, request: common_pb2.SolveRequest, context: grpc.ServicerContext) -> common_pb2.SolveResponse:
        cancelled, deadline = self._call_scope(context)

        def generate(prompts: Sequence[str], params: SamplingParams) -> list[list[str]]:
            return [[o.text for o in row] for row in self.backend.generate(prompts, params, cancelled, deadline)]

        settings = SolveSettings("teacher-solve", self.cfg.prompts.solve_template, self.cfg.prompts.use_chat_template,
                                 self.limits())
        return solve_rpc(self.store, request, settings, model=self.backend.info().model_id, generate=generate)

    def close(self) -> None:
        self.backend.close()
