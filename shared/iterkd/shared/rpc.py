"""gRPC server and client helpers every service uses.

Server side (:class:`Server`): the standard health service and reflection, Prometheus metrics on a
side port, an interceptor that turns our exceptions into status codes (a bad request is
INVALID_ARGUMENT with a message that says what is wrong, a missing artifact NOT_FOUND, anything
unexpected INTERNAL with the traceback in the log), and a graceful stop on SIGTERM: health turns
NOT_SERVING, new calls are refused, calls in flight get ``grace_s`` to finish.

Client side (:func:`connect`): a channel with sane options and a retry policy for UNAVAILABLE, and
a stub whose every call carries a deadline unless the caller gives one.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from iterkd.shared.config import ConfigError, ServerConfig
from iterkd.shared.errors import (  # noqa: F401 (re-exported)
    BadRequest,
    Conflict,
    GenerationCancelled,
    NotFound,
    Unavailable,
    require,
)
from iterkd.shared.formats import DataError
from iterkd.shared.store import ArtifactNotFound, InvalidKey

log = logging.getLogger("iterkd.rpc")


_CODES: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (BadRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidKey, grpc.StatusCode.INVALID_ARGUMENT),
    (DataError, grpc.StatusCode.INVALID_ARGUMENT),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (ArtifactNotFound, grpc.StatusCode.NOT_FOUND),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (GenerationCancelled, grpc.StatusCode.CANCELLED),
]


def status_for(exc: BaseException) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


# ---------------------------------------------------------------------------------------------
# Metrics (one set per process; labelled by service and method)

try:
    from prometheus_client import Counter, Histogram

    RPC_TOTAL = Counter("iterkd_rpc_total", "RPCs handled", ["method", "code"])
    RPC_SECONDS = Histogram(
        "iterkd_rpc_seconds", "RPC handling time", ["method"],
        buckets=(0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 60, 600, 3600),
    )
except ImportError:  # pragma: no cover - prometheus_client is a dependency of shared
    RPC_TOTAL = RPC_SECONDS = None


def _observe(method: str, code: grpc.StatusCode, seconds: float) -> None:
    if RPC_TOTAL is not None:
        RPC_TOTAL.labels(method, code.name).inc()
        RPC_SECONDS.labels(method).observe(seconds)


class _ErrorsAndMetrics(grpc.ServerInterceptor):
    """Maps exceptions to status codes and records per-method counts and latencies."""

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._wrap_unary(method, handler.unary_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._wrap_stream(method, handler.unary_stream))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=self._wrap_unary(method, handler.stream_unary))
        if handler.stream_stream is not None:
            return handler._replace(stream_stream=self._wrap_stream(method, handler.stream_stream))
        return handler

    @staticmethod
    def _fail(method: str, exc: BaseException, context: grpc.ServicerContext) -> None:
        code = status_for(exc)
        if code == grpc.StatusCode.INTERNAL:
            log.error("unexpected error in %s", method, extra={"method": method, "exc": traceback.format_exc()})
            message = f"internal error: {type(exc).__name__}: {exc}"
        else:
            message = str(exc)
        context.abort(code, message)

    def _wrap_unary(self, method: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            t0 = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return fn(request, context)
            except Exception as exc:
                if context.code() not in (None, grpc.StatusCode.OK) or isinstance(exc, grpc.RpcError):
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise  # the handler aborted on its own
                code = status_for(exc)
                self._fail(method, exc, context)
            finally:
                _observe(method, code, time.perf_counter() - t0)

        return wrapper

    def _wrap_stream(self, method: str, fn: Callable[..., Iterator[Any]]) -> Callable[..., Any]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            t0 = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                yield from fn(request, context)
            except Exception as exc:
                if context.code() not in (None, grpc.StatusCode.OK) or isinstance(exc, grpc.RpcError):
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                code = status_for(exc)
                self._fail(method, exc, context)
            finally:
                _observe(method, code, time.perf_counter() - t0)

        return wrapper


# ---------------------------------------------------------------------------------------------
# Server


@dataclass
class Service:
    """One gRPC service to host: its generated ``add_XServicer_to_server``, the servicer and the
    full name (``iterkd.v1.TeacherService``) for health and reflection."""

    add_to_server: Callable[[Any, grpc.Server], None]
    servicer: Any
    full_name: str


def service_name(pb2_module: Any, name: str) -> str:
    return pb2_module.DESCRIPTOR.services_by_name[name].full_name


class Server:
    """A gRPC server with health, reflection, metrics and graceful shutdown."""

    def __init__(self, services: Iterable[Service], cfg: ServerConfig | None = None) -> None:
        self.cfg = cfg or ServerConfig()
        self.services = list(services)
        max_bytes = self.cfg.max_message_mb * 1024 * 1024
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.cfg.max_workers, thread_name_prefix="rpc"),
            interceptors=[_ErrorsAndMetrics()],
            options=[
                ("grpc.max_send_message_length", max_bytes),
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=self.cfg.max_concurrent_rpcs,
        )
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        names = [s.full_name for s in self.services]
        for svc in self.services:
            svc.add_to_server(svc.servicer, self._server)
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server)
        self.port = 0
        self.metrics_port: int | None = None
        self._stopped = threading.Event()
        self._metrics_server: Any = None

    @property
    def target(self) -> str:
        host = "127.0.0.1" if self.cfg.host in ("0.0.0.0", "::", "[::]") else self.cfg.host
        return f"{host}:{self.port}"

    def start(self) -> int:
        address = f"{self.cfg.host}:{self.cfg.port}"
        self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot bind gRPC server to {address}")
        self._server.start()
        for svc in self.services:
            self.health.set(svc.full_name, health_pb2.HealthCheckResponse.SERVING)
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        if self.cfg.metrics_port is not None:
            from prometheus_client import start_http_server

            self._metrics_server, _ = start_http_server(self.cfg.metrics_port, addr=self.cfg.host)
            self.metrics_port = self._metrics_server.server_port
        log.info("serving", extra={"services": [s.full_name for s in self.services], "port": self.port,
                                   "metrics_port": self.metrics_port})
        return self.port

    def stop(self, grace: float | None = None) -> None:
        if self._stopped.is_set():
            return
        self.health.enter_graceful_shutdown()
        grace = self.cfg.grace_s if grace is None else grace
        self._server.stop(grace).wait()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        for svc in self.services:
            close = getattr(svc.servicer, "close", None)
            if callable(close):
                close()
        self._stopped.set()
        log.info("stopped", extra={"port": self.port})

    def serve_forever(self) -> None:
        """Start, then block until SIGTERM or SIGINT; stop gracefully."""
        if not self.port:
            self.start()

        def _on_signal(signum: int, _frame: Any) -> None:
            log.info("signal received, shutting down", extra={"signal": signal.Signals(signum).name})
            threading.Thread(target=self.stop, daemon=True).start()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        print(json.dumps({"serving": self.target, "metrics_port": self.metrics_port}), flush=True)
        self._stopped.wait()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(0)


# ---------------------------------------------------------------------------------------------
# Client

_RETRY_POLICY = {
    "methodConfig": [{
        "name": [{}],
        "retryPolicy": {
            "maxAttempts": 4,
            "initialBackoff": "0.1s",
            "maxBackoff": "2s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }]
}


def channel(target: str, max_message_mb: int = 64) -> grpc.Channel:
    max_bytes = max_message_mb * 1024 * 1024
    return grpc.insecure_channel(target, options=[
        ("grpc.max_send_message_length", max_bytes),
        ("grpc.max_receive_message_length", max_bytes),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(_RETRY_POLICY)),
        ("grpc.keepalive_time_ms", 30_000),
    ])


class DeadlineStub:
    """Wraps a generated stub: every call gets ``timeout=default_timeout`` unless given."""

    def __init__(self, stub: Any, default_timeout: float) -> None:
        self._stub = stub
        self._timeout = default_timeout

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        def call(request: Any, timeout: float | None = None, **kwargs: Any) -> Any:
            return method(request, timeout=self._timeout if timeout is None else timeout, **kwargs)

        call.future = getattr(method, "future", None)  # type: ignore[attr-defined]
        return call


def connect(target: str, stub_cls: Callable[[grpc.Channel], Any], timeout: float = 60.0,
            wait_ready_s: float | None = None) -> tuple[grpc.Channel, DeadlineStub]:
    """A channel and a deadline-carrying stub; optionally wait until the server is up."""
    ch = channel(target)
    if wait_ready_s:
        try:
            grpc.channel_ready_future(ch).result(timeout=wait_ready_s)
        except grpc.FutureTimeoutError:
            ch.close()
            raise Unavailable(f"no gRPC server answered at {target} within {wait_ready_s:g}s") from None
    return ch, DeadlineStub(stub_cls(ch), timeout)


def check_health(target: str, service: str = "", timeout: float = 5.0) -> str:
    ch = channel(target)
    try:
        stub = health_pb2_grpc.HealthStub(ch)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    finally:
        ch.close()
