"""The errors library code raises: plain Python exceptions, no gRPC.

``iterkd.shared.rpc`` maps each to a status code at the RPC boundary (and the ``iterkd`` command
maps them to a message and an exit status), so library code never has to know which layer calls it.
"""

from __future__ import annotations


class BadRequest(ValueError):
    """The request is invalid: the message says what is wrong (INVALID_ARGUMENT)."""


class NotFound(LookupError):
    """A thing the request names does not exist (NOT_FOUND)."""


class Conflict(RuntimeError):
    """The request conflicts with the current state (FAILED_PRECONDITION)."""


class DeviceUnavailable(Conflict):
    """The machine lacks the device the configuration asks for, e.g. ``device: cuda`` where there is
    no GPU: a machine problem (FAILED_PRECONDITION), not a bad request."""


class Unavailable(RuntimeError):
    """A backend the service depends on is unavailable (UNAVAILABLE); the caller may retry."""


class GenerationCancelled(Exception):
    """The caller went away; generation stopped early (CANCELLED)."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`BadRequest` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise BadRequest(message)
