"""``iterkd serve teacher``: build the teacher's gRPC server from the configuration file."""

from __future__ import annotations

from iterkd.shared.cli import ServeOptions
from iterkd.shared.config import load_config
from iterkd.shared.log import setup_logging
from iterkd.shared.rpc import Server, Service, service_name
from iterkd.shared.store import ArtifactStore, open_store
from iterkd.teacher.backends import Backend, make_backend
from iterkd.teacher.config import TeacherConfig, TeacherFileConfig
from iterkd.teacher.service import TeacherServicer
from iterkd.v1 import teacher_pb2, teacher_pb2_grpc


def build_servicer(cfg: TeacherConfig, store: ArtifactStore | None = None,
                   backend: Backend | None = None) -> TeacherServicer:
    return TeacherServicer(cfg, backend or make_backend(cfg), store)


def build_server(opts: ServeOptions) -> Server:
    file_cfg = load_config(opts.config, TeacherFileConfig)
    setup_logging(file_cfg.logging.level, file_cfg.logging.format)
    cfg = file_cfg.teacher
    servicer = build_servicer(cfg, open_store(file_cfg.store))
    service = Service(teacher_pb2_grpc.add_TeacherServiceServicer_to_server, servicer,
                      service_name(teacher_pb2, "TeacherService"))
    return Server([service], opts.apply(cfg.server))
