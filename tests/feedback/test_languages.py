# ruff: noqa: E501  (tables of programs in five languages)
"""Answers in C, C++, Java, JavaScript and Go: canonical answers pass, broken ones fail with the
right reason, compile errors and compile-time bombs are verdicts, a missing toolchain is a clear
verdict, and the sandbox's containment list holds for every language."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from iterkd.feedback.harness import assemble
from iterkd.feedback.sandbox import Limits, SandboxPool
from iterkd.feedback.sandbox_worker.isolation import RUN_UID_BASE
from iterkd.feedback.sandbox_worker.languages import find_toolchains

from .test_sandbox import SECRET, SHARED_ROOT, leftovers

TOOLCHAINS = find_toolchains()
LANGS = ["c", "cpp", "java", "javascript", "go"]

# Per language: a canonical answer, its tests, and snippets (statements in the answer's function).
ANSWER = {
    "c": "#include <stdio.h>\n#include <stdlib.h>\n#include <unistd.h>\n#include <string.h>\n"
         "#include <sys/socket.h>\n#include <netinet/in.h>\n#include <arpa/inet.h>\n"
         "int add(int a, int b) {\n%s\n    return a + b;\n}\n",
    "java": "import java.util.*;\nimport java.io.*;\nimport java.net.*;\npublic class Solution {\n"
            "    public int add(int a, int b) throws Exception {\n%s\n        return a + b;\n    }\n}\n",
    "javascript": "const fs = require('fs');\nconst cp = require('child_process');\nconst net = require('net');\n"
                  "function add(a, b) {\n%s\n    return a + b;\n}\n",
    "go": "package main\n\nimport (\n\t\"fmt\"\n\t\"net\"\n\t\"os\"\n\t\"os/exec\"\n\t\"time\"\n)\n\n"
          "var _ = fmt.Sprint\nvar _ = net.Dial\nvar _ = os.Exit\nvar _ = exec.Command\nvar _ = time.Sleep\n\n"
          "func Add(a, b int) int {\n%s\n\treturn a + b\n}\n",
}
ANSWER["cpp"] = "#include <vector>\n#include <string>\n" + ANSWER["c"]
TESTS = {
    "c": "int main() {\n    assert(add(2, 3) == 5);\n    assert(add(-1, 1) == 0);\n}\n",
    "java": "public class Main {\n    public static void main(String[] args) throws Exception {\n"
            "        Solution s = new Solution();\n        if (s.add(2, 3) != 5) throw new AssertionError(\"add(2, 3) != 5\");\n"
            "    }\n}\n",
    "javascript": "const assert = require('assert');\nassert.strictEqual(add(2, 3), 5);\n",
    "go": "func main() {\n\tif Add(2, 3) != 5 {\n\t\tpanic(\"Add(2, 3) != 5\")\n\t}\n}\n",
}
TESTS["cpp"] = TESTS["c"]
# (language) -> statement that ... ; one dict per hostile behaviour
LOOP = {"c": "for (;;) {}", "java": "while (a == a) {}", "javascript": "for (;;) {}", "go": "for {\n\t}"}
SLEEP_THEN_RETURN = {"c": "sleep(60);", "java": "Thread.sleep(60000);",
                     "javascript": "Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000);",
                     "go": "time.Sleep(60 * time.Second)"}
MEMORY = {"c": "for (;;) { char *p = malloc(1 << 26); if (!p) { fprintf(stderr, \"out of memory\"); exit(3); } "
               "memset(p, 1, 1 << 26); }",
          "java": "List<long[]> l = new ArrayList<>(); while (a == a) l.add(new long[1 << 23]);",
          "javascript": "const l = []; for (;;) l.push(new Array(1 << 24).fill(1.5));",
          "go": "l := [][]byte{}\n\tfor {\n\t\tb := make([]byte, 1<<26)\n\t\tfor i := range b {\n\t\t\tb[i] = 1\n\t\t}\n"
                "\t\tl = append(l, b)\n\t}"}
FORK = {"c": "for (int i = 0; i < 100000; i++) fork(); sleep(30);",
        "java": "for (int i = 0; i < 2000; i++) { try { new ProcessBuilder(\"sleep\", \"30\").start(); } "
                "catch (Exception e) {} } Thread.sleep(30000);",
        "javascript": "for (let i = 0; i < 2000; i++) { try { cp.spawn('sleep', ['30']); } catch (e) {} }"
                      " Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 30000);",
        "go": "for i := 0; i < 2000; i++ {\n\t\texec.Command(\"sleep\", \"30\").Start()\n\t}\n\ttime.Sleep(30 * time.Second)"}
EXIT0 = {"c": "printf(\"passed\\n\"); fflush(stdout); exit(0);", "java": "System.out.println(\"passed\"); System.exit(0);",
         "javascript": "console.log('passed'); process.exit(0);", "go": "fmt.Println(\"passed\")\n\tos.Exit(0)"}
WRITE = {"c": "FILE *f = fopen(\"%s\", \"w\"); if (!f) { perror(\"open\"); exit(4); } fputs(\"x\", f); fclose(f);",
         "java": "new FileOutputStream(\"%s\").write(1);",
         "javascript": "fs.writeFileSync('%s', 'x');",
         "go": "if err := os.WriteFile(\"%s\", []byte(\"x\"), 0o644); err != nil {\n\t\tpanic(err)\n\t}"}
READ_ENV = {"c": "char buf[65536] = {0}; FILE *f = fopen(\"/proc/%d/environ\", \"r\"); if (f) { fread(buf, 1, 65535, f); "
                 "for (int i = 0; i < 65535; i++) if (!buf[i]) buf[i] = ' '; printf(\"%%s\", buf); } "
                 "extern char **environ; for (char **e = environ; *e; e++) printf(\"%%s\\n\", *e);",
            "java": "try { System.out.print(new String(java.nio.file.Files.readAllBytes(java.nio.file.Paths.get(\"/proc/%d/environ\")))); }"
                    " catch (Exception e) { System.out.print(e); } System.out.print(System.getenv());",
            "javascript": "try { console.log(fs.readFileSync('/proc/%d/environ', 'utf8')); } catch (e) { console.log(String(e)); }"
                          " console.log(JSON.stringify(process.env));",
            "go": "buf, err := os.ReadFile(\"/proc/%d/environ\")\n\tfmt.Println(string(buf), err, os.Environ())"}
DETACH = {"c": "if (fork() == 0) { setsid(); if (fork() == 0) { sleep(1); FILE *f = fopen(\"%s\", \"w\"); fclose(f); "
               "sleep(30); } _exit(0); }",
          "java": "new ProcessBuilder(\"setsid\", \"sh\", \"-c\", \"sleep 1; touch %s; sleep 30\").start();",
          "javascript": "cp.spawn('sh', ['-c', 'sleep 1; touch %s; sleep 30'], {detached: true, stdio: 'ignore'}).unref();",
          "go": "exec.Command(\"setsid\", \"sh\", \"-c\", \"sleep 1; touch %s; sleep 30\").Start()"}
CONNECT = {"c": "int s = socket(AF_INET, SOCK_STREAM, 0); struct sockaddr_in a = {0}; a.sin_family = AF_INET; "
                "a.sin_port = htons(%d); a.sin_addr.s_addr = htonl(0x7f000001); "
                "if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) { puts(\"connected\"); } else { exit(5); }",
           "java": "new Socket(\"127.0.0.1\", %d).close(); System.out.println(\"connected\");",
           "javascript": "cp.execFileSync('sh', ['-c', 'exec 3<>/dev/tcp/127.0.0.1/%d'], {shell: false}); "
                         "console.log('connected');",
           "go": "c, err := net.Dial(\"tcp\", \"127.0.0.1:%d\")\n\tif err != nil {\n\t\tpanic(err)\n\t}\n\tc.Close()"}
CONNECT["cpp"] = CONNECT["c"]
for table in (LOOP, SLEEP_THEN_RETURN, MEMORY, FORK, EXIT0, WRITE, READ_ENV, DETACH):
    table["cpp"] = table["c"]


def program(lang: str, body: str = "", tests: str | None = None):
    indent = "\t" if lang == "go" else "    "
    return assemble(lang, ANSWER[lang] % (indent + body if body else ""), TESTS[lang] if tests is None else tests)


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    os.environ["SECRET_TOKEN"] = SECRET
    try:
        with SandboxPool(workers=2, limits=Limits(timeout_s=8.0)) as p:
            yield p
    finally:
        os.environ.pop("SECRET_TOKEN", None)


def need(lang: str) -> None:
    if lang not in TOOLCHAINS:
        pytest.skip(f"no toolchain for {lang} on this machine")


def fails(pool: SandboxPool, prog, timeout: float | None = None):
    r = pool.run(prog, timeout=timeout)
    assert not r.passed, r
    assert r.result == "timed out" or r.result.startswith("failed: "), r
    assert leftovers(pool) == []
    return r


@pytest.mark.parametrize("lang", LANGS)
def test_canonical_passes_and_broken_fails_with_reason(pool: SandboxPool, lang: str) -> None:
    need(lang)
    r = pool.run(program(lang))
    assert (r.passed, r.result) == (True, "passed"), r
    broken = program(lang).files
    broken = {n: t.replace("a + b", "a - b") for n, t in broken.items()}
    from iterkd.feedback.sandbox import Program

    r = fails(pool, Program(lang, broken))
    assert ("add(2, 3)" in r.result or "Add(2, 3)" in r.result or "strictly equal" in r.result), r


@pytest.mark.parametrize("lang", LANGS)
def test_exit_zero_and_printing_success_before_the_tests_fails(pool: SandboxPool, lang: str) -> None:
    need(lang)
    r = fails(pool, program(lang, EXIT0[lang]))
    assert r.result == "failed: exited with status 0 before the tests finished" and "passed" in r.stdout, r


@pytest.mark.parametrize("lang", LANGS)
def test_infinite_loop_and_sleep_time_out(pool: SandboxPool, lang: str) -> None:
    need(lang)
    assert fails(pool, program(lang, LOOP[lang]), timeout=1.0).result == "timed out"
    assert fails(pool, program(lang, SLEEP_THEN_RETURN[lang]), timeout=1.0).result == "timed out"


@pytest.mark.parametrize("lang", LANGS)
def test_memory_bomb(pool: SandboxPool, lang: str) -> None:
    need(lang)
    r = fails(pool, program(lang, MEMORY[lang]), timeout=20.0)
    assert r.result != "timed out", r  # the memory limit, not the clock, stops it


@pytest.mark.parametrize("lang", LANGS)
def test_fork_bomb_and_detached_child(pool: SandboxPool, lang: str) -> None:
    need(lang)
    fails(pool, program(lang, FORK[lang]), timeout=2.0)
    path = Path(tempfile.mkdtemp(prefix=".iterkd-test-", dir=SHARED_ROOT))
    path.chmod(0o777)
    marker = path / "survived"
    try:
        r = pool.run(program(lang, DETACH[lang] % marker))
        assert r.passed, r  # the answer itself is fine; its detached child must still die with it
        assert leftovers(pool) == []
        import time

        time.sleep(1.5)
        assert not marker.exists()
    finally:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("lang", LANGS)
def test_cannot_write_outside_its_directory(pool: SandboxPool, lang: str) -> None:
    need(lang)
    if pool.info.get("run_uid") is None:
        pytest.skip("answers share the caller's uid here (not root): writes are not confined")
    tree = Path(tempfile.mkdtemp(prefix=".iterkd-test-", dir=SHARED_ROOT))
    try:
        tree.chmod(0o755)
        precious = tree / "important.txt"
        precious.write_text("keep\n")
        fails(pool, program(lang, WRITE[lang] % precious))
        assert precious.read_text() == "keep\n"
        assert pool.run(program(lang, WRITE[lang] % "/tmp/own-file")).passed  # its private /tmp is writable
    finally:
        import shutil

        shutil.rmtree(tree, ignore_errors=True)


@pytest.mark.parametrize("lang", LANGS)
def test_environment_is_scrubbed(pool: SandboxPool, lang: str) -> None:
    need(lang)
    pids = [os.getpid(), *pool.worker_pids()]
    for pid in pids:
        r = pool.run(program(lang, READ_ENV[lang] % pid))
        assert SECRET not in r.stdout + r.stderr, r
    assert "PATH" in r.stdout  # it did run and print its own environment


@pytest.mark.parametrize("lang", LANGS)
def test_no_network(pool: SandboxPool, lang: str) -> None:
    need(lang)
    if not pool.info.get("network_isolated"):
        pytest.skip("network namespaces are not available here")
    server = socket.create_server(("127.0.0.1", 0))
    try:
        r = fails(pool, program(lang, CONNECT[lang] % server.getsockname()[1]))
        assert "connected" not in r.stdout
    finally:
        server.close()


COMPILE_ERROR = {"c": "int add(int a, int b) { return a + ; }", "cpp": "int add(int a, int b) { return a + ; }",
                 "java": "public class Solution { public int add(int a, int b) { return a + ; } }",
                 "go": "func Add(a, b int) int { return a + }"}


@pytest.mark.parametrize("lang", ["c", "cpp", "java", "go"])
def test_compile_error_is_a_verdict(pool: SandboxPool, lang: str) -> None:
    need(lang)
    r = fails(pool, assemble(lang, COMPILE_ERROR[lang], TESTS[lang]))
    assert r.result.startswith("failed: compile error: ") and "error" in r.result[len("failed: compile error: "):], r


def test_javascript_syntax_error_is_a_verdict(pool: SandboxPool) -> None:
    need("javascript")
    assert fails(pool, assemble("javascript", "function add(a, b) { return a + ; }", TESTS["javascript"])
                 ).result.startswith("failed: SyntaxError: ")


BOMBS = {
    "c": ['#include "/dev/zero"\n', "int big[1 << 29] = {1};\nint add(int a, int b) { return a + b; }\n"],
    "cpp": ["template <int N> struct F { static const int v = F<N - 1>::v + F<N - 2>::v; };\n"
            "template <> struct F<0> { static const int v = 0; };\ntemplate <> struct F<1> { static const int v = 1; };\n"
            "int add(int a, int b) { return a + b + 0 * F<100000>::v; }\n", '#include "/dev/zero"\n'],
}


@pytest.mark.parametrize("lang,i", [("c", 0), ("c", 1), ("cpp", 0), ("cpp", 1)])
def test_compile_time_bomb_is_contained(lang: str, i: int) -> None:
    need(lang)
    limits = Limits(timeout_s=2.0, compile_timeout_s=4.0, compile_memory_mb=512)
    with SandboxPool(workers=1, limits=limits) as small:
        r = small.run(assemble(lang, BOMBS[lang][i], TESTS[lang]))
        assert not r.passed and r.result.startswith(("failed: compile error", "failed: compile step")), r
        assert r.duration_s < 30, r
        uids = {RUN_UID_BASE + pid for pid in small.worker_pids()}
        assert not [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real in uids]
        assert small.run(program(lang)).passed  # the worker is fine afterwards


def test_missing_toolchain_is_a_clear_verdict() -> None:
    with SandboxPool(workers=1, limits=Limits(disabled_languages=("go", "java"))) as p:
        assert "go" not in p.info["languages"] and "python" in p.info["languages"]
        r = p.run(assemble("go", "func Add(a, b int) int { return a + b }", TESTS["go"]))
        assert (r.passed, r.result) == (False, "failed: no toolchain for go")
        if "c" in TOOLCHAINS:
            assert p.run(program("c")).passed
