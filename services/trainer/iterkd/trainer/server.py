"""``iterkd serve trainer``: the TrainerService behind the shared gRPC server."""

from __future__ import annotations

from iterkd.shared import serve
from iterkd.shared.cli import ServeOptions
from iterkd.shared.rpc import Server
from iterkd.shared.store import ArtifactStore
from iterkd.trainer.config import TrainerConfig, TrainerFileConfig
from iterkd.trainer.service import TrainerServicer
from iterkd.v1 import trainer_pb2, trainer_pb2_grpc


def build_servicer(cfg: TrainerConfig, store: ArtifactStore) -> TrainerServicer:
    servicer = TrainerServicer(cfg, store)
    if cfg.load_on_start:
        servicer.LoadStudent(trainer_pb2.LoadStudentRequest(), None)  # type: ignore[arg-type]
    return servicer


def build_server(opts: ServeOptions) -> Server:
    """The entry point of ``iterkd serve trainer`` (group ``iterkd.services``); unstarted."""
    return serve.build_server(opts, TrainerFileConfig, "trainer", build_servicer,
                              trainer_pb2_grpc.add_TrainerServiceServicer_to_server, trainer_pb2, "TrainerService")
