"""The static view: pylint in-process, batched, and optionally ruff.

Every answer is written to its own file (``a_0000.py``, ``a_0001.py``...) in its batch's folder
under the analyzer's working directory (emptied call after call) and one ``pylint.lint.Run`` checks
each batch (JSON2 reporter into a StringIO, ``exit=False``, an empty rcfile so no project
configuration leaks in, no persistent stats). The messages are mapped back to answers by module
name and each answer gets pylint's own score from its per-module counts::

    0 if fatal else max(0, 10 - (5 * error + warning + refactor + convention) / statements * 10)

Answers that do not parse are not given to pylint: they score 0 with a ``syntax-error`` message.
An answer with no statements also scores 0 (pylint gives no score there; nothing to credit).

Where pylint runs: one warm process per analyzer (``python -m iterkd.feedback.static``, started on
first use, a fresh interpreter, never a fork of the caller, which may be a threaded gRPC server)
imports pylint, builds astroid's builtins and the usual stdlib modules once (math, re, typing...),
then forks one child per batch, ``jobs`` at a time. Every batch starts from that same pristine
state: it neither rebuilds the stdlib (what clearing astroid's cache per batch used to cost: ~80%
of the time) nor sees another batch's trees or what its answers did to shared ones (astroid
records ``math.x = 1`` on the math module). Batches are sized evenly so all jobs stay busy. Checks
that look across files (``duplicate-code``, ``cyclic-import``) are always off, so an answer's result
does not depend on the other answers in its batch. A child that crashes or dies costs only its
batch, which is retried one answer at a time; a dead warm process is restarted once.

ruff (optional): one ``ruff check --output-format json`` subprocess per batch over the same
files, when a ruff binary is found; without one the ruff view is skipped and says so.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iterkd.shared.formats import Problem, StaticResult

log = logging.getLogger("iterkd.feedback.static")

# Off by default: noise for single-function answers, or results that depend on what happens to be
# installed in the feedback image (import-error) rather than on the answer.
DEFAULT_DISABLE = (
    "missing-module-docstring",
    "import-error",
    "too-few-public-methods",
    "fixme",
)
# Always off: they compare files, so a batched result would depend on the other answers.
CROSS_FILE_CHECKS = ("duplicate-code", "cyclic-import")



@dataclass
class StaticReport:
    """The static view of one answer."""

    pylint_score: float  # 0..10
    messages: list[dict[str, Any]] = field(default_factory=list)
    statements: int = 0
    ruff_messages: list[dict[str, Any]] | None = None  # None: ruff not run
    notes: list[str] = field(default_factory=list)

    def to_record(self, sample_id: str) -> StaticResult:
        return StaticResult(sample_id=sample_id, pylint_score=self.pylint_score, messages=self.messages,
                            ruff_messages=self.ruff_messages)


def pylint_score(fatal: int, error: int, warning: int, refactor: int, convention: int, statements: int) -> float:
    """pylint's default evaluation, clamped to [0, 10]; no statements scores 0."""
    if fatal or statements <= 0:
        return 0.0
    score = 10.0 - ((5 * error + warning + refactor + convention) / statements) * 10
    return max(0.0, min(10.0, score))


def static_code(problem: Problem, completion: str) -> str:
    """What the static view reads for an answer: the whole function for HumanEval-style problems
    (prompt + completion), the completion itself for MBPP-style ones. Tests are not included."""
    if problem.harness == "humaneval":
        return problem.prompt + completion
    return completion


def find_ruff() -> str | None:
    """The ruff binary: the one the ``ruff`` package ships, else ``ruff`` on PATH or beside Python."""
    try:
        from ruff.__main__ import find_ruff_bin

        return os.fsdecode(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        pass
    return shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))


def _stop(warm: list[Any]) -> None:
    if warm:
        proc, send, recv = warm
        try:
            send.send(None)
        except OSError:
            pass
        send.close()
        recv.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        warm.clear()


