"""The pool <-> worker wire protocol: a 4-byte big-endian length, then UTF-8 JSON.

* worker -> pool, once at start: ``{"event": "ready", "info": {...}}``
* pool -> worker: ``{"program": str, "timeout": float, "language": str}``; the pool may send
  several ahead, the worker runs them one at a time, in order.
* worker -> pool, per program: without a run uid, ``{"event": "start", "pid": int}`` (the pid to
  kill should the worker die); then ``{"event": "done", "passed", "result", "duration_s",
  "stdout", "stderr"}``.

EOF on the socket (the pool closed or died) makes the worker kill any running answer and exit.
"""

from __future__ import annotations

import json
import socket
import struct

HEADER = struct.Struct(">I")


def frame(obj: dict) -> bytes:
    data = json.dumps(obj).encode()
    return HEADER.pack(len(data)) + data


def send_msg(sock: socket.socket, obj: dict) -> None:
    sock.sendall(frame(obj))


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return bytes(buf)


def recv_msg(sock: socket.socket) -> dict:
    (size,) = HEADER.unpack(recv_exact(sock, HEADER.size))
    return json.loads(recv_exact(sock, size))


class Inbox:
    """Complete requests out of a byte stream (the pool may send several ahead)."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, chunk: bytes) -> list[dict]:
        buf = self.buf
        buf += chunk
        pos = 0
        out = []
        while len(buf) - pos >= HEADER.size:
            (size,) = HEADER.unpack_from(buf, pos)
            if len(buf) - pos - HEADER.size < size:
                break
            out.append(json.loads(bytes(buf[pos + HEADER.size:pos + HEADER.size + size])))
            pos += HEADER.size + size
        del buf[:pos]
        return out
