"""Execution sandbox for untrusted Python answers: a pool of warm workers that clone per answer.

How it works
------------
:class:`SandboxPool` starts ``workers`` processes (the ``sandbox_worker`` package run with ``python -I`` and a
scrubbed environment). Each worker does the costly setup once: imports, a new network namespace
(and a mount namespace when root, or a user namespace when not), and becomes a child subreaper.
Per answer it compiles the program, then clones; the answer runs in a new session/process group,
in a fresh temporary directory that is removed afterwards, with stdin on /dev/null, a minimal
environment (PATH, LANG, HOME=TMPDIR=the temporary directory, PYTHONHASHSEED=0,
OMP_NUM_THREADS=1), RLIMIT_CPU/AS/FSIZE/NPROC/CORE, no new privileges, and stdout/stderr captured
in memory files truncated to ``output_bytes``. As root, the answer runs as an unprivileged uid of
its own (2_000_000_000 + the worker's pid; RLIMIT_NPROC then counts only that answer's
processes), as one process: whatever it leaves behind is reparented to the worker and killed by
uid before the next answer starts. Without root, it runs in a fresh PID namespace (inside the
worker's user namespace) when the OS allows.

Where the worker has a mount namespace, each answer's directory lies in a private, size-limited
tmpfs that also covers /tmp, /var/tmp, /dev/shm and /run/lock (``disk_mb`` in all). As root it is
one tmpfs per worker, bound over those places in the worker's own namespace and replaced by a fresh
one after any answer that left an observable trace in it (``sandbox_worker.scratch``); without
root, a tmpfs and a mount namespace per answer.

The pool talks to each worker over a socketpair with length-prefixed JSON messages (see
``sandbox_worker``). ``run`` takes an idle worker from a queue; ``run_many`` takes the idle workers
and keeps ``PIPELINE`` programs queued at each, from the calling thread; both are thread-safe. A
worker that dies or stops answering is killed, whatever it ran is killed, it is replaced, and the
answer is reported as failed (the other programs queued at it run elsewhere).

Verdict
-------
``passed`` only when the answer's code object ran to its end without an exception *and* the
runner then wrote ``P`` + a 16-byte random token (drawn by the worker per run) to a pipe whose fd
number is random, *and* the runner exited with status 0. Exit codes, ``exit(0)``,
``os._exit(0)``, ``SystemExit``/``BaseException`` before the tests finish, and anything printed
all fail. Wall-clock timeout or RLIMIT_CPU gives ``"timed out"``.

Threat model (honest)
---------------------
Defended: accidental or naive misbehaviour of generated code - infinite loops, sleeps, fork and
memory bombs, huge output, exiting early to fake success, printing success, detached
(setsid/double-fork) children (as root: reparented to the worker, a child subreaper, and killed
with every process of the run uid - which only that answer's processes have - before the next
answer; without root: the PID namespace dies with its init, and without one the worker kills the
process group, its /proc descendants and the uid's processes), killing the parent (as a separate
uid it gets EPERM; without root, the PID namespace's init ignores it), reading the
parent's environment (workers get a scrubbed environment; the answer gets a fresh one; as a
separate uid or without capabilities it cannot read other processes' /proc/PID/environ; when not
root the pool marks its own process non-dumpable), network access (own network namespace with
only a down loopback), writing outside its directory as root (the run uid owns only its
temporary directory; everything root-owned is read-only to it).

The program is compiled in the worker, outside the limits (up to 64 KiB of source; larger ones
are compiled in the child): compiling runs none of its code, and a compiler crash only costs a
worker (replaced; the answer fails), but compile time does not count against the timeout.

Not defended: the answer runs in the same process as the code that reports the verdict, so a
determined attacker can find the report pipe (/proc/self/fd) and the token (in memory, e.g.
via ``gc`` or frame introspection) and forge a pass; the verdict stops reward hacking by
exit codes or printing, not deliberate in-process forgery. Without root, the answer keeps the
caller's uid: files that uid can write (the working tree included) can be modified, and
RLIMIT_NPROC counts the uid's other processes. Even as root, world-writable places (/tmp,
/dev/shm) are writable, there is no disk quota beyond RLIMIT_FSIZE per file, /proc still lists
the host's processes (as root the answer shares the host's PID namespace and its parent is the
worker), and kernel exploits are out of scope. There is no seccomp filter; use a container or
gVisor-class isolation for hostile code.
"""

