"""Kill and reap whatever an answer left behind, by the strongest means the worker has.

* Run uid (root): every survivor was reparented to the worker (a child subreaper); if any child
  is left after the runner is reaped, a helper that becomes the run uid kills the whole uid.
* PID namespace: killing its init makes the kernel kill everything in it.
* Neither: the process group, the worker's /proc descendants and the uid's processes.
"""

from __future__ import annotations

import os
import signal
import time

from . import kernel as k
from .isolation import Isolation


def reap_all(block: bool = False) -> bool:
    """Reap exited children; True when no child is left at all."""
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False


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


def descendants() -> set[int]:
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
    found: set[int] = set()
    frontier = {os.getpid()}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier and p not in found}
        found |= frontier
    return found


def kill_all(iso: Isolation, target: int, reaped: bool) -> None:
    """Leave nothing of the answer whose watched process is ``target`` (already reaped or not)."""
    if target <= 0:
        reap_all()
    elif iso.run_uid is not None:
        sweep_uid(iso.run_uid, reaped)
    elif iso.pidns:
        kill_namespace(target, reaped)
    else:
        kill_by_search(target, iso.run_uid)


def sweep_uid(run_uid: int, reaped: bool) -> None:
    """Leave no process of the run uid behind (answers run one at a time per worker).

    Every process the answer started descends from the runner, so once the runner is reaped,
    any survivor (even after setsid or a double fork) has been reparented to us, the child
    subreaper: no child left means nothing left. Otherwise a helper that becomes the run uid
    kills every process of that uid (``kill(-1)``), until no child of ours remains.
    """
    if reaped and reap_all():
        return  # the usual case: the runner was our only child
    deadline = time.monotonic() + 5.0
    while True:
        kill_uid(run_uid)
        if reap_all() or time.monotonic() > deadline:
            return
        time.sleep(0.001)


def kill_uid(run_uid: int) -> None:
    pid = k.raw_clone()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(run_uid, run_uid, run_uid)
            os.setresuid(run_uid, run_uid, run_uid)  # drops every capability
            if os.getresuid() == (run_uid,) * 3:
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


def kill_namespace(init: int, reaped: bool) -> None:
    if not reaped:
        try:
            os.kill(init, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(init, 0)
        except ChildProcessError:
            pass
    reap_all()


def kill_by_search(target: int, run_uid: int | None) -> None:
    deadline = time.monotonic() + 5.0
    while True:
        victims = descendants() | (uid_processes(run_uid) if run_uid is not None else set())
        try:
            os.killpg(target, signal.SIGKILL)
        except OSError:
            pass
        for p in victims:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        reap_all(block=bool(victims))
        if not victims or time.monotonic() > deadline:
            break
