"""The toolchains: how each language's answer is compiled, run and checked for warnings.

Stdlib only (the worker imports it). Every command is an absolute path found at start; a
language whose toolchain is missing is absent from :func:`find_toolchains`' answer, and its
answers get ``failed: no toolchain for <language>``.

Warm paths: Go is compiled with the toolchain's ``compile`` and ``link`` tools directly (the
standard library is precompiled in GOROOT), not ``go build`` (whose cold build cache costs ~4x);
Java runs with class-data sharing and C1 only, no perf-data file; C/C++ with ``-pipe``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

LANGUAGES = ("python", "c", "cpp", "java", "javascript", "go")
# Sizes for the JVM so that it fits the answers' address-space limit (RLIMIT_AS).
JVM_FLAGS = ("-Xmx256m", "-Xss8m", "-XX:ReservedCodeCacheSize=64m", "-XX:CompressedClassSpaceSize=64m",
             "-XX:MaxMetaspaceSize=128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
             "-Xshare:auto")
# V8's heap limit, inside the address-space limit (node needs ~1 GB of it to start at all). At
# 256 MB an allocation-heavy answer (the LRU seed question) took 20-25% more CPU than under plain
# ``node`` (191 vs 155 ms); at 512 MB about the same (167 ms). A memory bomb still dies of it.
NODE_FLAGS = ("--max-old-space-size=512", "--stack-size=4000")


@dataclass(frozen=True)
class Toolchain:
    language: str
    source: str  # the answer's file name
    compile: tuple[tuple[str, ...], ...]  # compile steps (argv each), in order; () = none
    run: tuple[str, ...]  # the run step's argv (the report fd and token are appended)
    check: tuple[str, ...] | None  # warnings-only compile (the static view); None = none
    env: tuple[tuple[str, str], ...] = ()


def _which(name: str) -> str | None:
    found = shutil.which(name, path="/usr/local/bin:/usr/bin:/bin")
    return os.path.realpath(found) if found else None


def _goroot(go: str) -> str | None:
    try:
        out = subprocess.run([go, "env", "GOROOT"], capture_output=True, text=True, timeout=30, check=True,
                             env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent"})
    except (OSError, subprocess.SubprocessError):
        return None
    root = out.stdout.strip()
    return root if root and os.path.isdir(root) else None


def find_toolchains(disabled: tuple[str, ...] = ()) -> dict[str, Toolchain]:
    """The toolchains present on this machine (``disabled`` ones left out, for tests)."""
    found: dict[str, Toolchain] = {}
    gcc, gxx = _which("gcc"), _which("g++")
    if gcc:
        found["c"] = Toolchain("c", "main.c", ((gcc, "-std=gnu11", "-O1", "-pipe", "-o", "prog", "main.c", "-lm"),),
                               ("./prog",), (gcc, "-std=gnu11", "-Wall", "-Wextra", "-fsyntax-only", "main.c"))
    if gxx:
        found["cpp"] = Toolchain("cpp", "main.cpp", ((gxx, "-std=gnu++17", "-O1", "-pipe", "-o", "prog", "main.cpp"),),
                                 ("./prog",), (gxx, "-std=gnu++17", "-Wall", "-Wextra", "-fsyntax-only", "main.cpp"))
    javac, java = _which("javac"), _which("java")
    if javac and java:
        jflags = tuple(f"-J{f}" for f in JVM_FLAGS if f != "-Xshare:auto")
        found["java"] = Toolchain("java", "Iterkd.java",
                                  ((javac, *jflags, "-encoding", "UTF-8", "-nowarn", "-d", ".", "Iterkd.java"),),
                                  (java, *JVM_FLAGS, "-ea", "-cp", ".", "Iterkd"),
                                  (javac, *jflags, "-encoding", "UTF-8", "-Xlint:all", "-d", ".", "Iterkd.java"))
    node = _which("node")
    if node:
        found["javascript"] = Toolchain("javascript", "main.js", (), (node, *NODE_FLAGS, "main.js"),
                                        (node, "--check", "answer.js"))
    go = _which("go")
    root = _goroot(go) if go else None
    if go and root:
        tools = f"{root}/pkg/tool/linux_amd64"
        if os.path.isfile(f"{tools}/compile") and os.path.isfile(f"{tools}/link"):
            found["go"] = Toolchain(
                "go", "main.go",
                ((f"{tools}/compile", "-p", "main", "-complete", "-o", "main.o", "main.go", "tests.go", "iterkd.go"),
                 (f"{tools}/link", "-o", "prog", "main.o")),
                ("./prog",), (go, "vet", "main.go", "tests.go", "iterkd.go"),
                env=(("GOROOT", root), ("GOCACHE", "/tmp/.gocache"), ("GOFLAGS", "-mod=mod"),
                     ("GO111MODULE", "off"), ("CGO_ENABLED", "0")))
    for name in disabled:
        found.pop(name, None)
    return found