from __future__ import annotations

import collections
import concurrent.futures
import ctypes
import json
import logging
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from iterkd.feedback import sandbox_worker
from iterkd.feedback.sandbox_worker import protocol
from iterkd.feedback.sandbox_worker.kernel import PR_SET_DUMPABLE
from iterkd.feedback.sandbox_worker.languages import LANGUAGES
from iterkd.feedback.sandbox_worker.reap import uid_processes

log = logging.getLogger("iterkd.feedback.sandbox")

PRELOAD = (  # what HumanEval and MBPP import; each module makes every fork a little slower
    "typing", "math", "re", "collections", "heapq", "itertools", "functools", "random", "copy", "string",
    "hashlib", "bisect", "operator", "cmath", "array", "datetime",
)
PIPELINE = 2  # programs queued at a worker by run_many: the one running and the next
_warned: set[str] = set()
_warn_lock = threading.Lock()


@dataclass(frozen=True)
class Limits:
    """Per-answer limits."""

    timeout_s: float = 3.0  # wall clock per answer
    cpu_s: int | None = None  # RLIMIT_CPU, default ceil(timeout)+1
    memory_mb: int = 1024  # RLIMIT_AS
    file_size_mb: int = 16  # RLIMIT_FSIZE
    max_procs: int = 64  # RLIMIT_NPROC (exact with a run uid; otherwise added to the uid's count)
    output_bytes: int = 8192  # captured stdout/stderr truncated to this
    network: bool = False  # False = try to isolate
    disk_mb: int = 64  # one private tmpfs per answer: its directory, /tmp, /var/tmp, /dev/shm together
    compile_timeout_s: float = 10.0  # wall clock per compile step (compiled languages)
    compile_memory_mb: int = 2048  # RLIMIT_AS of a compile step
    disabled_languages: tuple[str, ...] = ()  # treat these toolchains as missing (tests)


@dataclass(frozen=True)
class Program:
    """A non-Python program: its language and its files (name -> text), the first the answer's.

    ``check``: only compile it with warnings on (the static view); the compiler's output is the
    result's stderr and ``passed`` says it compiled.
    """

    language: str
    files: dict[str, str]
    check: bool = False

    def request(self, timeout: float) -> dict:
        return {"language": self.language, "files": self.files, "check": self.check, "timeout": timeout}


def _request(program: str | Program, timeout: float) -> dict:
    if isinstance(program, Program):
        if program.language == "python":
            return {"program": next(iter(program.files.values()), ""), "timeout": timeout}
        if program.language not in LANGUAGES:
            raise ValueError(f"unknown language {program.language!r}; known: {', '.join(LANGUAGES)}")
        return program.request(timeout)
    return {"program": program, "timeout": timeout}


@dataclass(frozen=True)
class ExecResult:
    """The verdict on one program."""

    passed: bool
    result: str  # "passed", "timed out", or "failed: <reason>"
    duration_s: float
    stdout: str
    stderr: str


class WorkerDied(RuntimeError):
    """A worker closed its socket, stopped answering or sent garbage."""


def _warn_once(message: str) -> None:
    with _warn_lock:
        if message in _warned:
            return
        _warned.add(message)
    log.warning("%s", message)


def _set_not_dumpable() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, ctypes.c_ulong(0), 0, 0, 0)
    except OSError:
        pass


