"""``iterkd serve teacher``: build the teacher's gRPC server from the configuration file."""

from __future__ import annotations

from iterkd.shared import serve
from iterkd.shared.cli import ServeOptions
from iterkd.shared.rpc import Server
from iterkd.shared.store import ArtifactStore
from iterkd.teacher.backends import Backend, make_backend
from iterkd.teacher.config import TeacherConfig, TeacherFileConfig
from iterkd.teacher.service import TeacherServicer
from iterkd.v1 import teacher_pb2, teacher_pb2_grpc


def build_servicer(cfg: TeacherConfig, store: ArtifactStore | None = None,
                   backend: Backend | None = None) -> TeacherServicer:
    return TeacherServicer(cfg, backend or make_backend(cfg), store)


def build_server(opts: ServeOptions) -> Server:
    """The entry point of ``iterkd serve teacher`` (group ``iterkd.services``); unstarted."""
    return serve.build_server(opts, TeacherFileConfig, "teacher", build_servicer,
                              teacher_pb2_grpc.add_TeacherServiceServicer_to_server, teacher_pb2, "TeacherService")
