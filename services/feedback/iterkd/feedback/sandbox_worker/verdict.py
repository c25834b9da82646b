"""The verdict on one answer, from how its watched process ended and what the report pipe holds.

``passed`` only when the report is ``P`` + this run's token *and* the process exited with 0.
Report kinds written by the sandbox itself (never trusted for a pass): ``F<reason>`` (failed
with a reason), ``C<first lines>`` (compile error), ``K<text>`` (compile step timed out or was
killed), ``N<language>`` (no toolchain), ``T`` (the run step hit its wall-clock limit).
"""

from __future__ import annotations

import os
import signal

TOKEN_LEN = 16
# Exit status of a supervising runner whose run step timed out (see spawn.Runner.supervise).
TIMED_OUT_STATUS = 124


def failure(exc: BaseException) -> bytes:
    """The report for a Python program that raised ``exc``."""
    text = str(exc)
    if not isinstance(exc, Exception):
        text = f"{type(exc).__name__}({text})"
    elif not text:
        text = type(exc).__name__
    return b"F" + text.encode("utf-8", errors="replace")[:1000]


def verdict(status: int | None, timed_out: bool, data: bytes, token: bytes, target: int) -> tuple[bool, str]:
    if target <= 0:
        return False, "failed: sandbox could not start the answer"
    if timed_out:
        return False, "timed out"
    assert status is not None
    code = os.waitstatus_to_exitcode(status)
    # An init or a supervisor reports its child's fate as: exit code, or 128 + signal number.
    sig = -code if code < 0 else (code - 128 if code > 128 else 0)
    if sig == signal.SIGXCPU:
        return False, "timed out"
    kind = data[:1]
    if code == 0 and kind == b"P" and token and data[1:1 + len(token)] == token:
        return True, "passed"
    text = data[1:].decode("utf-8", errors="replace").strip()
    if kind == b"C":
        return False, f"failed: compile error: {text}" if text else "failed: compile error"
    if kind == b"K":
        return False, f"failed: compile step {text or 'killed'}"
    if kind == b"N":
        return False, f"failed: no toolchain for {text}"
    if kind == b"T":
        return False, "timed out"
    if kind == b"F":
        return False, f"failed: {text or 'error'}"
    if sig:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return False, f"failed: killed by {name}"
    return False, f"failed: exited with status {code} before the tests finished"
