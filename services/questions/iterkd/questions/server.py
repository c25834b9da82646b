"""``iterkd serve questions``: the QuestionService gRPC server."""

from __future__ import annotations

from iterkd.questions.config import QuestionsFileConfig
from iterkd.questions.service import QuestionServicer
from iterkd.shared.cli import ServeOptions
from iterkd.shared.config import load_config
from iterkd.shared.log import setup_logging
from iterkd.shared.rpc import Server, Service, service_name
from iterkd.shared.store import open_store
from iterkd.v1 import questions_pb2, questions_pb2_grpc


def build_server(opts: ServeOptions) -> Server:
    """The entry point of ``iterkd serve questions`` (group ``iterkd.services``); unstarted."""
    file_cfg = load_config(opts.config, QuestionsFileConfig)
    setup_logging(file_cfg.logging.level, file_cfg.logging.format)
    cfg = file_cfg.questions
    servicer = QuestionServicer(cfg, open_store(file_cfg.store))
    service = Service(questions_pb2_grpc.add_QuestionServiceServicer_to_server, servicer,
                      service_name(questions_pb2, "QuestionService"))
    return Server([service], opts.apply(cfg.server))
