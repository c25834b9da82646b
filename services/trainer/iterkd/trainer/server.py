"""``iterkd serve trainer``: the TrainerService behind the shared gRPC server."""

from __future__ import annotations

from iterkd.shared.cli import ServeOptions
from iterkd.shared.config import load_config
from iterkd.shared.log import setup_logging
from iterkd.shared.rpc import Server, Service, service_name
from iterkd.shared.store import open_store
from iterkd.trainer.config import TrainerFileConfig
from iterkd.trainer.service import TrainerServicer
from iterkd.v1 import trainer_pb2, trainer_pb2_grpc


def build_server(opts: ServeOptions) -> Server:
    """An unstarted server for the configuration file in ``opts`` (defaults without one)."""
    cfg = load_config(opts.config, TrainerFileConfig)
    setup_logging(cfg.logging.level, cfg.logging.format)
    store = open_store(cfg.store)
    servicer = TrainerServicer(cfg.trainer, store)
    if cfg.trainer.load_on_start:
        servicer.LoadStudent(trainer_pb2.LoadStudentRequest(), None)  # type: ignore[arg-type]
    return Server(
        [Service(trainer_pb2_grpc.add_TrainerServiceServicer_to_server, servicer,
                 service_name(trainer_pb2, "TrainerService"))],
        opts.apply(cfg.trainer.server),
    )