def _close(folder: str, warm: list[Any]) -> None:
    _stop(warm)
    shutil.rmtree(folder, True)


def _syntax_message(exc: BaseException) -> dict[str, Any]:
    line = getattr(exc, "lineno", None) or 0
    text = getattr(exc, "msg", None) or str(exc)
    return {"tool": "pylint", "symbol": "syntax-error", "message_id": "E0001", "type": "error",
            "line": int(line), "column": int(getattr(exc, "offset", None) or 0),
            "message": f"Parsing failed: '{text}'"}


# Imported by the warm process before it forks, so that the answers' usual imports are already
# built (astroid parses a stdlib module once, in the warm process, not once per batch).
_WARM_IMPORTS = ("math", "re", "string", "collections", "itertools", "functools", "heapq", "typing",
                 "bisect", "operator", "statistics", "fractions", "decimal", "random", "hashlib", "copy", "sys",
                 "os", "json", "datetime", "array")


def _run_pylint_child(args: list[str], result: str, linter: Any = None) -> None:
    """In a forked child of the warm process: one pylint run, its raw result written to ``result``.

    ``linter``: the warm process's configured, never-used PyLinter (built with the same options);
    then ``args`` are only the files, checked the way ``Run`` does (``check``, ``generate_reports``)
    without building and configuring a linter again (~20 ms per run)."""
    from pylint.lint import Run
    from pylint.reporters import JSON2Reporter

    out = io.StringIO()
    try:
        if linter is None:
            linter = Run(args, reporter=JSON2Reporter(out), exit=False).linter
        else:
            linter.set_reporter(JSON2Reporter(out))
            linter.check(args)
            linter.generate_reports()
        payload: dict[str, Any] = {"json": out.getvalue(),
                                   "by_module": {n: dict(s) for n, s in linter.stats.by_module.items()}}
    except SystemExit as exc:  # bad options make pylint exit
        payload = {"error": f"pylint exited with status {exc.code}"}
    except Exception as exc:  # reported to the parent, which isolates the answer
        payload = {"error": f"{type(exc).__name__}: {exc}"}
    tmp = result + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh)
    os.replace(tmp, result)


def _fresh_linter(files: list[str]) -> Any:
    """A PyLinter configured exactly as ``Run(files + flags)`` configures it, that has checked nothing."""
    from unittest import mock

    from pylint.lint import PyLinter, Run
    from pylint.reporters import JSON2Reporter

    with mock.patch.object(PyLinter, "check", lambda self, files: None), \
            mock.patch.object(PyLinter, "generate_reports", lambda self, verbose=False: None):
        return Run(files, reporter=JSON2Reporter(io.StringIO()), exit=False).linter


def _warm_process(recv: Any, send: Any, disable: list[str], jobs: int) -> None:
    """The warm pylint process: imports pylint, builds the builtins and the usual stdlib modules once,
    then forks one child per batch (``jobs`` at a time) from that pristine state. Each batch starts
    from the same state, so no batch sees another's trees or what its answers did to shared ones."""
    import gc

    from astroid.context import _invalidate_cache
    from astroid.inference_tip import clear_inference_tip_cache
    from pylint.checkers.clear_lru_cache import clear_lru_caches

    with tempfile.TemporaryDirectory(prefix="iterkd-warm-") as tmp:
        warm = Path(tmp) / "iterkd_warm_up.py"
        warm.write_text("".join(f"import {m}\n" for m in _WARM_IMPORTS), encoding="utf-8")
        rc = Path(tmp) / "empty.pylintrc"
        rc.write_text("", encoding="utf-8")
        result = str(Path(tmp) / "warm.json")
        _run_pylint_child([str(warm), f"--rcfile={rc}", *_pylint_flags(disable)], result)
        linter = _fresh_linter([str(warm), f"--rcfile={rc}", *_pylint_flags(disable)])
    from astroid import MANAGER

    MANAGER.astroid_cache.pop("iterkd_warm_up", None)
    clear_lru_caches()
    clear_inference_tip_cache()
    _invalidate_cache()
    gc.collect()
    gc.freeze()  # children share these pages instead of copying them on the first collection
    send.send("ready")
    while True:
        try:
            request = recv.recv()
        except EOFError:
            return
        if request is None:
            return
        send.send(_fork_batches(request, jobs, linter))


