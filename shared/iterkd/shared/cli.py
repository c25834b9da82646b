"""The ``iterkd`` command: one dispatcher, commands contributed by the installed services.

Each service package declares entry points:

* group ``iterkd.commands``: ``name = "pkg.module:register"``, where ``register(subparsers)`` adds
  a subcommand and sets ``func`` (``args -> exit code``) with ``set_defaults``;
* group ``iterkd.services``: ``name = "pkg.module:build_server"``, where
  ``build_server(opts: ServeOptions) -> Server`` builds an unstarted server; ``iterkd serve NAME``
  starts it and blocks until SIGTERM.

So an image has exactly the commands of what it installed. Errors exit one way for every command
(:func:`run_command`): a message naming the culprit on stderr, status 2 for usage errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from iterkd.shared.config import ConfigError, ServerConfig
from iterkd.shared.errors import BadRequest, Conflict, NotFound, Unavailable
from iterkd.shared.formats import DataError
from iterkd.shared.store import StoreError

COMMANDS_GROUP = "iterkd.commands"
SERVICES_GROUP = "iterkd.services"


@dataclass(frozen=True)
class ServeOptions:
    config: str | None = None
    host: str | None = None
    port: int | None = None
    metrics_port: int | None = None

    def apply(self, server: ServerConfig) -> ServerConfig:
        """The server section with command-line overrides applied."""
        updates: dict[str, Any] = {}
        if self.host is not None:
            updates["host"] = self.host
        if self.port is not None:
            updates["port"] = self.port
        if self.metrics_port is not None:
            updates["metrics_port"] = self.metrics_port
        return server.model_copy(update=updates)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1, or a usage error naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _serve(args: argparse.Namespace) -> int:
    services = {ep.name: ep for ep in entry_points(group=SERVICES_GROUP)}
    if args.name not in services:
        known = ", ".join(sorted(services)) or "none"
        print(f"iterkd serve: unknown service {args.name!r}; installed: {known}", file=sys.stderr)
        return 2
    build = services[args.name].load()
    server = build(ServeOptions(args.config, args.host, args.port, args.metrics_port))
    server.serve_forever()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iterkd", description="IterKD: iterative knowledge distillation for code models."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    serve = sub.add_parser("serve", help="run a service's gRPC server until SIGTERM")
    names = sorted(ep.name for ep in entry_points(group=SERVICES_GROUP))
    serve.add_argument("name", metavar="NAME", help=f"service to run ({', '.join(names) or 'none installed'})")
    serve.add_argument("--config", help="YAML configuration file (default: built-in defaults)")
    serve.add_argument("--host", help="address to bind (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="gRPC port (0 = any free port)")
    serve.add_argument("--metrics-port", type=int, help="Prometheus metrics port")
    serve.set_defaults(func=_serve)
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            register = ep.load()
        except Exception as exc:  # a broken plugin must not take the other commands down
            broken = sub.add_parser(ep.name, help=f"(unavailable: {exc})")
            broken.set_defaults(func=_unavailable(ep.name, exc))
            continue
        register(sub)
    return parser


def register_data(sub: Any) -> None:
    """``iterkd data check FILE [--kind problems|samples|pairs]`` (entry point of shared itself, so
    every image has it)."""
    from iterkd.shared.formats import KINDS

    data = sub.add_parser("data", help="check data files before a run")
    verbs = data.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    check = verbs.add_parser(
        "check", help="read FILE as the services would; print a JSON summary, or exit 2 naming the first bad record")
    check.add_argument("file", metavar="FILE", help="JSON Lines (.jsonl, .jsonl.gz) or a JSON array")
    check.add_argument("--kind", choices=KINDS, help="what the file holds (default: guessed from the first record)")
    check.set_defaults(func=_data_check)


def _data_check(args: argparse.Namespace) -> int:
    import json

    from iterkd.shared.formats import check_file

    print(json.dumps(check_file(args.file, args.kind)))
    return 0


def _unavailable(name: str, exc: Exception) -> Any:
    def func(_args: argparse.Namespace) -> int:
        print(f"iterkd {name}: this command failed to load: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

    return func


# Every command exits on error one way: ``iterkd COMMAND: message`` on stderr (the message names
# the culprit: file and line, field, URI), status 2 when the input was wrong (a usage error), 1 when
# the machine or a service failed. Commands raise; they do not print errors or pick statuses.
USAGE_ERRORS: tuple[type[BaseException], ...] = (ConfigError, DataError, StoreError, BadRequest, FileExistsError)
FAILURES: tuple[type[BaseException], ...] = (NotFound, Conflict, Unavailable, OSError, TimeoutError)


def run_command(args: argparse.Namespace, prog: str = "iterkd") -> int:
    """Run a parsed command's ``func`` and map its errors to a message and an exit status."""
    name = f"{prog} {args.command}"
    try:
        return int(args.func(args) or 0)
    except USAGE_ERRORS as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except FAILURES as exc:  # e.g. a port in use, no GPU, a service that does not answer
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
