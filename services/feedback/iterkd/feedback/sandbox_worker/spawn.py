"""Starting an answer: the plan record, the clone, and the runner that becomes the answer.

* As root with a run uid: one process per answer, the runner, raw-cloned by the worker; it sets
  the limits, becomes the run uid and runs the program.
* Otherwise, with a PID namespace: ``worker --clone(NEWPID)--> init (pid 1): fork runner, reap``;
  killing the init (or its exit) makes the kernel kill everything left in the namespace.
* Without either: the runner is forked directly.

With a private tmp (``Plan.private``), the runner first enters a mount namespace of its own in
which the answer's tmpfs (mounted by the worker, size-limited) covers /tmp, /var/tmp, /dev/shm
and /run/lock; the answer's directory is /tmp/answer. Everything it writes goes to that one tmpfs
and is gone once the worker unmounts it and the answer's processes are dead.

Python programs run in the runner itself (``exec`` of a code object the worker compiled). Other
languages run as steps (compile, then run), each a child of the runner, which supervises them
with their own limits (see ``supervise``).
"""

from __future__ import annotations

import os
import resource
import select
import signal
import struct
import sys
import types
from dataclasses import dataclass, field

from . import kernel as k
from . import reap
from .isolation import Isolation
from .scratch import cover
from .verdict import TIMED_OUT_STATUS, failure

Limit = tuple[int, tuple[int, int]]
COMPILE_REPORT_CHARS = 600  # first lines of a compiler's error output put in the verdict


@dataclass(frozen=True, slots=True)
class Step:
    """One process of a non-Python answer: a compile (its output read on failure) or the run."""

    kind: str  # "compile", "run" or "pass" (report success; argv[0] is the token)
    argv: list[str]
    env: dict[str, str]
    timeout_s: float
    limits: list[Limit]
    output_to_stderr: bool = False  # compile output goes to the answer's stderr (the static view)


@dataclass(slots=True)
class Plan:
    """Everything the runner needs, prepared by the worker before the clone (in place of a tuple)."""

    code: types.CodeType | str | None  # a Python program; None for step-run languages
    cwd: str  # the answer's directory as the answer sees it
    out: int  # stdout memfd
    err: int  # stderr memfd
    res_w: int  # the report pipe's write end
    rfd: int  # the report pipe's fd number in the answer (random)
    ok: bytes  # b"P" + the token the Python runner writes on success
    limits: list[Limit]
    private: str | None = None  # the answer's tmpfs in the worker's namespace, or None
    steps: list[Step] = field(default_factory=list)


def spawn(iso: Isolation, plan: Plan, res_r: int, devnull: int, sock_fd: int) -> int:
    """Start the answer; the pid to watch (-1 if it could not start)."""
    if iso.run_uid is not None:
        pid = k.raw_clone()
        if pid == 0:
            try:
                os.close(res_r)
                runner(iso, plan, devnull)
            finally:
                os._exit(70)
        os.close(plan.res_w)
        return pid
    hand_r, hand_w = os.pipe()
    if iso.raw_clone:  # the child is PID 1 of a fresh namespace right away
        pid = k.clone_newpid()
        if pid == 0:
            try:
                os.close(res_r)
                os.close(hand_r)
                os.close(hand_w)
                init(iso, plan, devnull, sock_fd)
            finally:
                os._exit(70)
        os.close(plan.res_w)
        os.close(hand_w)
        os.close(hand_r)
        return pid
    pid = os.fork()
    if pid == 0:
        try:
            os.close(res_r)
            os.close(hand_r)
            if iso.pidns:
                _c1(iso, plan, devnull, sock_fd, hand_w)
            else:
                runner(iso, plan, devnull)
        finally:
            os._exit(70)
    os.close(plan.res_w)
    os.close(hand_w)
    target = pid
    if iso.pidns:
        raw = b""
        while len(raw) < 4:
            chunk = os.read(hand_r, 4 - len(raw))
            if not chunk:
                break
            raw += chunk
        os.waitpid(pid, 0)
        target = struct.unpack("<i", raw)[0] if len(raw) == 4 else -1
    os.close(hand_r)
    return target


def _c1(iso: Isolation, plan: Plan, devnull: int, sock_fd: int, hand_w: int) -> None:
    k.prctl(k.PR_SET_PDEATHSIG, signal.SIGKILL)
    k.unshare(k.CLONE_NEWPID)
    pid = os.fork()
    if pid == 0:
        os.close(hand_w)
        init(iso, plan, devnull, sock_fd)
    os.write(hand_w, struct.pack("<i", pid))
    os._exit(0)


def init(iso: Isolation, plan: Plan, devnull: int, sock_fd: int) -> None:
    """PID 1 of the answer's namespace: start the runner, reap, report its fate as exit code."""
    pid = os.fork()
    if pid == 0:
        runner(iso, plan, devnull)
    for fd in (plan.out, plan.err, plan.res_w, sock_fd):
        try:
            os.close(fd)
        except OSError:
            pass
    while True:
        try:
            done, st = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(70)
        except InterruptedError:
            continue
        if done == pid:
            os._exit(_encode(st))


def _encode(status: int) -> int:
    """A child's fate as an exit code: its code, or 128 + the signal number."""
    code = os.waitstatus_to_exitcode(status)
    return code if 0 <= code < 128 else 128 + min(-code, 127)


def enter_private(private: str, covered: tuple[str, ...]) -> None:
    """Own mount namespace; the answer's tmpfs covers every shared writable place (/tmp last)."""
    k.unshare(k.CLONE_NEWNS)
    cover(private, covered)


