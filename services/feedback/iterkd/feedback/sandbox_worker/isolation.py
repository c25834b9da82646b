"""One-time worker setup: namespaces, the run uid, the answers' environment and limits."""

from __future__ import annotations

import errno
import os
import resource
import stat
import sys
import tempfile
from dataclasses import dataclass, field

from . import kernel as k

# Run uids (root only): RUN_UID_BASE + the worker's pid, unique among live workers on the host.
RUN_UID_BASE = 2_000_000_000
# World-writable places an answer would otherwise share with the host; each answer gets its own.
SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")


@dataclass
class Isolation:
    """What the worker could set up; read by the spawner, the reaper and the pool (``info``)."""

    base: str
    run_uid: int | None = None
    pidns: bool = False
    raw_clone: bool = False
    userns: bool = False
    network_isolated: bool = False
    mount_ns: bool = False  # the worker has a private mount namespace (per-answer tmpfs possible)
    private_tmp: bool = False  # each answer gets its own size-limited /tmp, /dev/shm and directory
    max_procs: int = 64
    covered: tuple[str, ...] = ()  # the shared writable places an answer sees privately
    limits: list[tuple[int, tuple[int, int]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def info(self) -> dict:
        return {"warnings": list(self.warnings), "network_isolated": self.network_isolated,
                "run_uid": self.run_uid, "pid_namespace": self.pidns, "user_namespace": self.userns,
                "private_tmp": self.private_tmp, "base": self.base}


def world_accessible(path: str) -> bool:
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


def topmost_blocked(path: str) -> str | None:
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


def setup(cfg: dict, sys_path: list[str]) -> Isolation:
    """Namespaces, run uid, environment, limits: everything done once per worker."""
    base = tempfile.mkdtemp(prefix="iterkd-sandbox-")
    os.chmod(base, 0o711)
    iso = Isolation(base=base, max_procs=int(cfg["max_procs"]))
    os.chdir("/")
    k.prctl(k.PR_SET_CHILD_SUBREAPER, 1)
    k.prctl(k.PR_SET_DUMPABLE, 0)
    root = os.geteuid() == 0
    want_net = not cfg.get("network", False)
    if root:
        if want_net:
            try:
                k.unshare(k.CLONE_NEWNET)
                iso.network_isolated = True
            except OSError as exc:
                iso.warnings.append(f"no network namespace ({exc}); answers can reach the network")
        try:
            k.unshare(k.CLONE_NEWNS)
            k.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
            iso.mount_ns = True
        except OSError:
            iso.mount_ns = False
    else:
        uid, gid = os.getuid(), os.getgid()
        try:
            k.unshare(k.CLONE_NEWUSER | k.CLONE_NEWNS | (k.CLONE_NEWNET if want_net else 0))
            with open("/proc/self/setgroups", "w") as fh:
                fh.write("deny")
            with open("/proc/self/uid_map", "w") as fh:
                fh.write(f"{uid} {uid} 1")
            with open("/proc/self/gid_map", "w") as fh:
                fh.write(f"{gid} {gid} 1")
            iso.userns = True
            iso.network_isolated = want_net
            try:
                k.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
                iso.mount_ns = True
            except OSError:
                pass
        except OSError as exc:
            if want_net:
                iso.warnings.append(f"no user/network namespace ({exc}); answers can reach the network")
    if root:
        _choose_run_uid(iso, sys_path)
    if iso.run_uid is None:  # answers share our uid: contain them in a PID namespace each
        iso.pidns, iso.raw_clone = _probe_pidns()
        if not iso.pidns:
            iso.warnings.append(
                "no PID namespace; escaped processes are found by process group, uid and /proc walk")
    if iso.mount_ns and cfg.get("disk_mb", 0) > 0:
        iso.private_tmp = _probe_tmpfs(base)
        iso.covered = tuple(p for p in SHARED_WRITABLE if os.path.isdir(p))
    if not iso.private_tmp:
        iso.warnings.append("no private /tmp per answer (needs a mount namespace and tmpfs); "
                            "answers share the host's /tmp and /dev/shm, bounded per file only")
    # The answers' environment, but HOME and TMPDIR (set per answer); the pool gave us only PATH and LANG.
    os.environ.clear()
    os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
                       "OMP_NUM_THREADS": "1"})
    tempfile.tempdir = None  # the answer's tempfile follows its TMPDIR
    # Inherited by every answer; harmless here (the worker never executes a program file itself).
    k.prctl(k.PR_SET_NO_NEW_PRIVS, 1)
    mb = 1024 * 1024
    iso.limits = [(resource.RLIMIT_AS, (cfg["memory_mb"] * mb,) * 2),
                  (resource.RLIMIT_FSIZE, (cfg["file_size_mb"] * mb,) * 2),
                  (resource.RLIMIT_CORE, (0, 0))]
    if iso.run_uid is not None:  # counts the run uid's processes only
        iso.limits.append((resource.RLIMIT_NPROC, (cfg["max_procs"],) * 2))
    return iso