class _Worker:
    """The pool's handle on one worker process."""

    def __init__(self, limits: Limits) -> None:
        ours, theirs = socket.socketpair()
        config = asdict(limits) | {"preload": list(PRELOAD)}
        launch = [sys.executable, "-I", "-c", sandbox_worker.LAUNCH, sandbox_worker.PACKAGE_PARENT]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        try:
            self.proc = subprocess.Popen(
                [*launch, str(theirs.fileno()), json.dumps(config)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
                env=env, cwd="/", start_new_session=True,
            )
        finally:
            theirs.close()
        self.sock = ours
        self.sock.settimeout(60)
        self.running_pid: int | None = None
        self.queued: collections.deque[float] = collections.deque()  # timeouts of the programs sent
        self.front_since = 0.0  # when the oldest queued program became the oldest
        try:
            msg = protocol.recv_msg(self.sock)
        except (EOFError, OSError, ValueError) as exc:
            self.kill()
            raise RuntimeError(f"sandbox worker failed to start: {exc}") from exc
        self.info: dict = msg.get("info", {})
        for warning in self.info.get("warnings", []):
            _warn_once(f"sandbox: {warning}")
        for language in LANGUAGES:
            if language not in self.info.get("languages", LANGUAGES):
                _warn_once(f"sandbox: no toolchain for {language}; its answers fail with "
                           f"'failed: no toolchain for {language}'")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def fileno(self) -> int:
        return self.sock.fileno()

    def run(self, program: str | Program, timeout: float) -> ExecResult:
        self.send(program, timeout)
        return self.receive()

    def send(self, program: str | Program, timeout: float) -> None:
        """Queue a program; the worker runs its queue in order (results come back in that order)."""
        if not self.queued:
            self.front_since = time.monotonic()
        self.queued.append(timeout)
        try:
            self.sock.sendall(protocol.frame(_request(program, timeout)))
        except OSError as exc:
            raise WorkerDied(str(exc)) from exc

    def receive(self) -> ExecResult:
        """The result of the oldest queued program (blocks; WorkerDied past its timeout + 30 s)."""
        self.sock.settimeout(max(1.0, self.front_since + self.queued[0] + 30 - time.monotonic()))
        try:
            msg = protocol.recv_msg(self.sock)
            if msg.get("event") == "start":
                self.running_pid = int(msg["pid"])
                msg = protocol.recv_msg(self.sock)
            if msg.get("event") != "done":
                raise WorkerDied(f"unexpected message {msg.get('event')!r}")
            result = ExecResult(bool(msg["passed"]), str(msg["result"]), float(msg["duration_s"]),
                                str(msg["stdout"]), str(msg["stderr"]))
        except (EOFError, OSError, ValueError, KeyError, TypeError) as exc:
            raise WorkerDied(str(exc)) from exc
        self.running_pid = None
        self.queued.popleft()
        self.front_since = time.monotonic()
        return result

    def kill(self) -> None:
        """Kill the worker and whatever answer it was running; remove its directory."""
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()
        self.sock.close()
        info = getattr(self, "info", {})
        victims: set[int] = set()
        if self.running_pid:
            victims.add(self.running_pid)
            try:
                os.killpg(self.running_pid, signal.SIGKILL)
            except OSError:
                pass
        if info.get("run_uid") is not None:
            victims |= uid_processes(int(info["run_uid"]))
        deadline = time.monotonic() + 5
        while victims and time.monotonic() < deadline:
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)
            victims = {p for p in victims if _alive(p)}
            if info.get("run_uid") is not None:
                victims |= uid_processes(int(info["run_uid"]))
        if info.get("base"):
            shutil.rmtree(info["base"], ignore_errors=True)

    def close(self) -> None:
        """Ask politely (EOF), then kill."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


class SandboxPool:
    """A pool of warm sandbox workers; see the module docstring."""

    def __init__(self, workers: int | None = None, limits: Limits = Limits()) -> None:
        self.limits = limits
        self.size = max(1, workers or os.cpu_count() or 1)
        if os.geteuid() != 0:
            # Same uid as the answers: keep them from reading our /proc/PID/environ and memory.
            _set_not_dumpable()
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        with concurrent.futures.ThreadPoolExecutor(self.size) as ex:
            started = list(ex.map(lambda _: self._spawn(), range(self.size)))
        for w in started:
            self._idle.put(w)

    def _spawn(self) -> _Worker:
        w = _Worker(self.limits)
        with self._lock:
            self._all.add(w)
        return w

    @property
    def info(self) -> dict:
        """Isolation facts reported by one worker (network_isolated, run_uid, pid_namespace...)."""
        with self._lock:
            any_worker = next(iter(self._all), None)
        return dict(any_worker.info) if any_worker else {}

    def worker_pids(self) -> list[int]:
        """Pids of the live worker processes."""
        with self._lock:
            return [w.pid for w in self._all]

    def run(self, program: str | Program, timeout: float | None = None) -> ExecResult:
        """Run one program; blocks for a free worker."""
        if self._closed:
            raise RuntimeError("SandboxPool is closed")
        t = float(timeout if timeout is not None else self.limits.timeout_s)
        w = self._idle.get()
        if self._closed:
            self._idle.put(w)
            raise RuntimeError("SandboxPool is closed")
        start = time.monotonic()
        try:
            return w.run(program, t)
        except WorkerDied as exc:
            with self._lock:
                self._all.discard(w)
            w.kill()
            if self._closed:
                raise RuntimeError("SandboxPool is closed") from exc
            log.warning("sandbox worker %d died (%s); restarting it", w.pid, exc)
            w = self._spawn()
            return ExecResult(False, "failed: sandbox worker died", time.monotonic() - start, "", "")
        finally:
            self._idle.put(w)

    def run_many(self, programs: Sequence[str | Program], timeout: float | None = None) -> list[ExecResult]:
        """Run programs in parallel over the workers; results in input order.

        The calling thread takes every idle worker (at least one; each goes back as soon as it
        has nothing left to do) and keeps up to ``PIPELINE`` programs queued at each, so a
        worker starts its next program the moment it has reported one.
        """
        if self._closed:
            raise RuntimeError("SandboxPool is closed")
        t = float(timeout if timeout is not None else self.limits.timeout_s)
        results: list[ExecResult | None] = [None] * len(programs)
        if not programs:
            return []
        todo = collections.deque(range(len(programs)))
        mine: dict[_Worker, collections.deque[int]] = {}
        try:
            while todo or any(mine.values()):
                if todo and len(mine) < min(self.size, len(programs)):
                    self._take_workers(mine, block=not mine, want=len(todo))
                for w, queue_ in mine.items():  # top up every queue
                    while todo and len(queue_) < PIPELINE:
                        i = todo.popleft()
                        queue_.append(i)
                        try:
                            w.send(programs[i], t)
                        except WorkerDied:
                            break  # noticed on receive
                busy = [w for w, queue_ in mine.items() if queue_]
                for w in [w for w, queue_ in mine.items() if not queue_ and not todo]:
                    del mine[w]
                    self._idle.put(w)
                if not busy:
                    continue
                ready, _, _ = select.select(busy, [], [], max(
                    0.0, min(w.front_since + w.queued[0] + 30 for w in busy) - time.monotonic()))
                for w in ready or busy:  # nothing ready: the receive times out and reports it
                    queue_ = mine.pop(w)
                    i = queue_[0]
                    try:
                        results[i] = w.receive()
                        queue_.popleft()
                        mine[w] = queue_
                    except WorkerDied as exc:
                        queue_.popleft()
                        results[i] = self._replace(w, exc, time.monotonic() - w.front_since)
                        todo.extendleft(reversed(queue_))  # the rest runs elsewhere
                        if self._closed:
                            raise RuntimeError("SandboxPool is closed") from exc
                    if not ready:
                        break
        finally:
            for w in mine:
                if w.queued:  # interrupted mid-batch: its results would arrive out of turn
                    self._replace(w, WorkerDied("abandoned"), 0.0)
                else:
                    self._idle.put(w)
        done = [r for r in results if r is not None]
        assert len(done) == len(programs)
        return done

    def _take_workers(self, mine: dict[_Worker, collections.deque[int]], block: bool, want: int) -> None:
        while len(mine) < want:
            try:
                w = self._idle.get(block=block)
            except queue.Empty:
                return
            block = False
            if self._closed:
                self._idle.put(w)
                raise RuntimeError("SandboxPool is closed")
            mine[w] = collections.deque()

    def _replace(self, w: _Worker, exc: Exception, elapsed: float) -> ExecResult:
        """Kill a failed worker, start another in its place (idle), report the answer as failed."""
        with self._lock:
            self._all.discard(w)
        w.kill()
        if not self._closed:
            log.warning("sandbox worker %d died (%s); restarting it", w.pid, exc)
            self._idle.put(self._spawn())
        return ExecResult(False, "failed: sandbox worker died", elapsed, "", "")

    def close(self) -> None:
        """Stop every worker (killing what they run) and remove their directories."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._all)
            self._all.clear()
        for w in workers:
            w.close()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
