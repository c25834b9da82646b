"""A local HTTP server on 127.0.0.1 that speaks text-generation-inference's ``POST /`` and
``POST /generate`` (``/`` answers a one-element list, as TGI does).

Replies are scripted: ``reply(body) -> (status, json_or_text)`` decides each answer from the request
body; every request body is recorded in ``requests``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], tuple[int, Any]]


class FakeTgi:
    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append({"path": self.path, **body})
                if self.path not in ("/", "/generate"):
                    status, payload = 404, {"error": "not found"}
                else:
                    status, payload = fake.reply(body)
                    if self.path == "/" and status == 200:
                        payload = [payload]
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeTgi:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def text(generated: str, finish: str = "eos_token") -> tuple[int, Any]:
    return 200, {"generated_text": generated, "details": {"finish_reason": finish, "generated_tokens": 7}}
