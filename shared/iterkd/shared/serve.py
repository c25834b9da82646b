"""``iterkd serve NAME``: every service builds its server the same way, through :func:`build_server`.

Read the configuration file (defaults without one), set up logging, open the store, build the
servicer from the service's section and the store, host it with health, reflection and metrics on
the section's ``server`` settings with the command line's overrides applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from iterkd.shared.cli import ServeOptions
from iterkd.shared.config import FileConfig, load_config
from iterkd.shared.log import setup_logging
from iterkd.shared.rpc import Server, Service, service_name
from iterkd.shared.store import ArtifactStore, open_store

F = TypeVar("F", bound=FileConfig)


def build_server(opts: ServeOptions, file_model: type[F], section: str,
                 make_servicer: Callable[[Any, ArtifactStore], Any], add_to_server: Callable[[Any, Any], None],
                 pb2_module: Any, service: str) -> Server:
    """An unstarted server for one service: ``make_servicer(section_config, store)`` hosted as
    ``service`` (its name in ``pb2_module``) with ``add_to_server``."""
    file_cfg = load_config(opts.config, file_model)
    setup_logging(file_cfg.logging.level, file_cfg.logging.format)
    cfg = getattr(file_cfg, section)
    servicer = make_servicer(cfg, open_store(file_cfg.store))
    return Server([Service(add_to_server, servicer, service_name(pb2_module, service))], opts.apply(cfg.server))
