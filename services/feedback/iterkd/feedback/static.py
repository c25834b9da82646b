"""The static view: pylint in-process, batched, and optionally ruff.

Per batch, every answer is written to its own file (``a_0000.py``, ``a_0001.py``...) in the
analyzer's working directory (emptied and reused batch after batch) and one ``pylint.lint.Run``
checks them all (JSON2 reporter into a StringIO,
``exit=False``, an empty rcfile so no project configuration leaks in, no persistent stats). The
messages are mapped back to answers by module name and each answer gets pylint's own score from
its per-module counts::

    0 if fatal else max(0, 10 - (5 * error + warning + refactor + convention) / statements * 10)

Answers that do not parse are not given to pylint: they score 0 with a ``syntax-error`` message.
An answer with no statements also scores 0 (pylint gives no score there; nothing to credit).

astroid caches every module it builds by name and path, and the next batch reuses both, so its
cache (and pylint's inference LRU caches, which hold AST nodes) are cleared before each batch;
otherwise a batch would be checked against the previous batch's trees, and memory would grow
batch after batch. pylint and astroid keep global state and are not thread-safe: one
process-wide lock serialises the runs (and an analyzer's lock its working directory). Checks that look across files
(``duplicate-code``, ``cyclic-import``) are always off, so an answer's result does not depend on
the other answers in its batch. pylint cannot be interrupted per answer: a pathological answer
slows its whole batch.

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

_PYLINT_LOCK = threading.Lock()


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


def _syntax_message(exc: BaseException) -> dict[str, Any]:
    line = getattr(exc, "lineno", None) or 0
    text = getattr(exc, "msg", None) or str(exc)
    return {"tool": "pylint", "symbol": "syntax-error", "message_id": "E0001", "type": "error",
            "line": int(line), "column": int(getattr(exc, "offset", None) or 0),
            "message": f"Parsing failed: '{text}'"}


class StaticAnalyzer:
    """Runs pylint (and optionally ruff) over many answers, ``batch_size`` per pylint run."""

    def __init__(self, batch_size: int = 64, disable: Sequence[str] = DEFAULT_DISABLE, ruff: bool = False,
                 ruff_bin: str | None = None, ruff_timeout_s: float = 120.0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.disable = [*dict.fromkeys([*disable, *CROSS_FILE_CHECKS])]
        self.ruff = ruff
        self.ruff_bin = ruff_bin if ruff_bin is not None else find_ruff()
        self.ruff_timeout_s = ruff_timeout_s
        self._lock = threading.Lock()
        self._dir = Path(tempfile.mkdtemp(prefix="iterkd-static-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._dir), True)

    def close(self) -> None:
        """Remove the working directory."""
        self._cleanup()

    @property
    def ruff_available(self) -> bool:
        return bool(self.ruff_bin) and Path(self.ruff_bin).is_file()

    def analyze(self, codes: Sequence[str], ruff: bool | None = None) -> list[StaticReport]:
        """One report per code, in order. ``ruff`` overrides the analyzer's default."""
        use_ruff = self.ruff if ruff is None else ruff
        reports: list[StaticReport] = []
        for start in range(0, len(codes), self.batch_size):
            reports.extend(self._batch(codes[start:start + self.batch_size], use_ruff))
        return reports

    # -- one batch ----------------------------------------------------------------------------
    def _batch(self, codes: Sequence[str], use_ruff: bool) -> list[StaticReport]:
        reports: list[StaticReport | None] = [None] * len(codes)
        with self._lock:
            if not self._cleanup.alive:
                raise RuntimeError("StaticAnalyzer is closed")
            folder = self._dir / "batch"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            files: dict[str, int] = {}  # module name -> index
            statements: dict[int, int] = {}
            for i, code in enumerate(codes):
                try:
                    tree = ast.parse(code)
                except (SyntaxError, ValueError) as exc:  # ValueError: null bytes
                    reports[i] = StaticReport(0.0, [_syntax_message(exc)], 0)
                    continue
                name = f"a_{i:04d}"
                (folder / f"{name}.py").write_text(code, encoding="utf-8")
                files[name] = i
                statements[i] = sum(isinstance(n, ast.stmt) for n in ast.walk(tree))
            if files:
                for name, report in self._pylint(folder, files, statements).items():
                    reports[files[name]] = report
            if use_ruff:
                self._add_ruff(folder, files, reports)
        return [r if r is not None else StaticReport(0.0, [], 0, notes=["no result"]) for r in reports]

    def _pylint(self, folder: Path, files: dict[str, int], statements: dict[int, int]) -> dict[str, StaticReport]:
        try:
            return self._pylint_run(folder, list(files), statements, files)
        except Exception as exc:  # pylint crashed on the batch: retry one by one to isolate the culprit
            if len(files) == 1:
                name = next(iter(files))
                log.warning("pylint crashed on an answer", extra={"error": f"{type(exc).__name__}: {exc}"})
                return {name: StaticReport(0.0, [{
                    "tool": "pylint", "symbol": "astroid-error", "message_id": "F0002", "type": "fatal",
                    "line": 0, "column": 0, "message": f"pylint crashed: {type(exc).__name__}: {exc}"}],
                    statements[files[name]], notes=["pylint crashed"])}
            out: dict[str, StaticReport] = {}
            for name in files:
                out.update(self._pylint(folder, {name: files[name]}, statements))
            return out

    def _pylint_run(self, folder: Path, names: list[str], statements: dict[int, int],
                    index: dict[str, int]) -> dict[str, StaticReport]:
        from astroid import MANAGER
        from pylint.checkers.clear_lru_cache import clear_lru_caches
        from pylint.lint import Run
        from pylint.reporters import JSON2Reporter

        rcfile = folder / "empty.pylintrc"
        rcfile.write_text("", encoding="utf-8")
        args = [
            *(str(folder / f"{n}.py") for n in names),
            f"--rcfile={rcfile}", "--persistent=n", "--jobs=1", "--reports=n", "--score=n",
            f"--disable={','.join(self.disable)}" if self.disable else "--disable=",
        ]
        out = io.StringIO()
        reporter = JSON2Reporter(out)
        with _PYLINT_LOCK:
            clear_lru_caches()
            MANAGER.clear_cache()
            try:
                run = Run(args, reporter=reporter, exit=False)
            except SystemExit as exc:  # bad options make pylint exit; never let that end the server
                raise RuntimeError(f"pylint exited with status {exc.code}") from None
            by_module = {name: dict(stats) for name, stats in run.linter.stats.by_module.items()}
        messages: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for item in json.loads(out.getvalue() or "{}").get("messages", []):
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
                i = files.get(Path(item.get("filename", "")).stem)
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
