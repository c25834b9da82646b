"""The answers' private /tmp as root: one size-limited tmpfs over the worker's own /tmp, /var/tmp, /dev/shm, /run/lock.

The worker has a mount namespace of its own (see :mod:`.isolation`); the tmpfs is mounted there
and its ``tmp`` and ``shm`` directories are bound over every shared writable place, so an answer
(a fork of the worker) inherits them and needs no mount namespace of its own. A mount namespace
per answer cost ~0.8 ms of CPU and ~4 ms of wall clock (the kernel waits for an RCU grace period
when it goes); these binds cost nothing per answer.

After each answer, once every process of it is dead (as root, the sweep by run uid guarantees
it), :meth:`Scratch.renew` compares what an answer could observe of the tmpfs - its free blocks
and inodes, and the stat and extended attributes of its directories - with the state right after
it was built. When nothing differs, the next answer sees exactly what a fresh tmpfs would show
and the tmpfs is kept; any difference (a file left, a directory chmod'ed, a timestamp moved, an
attribute set) and it is replaced by a fresh one (~0.5 ms). Without root (no run uid) the worker
keeps the per-answer tmpfs and mount namespace (``spawn.enter_private``): there an escaped process
may outlive its answer, and must not see the next one's /tmp; :func:`mount_tmpfs` and
:func:`cover` build the same layout there.
"""

from __future__ import annotations

import os

from . import kernel as k

MB = 1024 * 1024
ANSWER_DIR = "/tmp/answer"  # the answer's directory, as it sees it, with a private tmp


def mount_tmpfs(root: str, size: int, uid: int | None, flags: int = 0) -> None:
    """A size-limited tmpfs at ``root`` holding ``tmp/`` and ``shm/`` (mode 1777) and
    ``tmp/answer/`` (0700, the answer's directory), owned by the run uid where there is one."""
    k.mount("tmpfs", root, "tmpfs", k.MS_NOSUID | k.MS_NODEV | flags, f"size={size},nr_inodes=16384,mode=0711")
    for sub in ("tmp", "shm", "tmp/answer"):
        path = f"{root}/{sub}"
        mode = 0o700 if sub == "tmp/answer" else 0o1777
        os.mkdir(path, mode)
        if uid is not None:
            os.chown(path, uid, uid)
        os.chmod(path, mode)


def cover(root: str, covered: tuple[str, ...]) -> None:
    """Bind ``root/tmp`` (``root/shm`` for /dev/shm) over every covered place; /tmp last, since
    ``root`` itself lies under the host's /tmp."""
    for place in (*[p for p in covered if p != "/tmp"], "/tmp"):
        k.mount(f"{root}/shm" if place == "/dev/shm" else f"{root}/tmp", place, None, k.MS_BIND)


class Scratch:
    """The worker's handle on the answers' tmpfs: build, check after each answer, replace, tear down."""

    def __init__(self, base: str, covered: tuple[str, ...], uid: int, disk_mb: int) -> None:
        os.mkdir(os.path.join(base, "slot"), 0o700)
        # The slot lies under the host's /tmp, which the binds cover: reach it through a descriptor.
        self.base_fd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.slot = f"/proc/self/fd/{self.base_fd}/slot"
        self.covered = covered
        self.uid = uid
        self.size = disk_mb * MB
        self.fresh: tuple | None = None  # what an answer could observe right after a build
        self.mounted = False
        self.build()

    def build(self) -> None:
        mount_tmpfs(self.slot, self.size, self.uid, k.MS_NOATIME)
        self.mounted = True
        cover(self.slot, self.covered)
        self.fresh = self.observe()

    def observe(self) -> tuple:
        vfs = os.statvfs(ANSWER_DIR)
        seen: list = [vfs.f_bfree, vfs.f_ffree]
        for path in (self.slot, "/tmp", "/dev/shm" if "/dev/shm" in self.covered else f"{self.slot}/shm", ANSWER_DIR):
            st = os.stat(path)
            seen.append((st.st_ino, st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_size,
                         st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns, tuple(os.listxattr(path))))
        return tuple(seen)

    def renew(self) -> None:
        """Make the tmpfs fresh for the next answer (every process of the last one is dead)."""
        if self.observe() == self.fresh:
            return
        self.teardown()
        self.build()

    def teardown(self) -> None:
        """Uncover the shared places and detach the tmpfs (gone once nothing holds it)."""
        if not self.mounted:
            return
        for place in ("/tmp", *reversed([p for p in self.covered if p != "/tmp"])):
            k.umount(place)
        k.umount(self.slot)
        self.mounted = False