def drop_privileges(iso: Isolation) -> None:
    if iso.run_uid is not None:
        os.setgroups([])
        os.setresgid(iso.run_uid, iso.run_uid, iso.run_uid)
        os.setresuid(iso.run_uid, iso.run_uid, iso.run_uid)
    else:  # shared uid: the limit counts the uid's other processes too ("-ish")
        n = len(reap.uid_processes(os.getuid())) + iso.max_procs
        resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
        k.drop_capabilities()
    k.set_pdeathsig_kill()  # after the uid change, which clears it


def runner(iso: Isolation, plan: Plan, devnull: int) -> None:
    """Set up the answer's process and run it; never returns.

    For Python, kept to C calls on objects the worker prepared (see Worker.run_one): the
    environment, the SIGINT handler, ``tempfile.tempdir`` and no-new-privileges are already set,
    and inherited.
    """
    report = plan.res_w
    try:
        os.setsid()
        os.dup2(devnull, 0)
        os.dup2(plan.out, 1)
        os.dup2(plan.err, 2)
        os.dup2(plan.res_w, plan.rfd)
        report = plan.rfd
        os.closerange(3, plan.rfd)
        os.closerange(plan.rfd + 1, 65536)
        if plan.private is not None:
            enter_private(plan.private, iso.covered)
        os.chdir(plan.cwd)
        if plan.code is None:
            k.set_pdeathsig_kill()
            supervise(iso, plan, report)
        for which, value in plan.limits:
            resource.setrlimit(which, value)
        drop_privileges(iso)
    except BaseException as exc:
        try:
            os.write(report, b"F" + f"sandbox setup: {exc}".encode(errors="replace")[:1000])
        finally:
            os._exit(71)
    run_python(plan.code, plan.rfd, plan.ok)


def run_python(code: types.CodeType | str | None, rfd: int, ok: bytes) -> None:
    """Execute the answer; write ``ok`` (``P`` + token) only if it finished normally."""
    try:
        if isinstance(code, str):
            code = compile(code, "<string>", "exec", dont_inherit=True)
        exec(code, {})
    except BaseException as exc:
        _flush()
        try:
            os.write(rfd, failure(exc))
        finally:
            os._exit(1)
    _flush()
    try:
        os.write(rfd, ok)
    finally:
        os._exit(0)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


# -- step-run languages ----------------------------------------------------------------------------


def supervise(iso: Isolation, plan: Plan, report: int) -> None:
    """Run the plan's steps in order, each a child under its own limits; never returns.

    The supervisor (this runner) keeps the worker's rights only to kill what a step leaves:
    a compile step that fails or runs out of time ends the answer with a ``C``/``K`` report;
    the run step's fate becomes the supervisor's exit code (``T`` and TIMED_OUT_STATUS when it
    runs out of wall-clock time).
    """
    for step in plan.steps:
        if step.kind == "pass":  # a check-only plan: compiled cleanly enough
            _end(report, b"P" + step.argv[0].encode(), 0)
        capture = -1
        if step.kind == "compile" and not step.output_to_stderr:
            capture = os.memfd_create("compile", 0)
        pid = os.fork()
        if pid == 0:
            _step_child(iso, plan, step, report, capture)
        status = _wait(pid, step.timeout_s)
        _kill_rest(iso, pid)
        if step.kind == "compile":
            if status is None:
                _end(report, b"K" + f"timed out after {step.timeout_s:g}s".encode(), 1)
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                text = b""
                if capture >= 0:
                    text = os.pread(capture, 64 * 1024, 0)
                if code < 0 and not text.strip():
                    _end(report, b"K" + f"killed by {_signame(-code)}".encode(), 1)
                _end(report, b"C" + _first_lines(text), 1)
            if capture >= 0:
                os.close(capture)
            continue
        if status is None:
            _end(report, b"T", TIMED_OUT_STATUS)
        os._exit(_encode(status))
    _end(report, b"Fno run step", 1)


def _step_child(iso: Isolation, plan: Plan, step: Step, report: int, capture: int) -> None:
    try:
        os.setpgid(0, 0)
        if step.kind == "compile":
            os.close(report)  # the compiler never reports a verdict
            if capture >= 0:
                os.dup2(capture, 1)
                os.dup2(capture, 2)
                os.close(capture)
            elif step.output_to_stderr:
                os.dup2(2, 1)
        for which, value in step.limits:
            resource.setrlimit(which, value)
        drop_privileges(iso)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.execve(step.argv[0], step.argv, step.env)
    except BaseException as exc:
        try:
            if step.kind == "run":
                os.write(report, b"F" + f"sandbox setup: {exc}".encode(errors="replace")[:1000])
            else:
                os.write(2, f"sandbox setup: {exc}".encode(errors="replace")[:1000])
        finally:
            os._exit(71)


def _wait(pid: int, timeout: float) -> int | None:
    """The child's wait status, or None (killed) past ``timeout`` seconds."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not ready:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None
    _, st = os.waitpid(pid, 0)
    return st


def _kill_rest(iso: Isolation, pgid: int) -> None:
    """Kill whatever a step left (its group; as root, the run uid's processes)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
    if iso.run_uid is not None:
        reap.kill_uid(iso.run_uid)
    reap.reap_all()


def _first_lines(text: bytes, lines: int = 6) -> bytes:
    kept = [ln for ln in text.decode("utf-8", errors="replace").splitlines() if ln.strip()][:lines]
    return " | ".join(kept)[:COMPILE_REPORT_CHARS].encode()


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def _end(report: int, message: bytes, code: int) -> None:
    try:
        os.write(report, message[:1000])
    finally:
        os._exit(code)
