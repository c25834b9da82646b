"""``iterkd serve controller``: the ControllerService with the configured executor.

Local executor: the four services are started here, once, as children of the controller (they die
with it) unless ``controller.services`` names running ones. Kubernetes executor: stage Jobs in the
configured namespace (see :mod:`iterkd.controller.executors.kubernetes`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from iterkd.controller.config import ControllerFileConfig, iterkd_home, load_run_config
from iterkd.controller.executors.base import Executor
from iterkd.controller.service import ControllerServicer
from iterkd.shared.cli import ServeOptions
from iterkd.shared.log import setup_logging
from iterkd.shared.rpc import Server, Service, service_name
from iterkd.shared.store import ArtifactStore, open_store
from iterkd.v1 import controller_pb2, controller_pb2_grpc


def executor_factory(cfg: ControllerFileConfig, raw: dict, store: ArtifactStore
                     ) -> tuple[Callable[[], Executor], Callable[[], None]]:
    """A function making the executor for one run, and one releasing what the factory holds."""
    if cfg.controller.executor == "kubernetes":
        from iterkd.controller.executors.kubernetes import KubernetesExecutor

        return (lambda: KubernetesExecutor.from_config(cfg.controller.kubernetes, store)), (lambda: None)
    from iterkd.controller.executors.local import LocalExecutor
    from iterkd.controller.services import LocalServices

    workdir = Path(cfg.controller.workdir).expanduser() if cfg.controller.workdir else iterkd_home()
    services = LocalServices(raw, workdir, cfg.controller.services)
    services.start()  # in the main thread: the children's parent-death signal follows this thread
    return (lambda: LocalExecutor(store, services.targets, cfg.controller.rpc_timeout_s)), services.stop


def build_server(opts: ServeOptions) -> Server:
    """The entry point of ``iterkd serve controller`` (group ``iterkd.services``); unstarted."""
    cfg, raw = load_run_config(opts.config)
    setup_logging(cfg.logging.level, cfg.logging.format)
    store = open_store(cfg.store)
    factory, release = executor_factory(cfg, raw, store)
    launcher, stop_operator = None, (lambda: None)
    if cfg.controller.executor == "kubernetes":  # the DistillationRun operator drives runs; StartRun creates them
        from iterkd.controller.operator import start_operator

        launcher, stop_operator = start_operator(cfg, store)
    servicer = ControllerServicer(store, factory, cfg.controller.retry, launcher)
    close = servicer.close

    def close_all() -> None:
        close()
        stop_operator()
        release()

    servicer.close = close_all  # type: ignore[method-assign]
    service = Service(controller_pb2_grpc.add_ControllerServiceServicer_to_server, servicer,
                      service_name(controller_pb2, "ControllerService"))
    return Server([service], opts.apply(cfg.controller.server))
