"""The static view for C, C++, Java, JavaScript and Go: the compiler's (or vet's) warnings.

Each answer is checked alone (not with its tests), in the sandbox, as a check-only compile
(:class:`~iterkd.feedback.sandbox.Program` with ``check=True``) under the compile limits:
``gcc``/``g++ -Wall -Wextra -fsyntax-only``, ``javac -Xlint:all``, ``go vet``, ``node --check``.
The output is parsed into messages (``tool``, ``symbol`` such as ``-Wparentheses`` or
``rawtypes``, ``type`` warning or error, ``line``, ``message``), and the score follows pylint's
shape on a 0..10 scale::

    0 if it does not compile else max(0, 10 - 10 * warnings / code_lines)

``code_lines`` counts lines with something other than braces, blank space or a comment (the
statements' stand-in). An answer whose language has no toolchain here gets no static row (the
view is then left out of that problem's quality, not counted as 0).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from iterkd.feedback.harness import java_without_public
from iterkd.feedback.sandbox import ExecResult, Program, SandboxPool
from iterkd.feedback.static import StaticReport

TOOLS = {"c": "gcc", "cpp": "g++", "java": "javac", "javascript": "node", "go": "go vet"}
FILES = {"c": "main.c", "cpp": "main.cpp", "java": "Iterkd.java", "javascript": "answer.js", "go": "main.go"}
_GO_PACKAGE = re.compile(r"^\s*package\s+\w+\s*$", re.M)
# file:line[:col]: [kind: ]message  (gcc, javac, go vet; "vet: " marks a type error in go vet)
_LOCATED = re.compile(r"^(?P<vet>vet: )?(?:\./|/tmp/answer/)?(?P<file>[\w.]+):(?P<line>\d+)(?::\d+)?:"
                      r"\s*(?:(?P<kind>warning|error|fatal error|note):\s*)?(?P<text>.+)$")
_GCC_FLAG = re.compile(r"\s*\[(-W[\w=+-]+)\]$")
_JAVAC_LINT = re.compile(r"^\[([\w-]+)\]\s*")
_NODE_ERROR = re.compile(r"^(\w*Error): (.+)$")
_NODE_WHERE = re.compile(r"^(?:/tmp/answer/)?answer\.js:(\d+)$")
_COMMENT_OR_BRACES = re.compile(r"^\s*(?:[{}();]*\s*(?://.*|/\*.*|\*.*|#.*)?)?$")


def _line_offset(language: str, code: str) -> int:
    """Lines that :func:`check_program` puts before the answer's first line."""
    return 2 if language == "go" and not _GO_PACKAGE.search(code) else 0


def check_program(language: str, code: str) -> Program:
    """The check-only program for one answer in ``language``."""
    if language == "java":
        code = java_without_public(code)
    if language == "go":
        main = code if _GO_PACKAGE.search(code) else f"package main\n\n{code}"
        return Program("go", {"main.go": main, "tests.go": "package main\n",
                              "iterkd.go": "package main\n\nfunc main() {}\n"}, check=True)
    return Program(language, {FILES[language]: code}, check=True)


def code_lines(code: str) -> int:
    """Lines that hold code: not blank, not only braces or punctuation, not only a comment."""
    return sum(1 for line in code.splitlines() if not _COMMENT_OR_BRACES.match(line))


def compiled_score(compiled: bool, warnings: int, lines: int) -> float:
    """0..10: 0 when it does not compile (or has no code), else 10 less 10 per warning per code line."""
    if not compiled or lines <= 0:
        return 0.0
    return max(0.0, min(10.0, 10.0 - 10.0 * warnings / lines))


def parse_messages(language: str, output: str) -> list[dict[str, Any]]:
    """The compiler's diagnostics about the answer's file, in order (notes left out)."""
    tool = TOOLS[language]
    answer_file = FILES[language]
    messages: list[dict[str, Any]] = []
    lines = output.splitlines()
    for text in lines:
        m = _LOCATED.match(text)
        if not m or m.group("file") != answer_file or m.group("kind") == "note":
            continue
        kind = m.group("kind") or ("error" if m.group("vet") else "warning")
        message = m.group("text").strip()
        symbol = ""
        if flag := _GCC_FLAG.search(message):
            symbol, message = flag.group(1), message[:flag.start()]
        elif lint := _JAVAC_LINT.match(message):
            symbol, message = lint.group(1), message[lint.end():]
        messages.append({"tool": tool, "symbol": symbol or ("vet" if language == "go" else kind),
                         "message_id": symbol, "type": "error" if "error" in kind else "warning",
                         "line": int(m.group("line")), "column": 0, "message": message})
    if language == "javascript":  # node --check: "answer.js:N", the source, a caret, then "XError: ..."
        where = next((int(w.group(1)) for t in lines if (w := _NODE_WHERE.match(t))), 0)
        for text in lines:
            if err := _NODE_ERROR.match(text):
                messages.append({"tool": tool, "symbol": err.group(1), "message_id": err.group(1),
                                 "type": "error", "line": where, "column": 0, "message": err.group(2)})
                break
    return messages


def report_from(language: str, code: str, result: ExecResult) -> StaticReport | None:
    """The static report of one check run; None when the language has no toolchain here."""
    if result.result.startswith("failed: no toolchain"):
        return None
    messages = parse_messages(language, result.stderr + "\n" + result.stdout)
    if offset := _line_offset(language, code):
        for m in messages:
            m["line"] = max(0, m["line"] - offset)
    errors = sum(m["type"] == "error" for m in messages)
    compiled = result.passed or (language == "go" and result.result.startswith("failed: compile")
                                 and errors == 0 and bool(messages))  # vet findings fail vet, not the build
    notes = []
    if not result.passed and not compiled and not messages:
        messages.append({"tool": TOOLS[language], "symbol": "check-failed", "message_id": "", "type": "error",
                         "line": 0, "column": 0, "message": result.result})
        notes.append(f"{TOOLS[language]}: {result.result}")
    lines = code_lines(code)
    warnings = sum(m["type"] == "warning" for m in messages)
    return StaticReport(compiled_score(compiled, warnings, lines), messages, lines, notes=notes)


class CompiledStatic:
    """Runs the check-only compiles of answers in the sandbox pool it is given."""

    def __init__(self, pool: SandboxPool) -> None:
        self.pool = pool

    def analyze(self, items: Sequence[tuple[str, str]], timeout: float = 30.0) -> list[StaticReport | None]:
        """One report per ``(language, code)``, in order; None where the language has no toolchain."""
        if not items:
            return []
        results = self.pool.run_many([check_program(lang, code) for lang, code in items], timeout=timeout)
        return [report_from(lang, code, r) for (lang, code), r in zip(items, results, strict=True)]