def _probe_tmpfs(base: str) -> bool:
    probe = os.path.join(base, "probe")
    try:
        os.mkdir(probe, 0o700)
        k.mount("tmpfs", probe, "tmpfs", k.MS_NOSUID | k.MS_NODEV, "size=1m")
        k.umount(probe)
        return True
    except OSError:
        return False
    finally:
        try:
            os.rmdir(probe)
        except OSError:
            pass


def _choose_run_uid(iso: Isolation, sys_path: list[str]) -> None:
    """Run answers as an unprivileged uid, if the interpreter's files stay importable for it.

    Where a sys.path entry sits under a directory other users cannot traverse (e.g. a pyenv
    build in /root), the worker's mount namespace covers that directory with an empty tmpfs
    and binds the entries back, read-only, at the same paths (the rest stays hidden).
    """
    blocked = [e for e in dict.fromkeys(sys_path) if e and os.path.isdir(e) and not world_accessible(e)]
    if blocked:
        if not iso.mount_ns:
            iso.warnings.append(
                f"{blocked[0]} is not readable by other users and no mount namespace is available; "
                "answers run with the worker's uid")
            return
        try:
            _expose(iso.base, blocked)
        except OSError as exc:
            iso.warnings.append(f"cannot expose {blocked[0]} ({exc}); answers run with the worker's uid")
            return
    iso.run_uid = RUN_UID_BASE + os.getpid()


def _expose(base: str, entries: list[str]) -> None:
    covers: list[str] = []
    for entry in entries:
        top = topmost_blocked(entry)
        if top and not any(top == c or top.startswith(c + "/") for c in covers):
            covers.append(top)
    staged = []
    for i, entry in enumerate(entries):
        stage = os.path.join(base, f"stage{i}")
        os.mkdir(stage, 0o700)
        k.mount(entry, stage, None, k.MS_BIND | k.MS_REC)
        staged.append((stage, entry))
    for top in covers:
        k.mount("tmpfs", top, "tmpfs", k.MS_NOSUID | k.MS_NODEV)
        os.chmod(top, 0o755)
    for stage, entry in staged:
        os.makedirs(entry, mode=0o755, exist_ok=True)
        k.mount(stage, entry, None, k.MS_BIND | k.MS_REC)
        k.mount(None, entry, None, k.MS_BIND | k.MS_REMOUNT | k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV)
        k.libc.umount2(stage.encode(), 2)
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
        if not world_accessible(entry):
            raise OSError(errno.EACCES, f"{entry} still not accessible")


def _probe_pidns() -> tuple[bool, bool]:
    """(PID namespaces work, a raw clone can create one in one step)."""
    if k.SYS_CLONE is not None:
        try:
            pid = k.clone_newpid()
        except OSError:
            pid = -1
        if pid == 0:
            os._exit(0 if os.getpid() == 1 else 1)
        if pid > 0:
            _, st = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(st) == 0:
                return True, True
    pid = os.fork()
    if pid == 0:
        try:
            k.unshare(k.CLONE_NEWPID)
            inner = os.fork()
            if inner == 0:
                os._exit(0 if os.getpid() == 1 else 1)
            _, st = os.waitpid(inner, 0)
            os._exit(os.waitstatus_to_exitcode(st))
        except BaseException:
            os._exit(1)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st) == 0, False


def stdlib_only_sys_path() -> list[str]:
    """The worker's import path without its own package directory (added by the launcher)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [p for p in sys.path if os.path.abspath(p or ".") != here]
