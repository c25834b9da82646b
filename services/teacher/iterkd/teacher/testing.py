"""A scriptable model server on 127.0.0.1 that speaks TGI's and OpenAI's wire protocols.

For tests and benchmarks of the remote backends: it answers

* TGI: ``POST /`` and ``POST /generate`` (``{"inputs", "parameters"}`` → ``generated_text`` +
  ``details``), ``GET /info``, and the Messages API ``POST /v1/chat/completions``;
* OpenAI: ``POST /v1/completions``, ``POST /v1/chat/completions``, ``GET /v1/models``.

The text is a deterministic function of the prompt and the seed (``"[seed=S t=T] <prompt>"``, plus
`` STOP tail`` so stop sequences can be tested), so tests can check what the gateway sent.

Faults are scripted per generation request, in order, from :attr:`FakeModelServer.faults`:
``"429"`` (with ``Retry-After: 0``) or ``"429:2.5"`` (Retry-After 2.5 s), ``"500"``, ``"503"``,
``"401"``, ``"422"``, ``"slow"`` (answer after :attr:`slow_s`) and ``"drop"`` (close the connection
without a response). ``fault_all`` applies one fault to every request instead.
"""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeModelServer:
    def __init__(self, model_id: str = "fake/teacher", context_length: int = 4096, api_key: str | None = None,
                 slow_s: float = 5.0, delay_s: float = 0.0) -> None:
        self.model_id = model_id
        self.context_length = context_length
        self.api_key = api_key
        self.slow_s = slow_s
        self.delay_s = delay_s
        self.faults: collections.deque[str] = collections.deque()
        self.fault_all: str | None = None
        self.requests: list[dict[str, Any]] = []  # generation requests: path, body, time
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> FakeModelServer:
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.request_queue_size = 1024
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="fake-model-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- behaviour --------------------------------------------------------------------------
    def next_fault(self) -> str | None:
        with self.lock:
            if self.fault_all is not None:
                return self.fault_all
            return self.faults.popleft() if self.faults else None

    def record(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        with self.lock:
            self.requests.append({"path": path, "body": body, "headers": headers, "t": time.monotonic()})

    @staticmethod
    def text_for(prompt: str, seed: Any, temperature: Any) -> str:
        return f"[seed={seed} t={temperature}] {prompt} STOP tail"

    def sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def _make_handler(server: FakeModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if server.api_key is None:
                return True
            got = self.headers.get("authorization", "")
            if got == f"Bearer {server.api_key}":
                return True
            # Echo what was sent, as careless servers do, so tests can check the gateway scrubs it.
            self._send(401, {"error": f"invalid credentials: {got}", "error_type": "auth"})
            return False

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/info":
                self._send(200, {"model_id": server.model_id, "max_input_tokens": server.context_length - 1,
                                 "max_total_tokens": server.context_length, "version": "fake"})
            elif self.path.rstrip("/") == "/v1/models":
                if self._authorized():
                    self._send(200, {"object": "list", "data": [
                        {"id": server.model_id, "object": "model", "max_model_len": server.context_length}]})
            elif self.path.rstrip("/") == "/health":
                self._send(200, {})
            else:
                self._send(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            path = self.path.rstrip("/") or "/"
            server.record(path, body, {k.lower(): v for k, v in self.headers.items()})
            if path not in ("/", "/generate", "/v1/completions", "/v1/chat/completions"):
                self._send(404, {"error": f"no route {self.path}"})
                return
            if not self._authorized():
                return
            fault = server.next_fault()
            if fault == "drop":
                self.close_connection = True
                return
            if fault == "slow":
                server.sleep(server.slow_s)
            elif fault is not None and fault.split(":")[0].isdigit():
                code, _, after = fault.partition(":")
                headers = {"retry-after": after or "0"} if code == "429" else {}
                kind = "overloaded" if code == "429" else "validation" if code == "422" else "generation"
                self._send(int(code), {"error": f"scripted fault {code}", "error_type": kind}, headers)
                return
            if server.delay_s:
                server.sleep(server.delay_s)
            if path in ("/", "/generate"):
                self._tgi(body, path)
            else:
                self._openai(body, path)

        def _tgi(self, body: dict[str, Any], path: str) -> None:
            params = body.get("parameters") or {}
            text = server.text_for(body.get("inputs", ""), params.get("seed"), params.get("temperature"))
            finish = "length"
            for stop in params.get("stop") or []:
                at = text.find(stop)
                if at >= 0:
                    text, finish = text[:at + len(stop)], "stop_sequence"  # TGI keeps the stop sequence
            out = {"generated_text": text,
                   "details": {"finish_reason": finish, "generated_tokens": len(text.split()),
                               "seed": params.get("seed"), "prefill": [], "tokens": []}}
            self._send(200, [out] if path == "/" else out)

        def _openai(self, body: dict[str, Any], path: str) -> None:
            chat = path.endswith("chat/completions")
            prompt = body["messages"][-1]["content"] if chat else body.get("prompt", "")
            text = server.text_for(prompt, body.get("seed"), body.get("temperature"))
            finish = "length"
            for stop in body.get("stop") or []:
                at = text.find(stop)
                if at >= 0:
                    text, finish = text[:at], "stop"  # OpenAI drops the stop sequence
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            self._send(200, {
                "id": "cmpl-fake", "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()), "model": body.get("model", server.model_id), "choices": [choice],
                "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                          "total_tokens": len(prompt.split()) + len(text.split())},
            })

    return Handler


@contextlib.contextmanager
def running_teacher(cfg: Any, backend: Any = None, store: Any = None,
                    timeout: float = 30.0) -> Iterator[tuple[Any, Any]]:
    """A real TeacherService on a free loopback port and a deadline-carrying stub for it."""
    from iterkd.shared.config import ServerConfig
    from iterkd.shared.rpc import Server, Service, connect, service_name
    from iterkd.teacher.server import build_servicer
    from iterkd.v1 import teacher_pb2, teacher_pb2_grpc

    servicer = build_servicer(cfg, store, backend)
    server = Server([Service(teacher_pb2_grpc.add_TeacherServiceServicer_to_server, servicer,
                             service_name(teacher_pb2, "TeacherService"))],
                    ServerConfig(port=0, max_workers=cfg.server.max_workers, grace_s=0))
    server.start()
    channel, stub = connect(server.target, teacher_pb2_grpc.TeacherServiceStub, timeout=timeout)
    try:
        yield server, stub
    finally:
        channel.close()
        server.stop(0)