def _fork_batches(batches: list[tuple[list[str], str]], jobs: int, linter: Any) -> list[dict[str, Any]]:
    """Each batch (its files, its result path) checked in a child of this process, ``jobs`` at a time."""
    results: list[dict[str, Any]] = [{} for _ in batches]
    pending = list(range(len(batches)))
    running: dict[int, int] = {}
    while pending or running:
        while pending and len(running) < jobs:
            k = pending.pop(0)
            args, result = batches[k]
            pid = os.fork()
            if pid == 0:  # the child: never returns into the parent's loop
                status = 1
                try:
                    _run_pylint_child(args, result, linter)
                    status = 0
                finally:
                    os._exit(status)
            running[pid] = k
        pid, status = os.wait()
        k = running.pop(pid)
        try:
            results[k] = json.loads(Path(batches[k][1]).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            results[k] = {"error": f"pylint process ended with status {status} and no result"}
    return results


def _pylint_flags(disable: list[str]) -> list[str]:
    return ["--persistent=n", "--jobs=1", "--reports=n", "--score=n",
            f"--disable={','.join(disable)}" if disable else "--disable="]


class StaticAnalyzer:
    """Runs pylint (and optionally ruff) over many answers, ``batch_size`` per pylint run, ``jobs``
    pylint runs at a time, each in a child forked from one warm pylint process."""

    def __init__(self, batch_size: int = 64, disable: Sequence[str] = DEFAULT_DISABLE, ruff: bool = False,
                 ruff_bin: str | None = None, ruff_timeout_s: float = 120.0, jobs: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if jobs is not None and jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {jobs}")
        self.batch_size = batch_size
        self.jobs = jobs if jobs is not None else max(1, min(4, os.cpu_count() or 1))
        self.disable = [*dict.fromkeys([*disable, *CROSS_FILE_CHECKS])]
        self.ruff = ruff
        self.ruff_bin = ruff_bin if ruff_bin is not None else find_ruff()
        self.ruff_timeout_s = ruff_timeout_s
        self._lock = threading.Lock()
        self._dir = Path(tempfile.mkdtemp(prefix="iterkd-static-"))
        self._warm: list[Any] = []  # [process, connection] once started
        self._cleanup = weakref.finalize(self, _close, str(self._dir), self._warm)

    def close(self) -> None:
        """Stop the warm pylint process and remove the working directory."""
        self._cleanup()

    @property
    def ruff_available(self) -> bool:
        return bool(self.ruff_bin) and Path(self.ruff_bin).is_file()

    def analyze(self, codes: Sequence[str], ruff: bool | None = None) -> list[StaticReport]:
        """One report per code, in order. ``ruff`` overrides the analyzer's default."""
        use_ruff = self.ruff if ruff is None else ruff
        reports: list[StaticReport | None] = [None] * len(codes)
        with self._lock:
            if not self._cleanup.alive:
                raise RuntimeError("StaticAnalyzer is closed")
            shutil.rmtree(self._dir / "batches", ignore_errors=True)
            batches: list[tuple[Path, dict[str, int]]] = []
            statements: dict[int, int] = {}
            for b, start in enumerate(range(0, len(codes), size := self._size(len(codes)))):
                folder = self._dir / "batches" / f"b{b:04d}"
                folder.mkdir(parents=True)
                files: dict[str, int] = {}  # module name -> index
                for i in range(start, min(len(codes), start + size)):
                    try:
                        tree = ast.parse(codes[i])
                    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes
                        reports[i] = StaticReport(0.0, [_syntax_message(exc)], 0)
                        continue
                    name = f"a_{i - start:04d}"
                    (folder / f"{name}.py").write_text(codes[i], encoding="utf-8")
                    files[name] = i
                    statements[i] = sum(isinstance(n, ast.stmt) for n in ast.walk(tree))
                batches.append((folder, files))
            for (_, files), found in zip(batches, self._pylint(batches, statements), strict=True):
                for name, report in found.items():
                    reports[files[name]] = report
            if use_ruff:  # one ruff run over every batch; files named by "batch/module"
                self._add_ruff(self._dir / "batches", {f"{folder.name}/{name}": i for folder, files in batches
                                                       for name, i in files.items()}, reports)
        return [r if r is not None else StaticReport(0.0, [], 0, notes=["no result"]) for r in reports]

    def _size(self, n: int) -> int:
        """Answers per pylint run: at most ``batch_size``, and as even as the runs allow, in a number
        of runs that keeps all ``jobs`` busy to the end (200 answers, 64 and 2 jobs: 4 runs of 50)."""
        runs = -(-n // self.batch_size)
        if n >= self.jobs:
            runs = -(-runs // self.jobs) * self.jobs
        return max(1, -(-n // max(1, runs)))

    # -- pylint in the warm process's children ------------------------------------------------
    def _pylint(self, batches: list[tuple[Path, dict[str, int]]],
                statements: dict[int, int]) -> list[dict[str, StaticReport]]:
        todo = [k for k, (_, files) in enumerate(batches) if files]
        raw = self._request([self._args(batches[k][0], list(batches[k][1])) for k in todo])
        out: list[dict[str, StaticReport]] = [{} for _ in batches]
        for k, result in zip(todo, raw, strict=True):
            folder, files = batches[k]
            if "error" not in result:
                out[k] = self._reports(result, list(files), statements, files)
            elif len(files) > 1:  # pylint crashed on the batch: one by one, to isolate the culprit
                for one in self._pylint([(folder, {name: i}) for name, i in files.items()], statements):
                    out[k].update(one)
            else:
                name = next(iter(files))
                log.warning("pylint crashed on an answer", extra={"error": result["error"]})
                out[k] = {name: StaticReport(0.0, [{
                    "tool": "pylint", "symbol": "astroid-error", "message_id": "F0002", "type": "fatal",
                    "line": 0, "column": 0, "message": f"pylint crashed: {result['error']}"}],
                    statements[files[name]], notes=["pylint crashed"])}
        return out

    @staticmethod
    def _args(folder: Path, names: list[str]) -> tuple[list[str], str]:
        """The files of one pylint run (options: the warm process's linter) and its result path."""
        result = folder / f"result-{names[0]}-{len(names)}.json"
        result.unlink(missing_ok=True)
        return [str(folder / f"{n}.py") for n in names], str(result)

    def _request(self, batches: list[tuple[list[str], str]]) -> list[dict[str, Any]]:
        if not batches:
            return []
        for attempt in (1, 2):
            _, send, recv = self._connection()
            try:
                send.send(batches)
                return list(recv.recv())
            except (EOFError, OSError) as exc:  # the warm process died: start another, once
                log.warning("warm pylint process lost", extra={"error": f"{type(exc).__name__}: {exc}"})
                _stop(self._warm)
                if attempt == 2:
                    raise RuntimeError(f"warm pylint process failed: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def _connection(self) -> Any:
        if not self._warm:
            # A fresh interpreter (never a fork of this, possibly threaded, process), talking over two pipes;
            # -P: the current directory is not put on its sys.path (where astroid resolves imports).
            from multiprocessing.connection import Connection

            from_parent, to_child = os.pipe()  # (read end, write end)
            from_child, to_parent = os.pipe()
            proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "iterkd.feedback.static", str(from_parent), str(to_parent),
                 json.dumps({"disable": self.disable, "jobs": self.jobs})],
                pass_fds=(from_parent, to_parent), stdin=subprocess.DEVNULL)
            os.close(from_parent)
            os.close(to_parent)
            send, recv = Connection(to_child, readable=False), Connection(from_child, writable=False)
            self._warm[:] = [proc, send, recv]
            try:
                ready = recv.recv()
            except EOFError:
                ready = None
            if ready != "ready":
                _stop(self._warm)
                raise RuntimeError("warm pylint process did not start")
        return self._warm

    @staticmethod
    def _reports(result: dict[str, Any], names: list[str], statements: dict[int, int],
                 index: dict[str, int]) -> dict[str, StaticReport]:
        by_module = result["by_module"]
        messages: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for item in json.loads(result["json"] or "{}").get("messages", []):
            module = item.get("module", "")
            if module not in messages:
                module = Path(item.get("path", "")).stem
            if module in messages:
                messages[module].append({
                    "tool": "pylint", "symbol": item["symbol"], "message_id": item["messageId"],
                    "type": item["type"], "line": item["line"] or 0, "column": item["column"] or 0,
                    "message": item["message"],
                })
        reports = {}
        for name in names:
            stats = by_module.get(name)
            notes: list[str] = []
            if stats is None:  # pylint skipped the file entirely; count by hand
                counts = {t: sum(m["type"] == t for m in messages[name])
                          for t in ("fatal", "error", "warning", "refactor", "convention")}
                n_statements = statements[index[name]]
                notes.append("no pylint module stats; counts taken from its messages")
            else:
                counts = {t: int(stats.get(t, 0)) for t in ("fatal", "error", "warning", "refactor", "convention")}
                n_statements = int(stats.get("statement", 0)) or statements[index[name]]
            reports[name] = StaticReport(pylint_score(statements=n_statements, **counts),
                                         sorted(messages[name], key=lambda m: (m["line"], m["column"])),
                                         n_statements, notes=notes)
        return reports

    def _add_ruff(self, folder: Path, files: dict[str, int], reports: list[StaticReport | None]) -> None:
        if not self.ruff_available:
            note = "ruff skipped: no ruff binary found (pip install ruff)"
            for r in reports:
                if r is not None:
                    r.notes.append(note)
            log.warning(note)
            return
        found: dict[int, list[dict[str, Any]]] = {i: [] for i in files.values()}
        if files:
            cmd = [str(self.ruff_bin), "check", "--isolated", "--no-cache", "--exit-zero",
                   "--output-format", "json", *(f"{n}.py" for n in files)]
            try:
                proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=self.ruff_timeout_s,
                                      check=False)
                items = json.loads(proc.stdout or "[]")
            except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
                note = f"ruff failed: {type(exc).__name__}: {exc}"
                log.warning(note)
                for r in reports:
                    if r is not None:
                        r.notes.append(note)
                return
            for item in items:
                path = Path(item.get("filename", ""))
                i = files.get(f"{path.parent.name}/{path.stem}")
                if i is None:
                    continue
                loc = item.get("location") or {}
                found[i].append({
                    "tool": "ruff", "symbol": item.get("name") or item.get("code") or "invalid-syntax",
                    "message_id": item.get("code") or "", "type": "ruff",
                    "line": int(loc.get("row") or 0), "column": int(loc.get("column") or 0),
                    "message": item.get("message", ""),
                })
        for i, report in enumerate(reports):
            if report is None:
                continue
            if i in found:
                report.ruff_messages = found[i]
            else:  # did not parse; ruff was not given it
                report.ruff_messages = [dict(m, tool="ruff") for m in report.messages]


if __name__ == "__main__":  # the warm pylint process: python -m iterkd.feedback.static IN_FD OUT_FD OPTIONS
    from multiprocessing.connection import Connection

    _options = json.loads(sys.argv[3])
    _warm_process(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False),
                  _options["disable"], int(_options["jobs"]))
