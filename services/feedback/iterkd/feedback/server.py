"""``iterkd serve feedback``: build the FeedbackService server from the configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from iterkd.feedback.config import FeedbackConfig, FeedbackFileConfig, JudgeConfig, SandboxConfig
from iterkd.feedback.judge import Judge, TgiHttpGenerator
from iterkd.feedback.sandbox import Limits, SandboxPool
from iterkd.feedback.service import FeedbackServicer
from iterkd.feedback.static import StaticAnalyzer
from iterkd.shared import serve
from iterkd.shared.cli import ServeOptions
from iterkd.shared.inference import GrpcGenerator, SamplingParams, TextGenerator
from iterkd.shared.rpc import Server
from iterkd.v1 import feedback_pb2, feedback_pb2_grpc


def sandbox_limits(cfg: SandboxConfig) -> Limits:
    return Limits(timeout_s=cfg.timeout_s, memory_mb=cfg.memory_mb, file_size_mb=cfg.file_size_mb,
                  max_procs=cfg.max_procs, output_bytes=cfg.output_bytes, disk_mb=cfg.disk_mb,
                  compile_timeout_s=cfg.compile_timeout_s, compile_memory_mb=cfg.compile_memory_mb,
                  disabled_languages=tuple(cfg.disabled_languages))


def build_judge(cfg: JudgeConfig) -> tuple[Judge, Callable[[], Any]]:
    """The judge over the configured endpoint, and a function that closes its connection."""
    ep = cfg.endpoint
    generator: TextGenerator
    if ep.kind == "tgi":
        tgi = TgiHttpGenerator(ep.url, timeout_s=ep.timeout_s, retries=ep.retries, concurrency=ep.concurrency)
        generator, close = tgi, tgi.close
    else:
        grpc_gen = GrpcGenerator(ep.target, timeout=ep.timeout_s)
        generator, close = grpc_gen, grpc_gen.close
    params = SamplingParams(n=1, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed)
    judge = Judge(generator, rubric=cfg.rubric, template=cfg.template, params=params,
                  max_score=cfg.resolved_max_score, batch_size=cfg.batch_size)
    return judge, close


def build_servicer(cfg: FeedbackConfig, store: Any, self_port: int | None = None) -> FeedbackServicer:
    """Sandbox pool, static analyzer and judge as configured, wrapped in the servicer."""
    closers: list[Callable[[], Any]] = []
    judge = None
    if cfg.judge.enabled:
        judge, close = build_judge(cfg.judge)
        closers.append(close)
    analyzer = None
    if cfg.static.enabled:
        analyzer = StaticAnalyzer(batch_size=cfg.static.batch_size, disable=cfg.static.disable, ruff=cfg.static.ruff)
    pool = SandboxPool(workers=cfg.sandbox.workers, limits=sandbox_limits(cfg.sandbox))
    return FeedbackServicer(cfg, store, pool, analyzer, judge, closers, self_port=self_port)


def build_server(opts: ServeOptions) -> Server:
    """The entry point of ``iterkd serve feedback`` (group ``iterkd.services``); unstarted."""
    # The server's own port: the shard dealer leaves this replica out of its peers.
    return serve.build_server(
        opts, FeedbackFileConfig, "feedback",
        lambda cfg, store: build_servicer(cfg, store, self_port=opts.apply(cfg.server).port or None),
        feedback_pb2_grpc.add_FeedbackServiceServicer_to_server, feedback_pb2, "FeedbackService")
