"""``iterkd serve questions``: the QuestionService gRPC server."""

from __future__ import annotations

from iterkd.questions.config import QuestionsFileConfig
from iterkd.questions.service import QuestionServicer
from iterkd.shared import serve
from iterkd.shared.cli import ServeOptions
from iterkd.shared.rpc import Server
from iterkd.v1 import questions_pb2, questions_pb2_grpc


def build_server(opts: ServeOptions) -> Server:
    """The entry point of ``iterkd serve questions`` (group ``iterkd.services``); unstarted."""
    return serve.build_server(opts, QuestionsFileConfig, "questions", QuestionServicer,
                              questions_pb2_grpc.add_QuestionServiceServicer_to_server, questions_pb2,
                              "QuestionService")
