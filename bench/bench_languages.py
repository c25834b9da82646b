"""Compile and run per language: the sandbox against the naive one-process-per-answer way.

    python bench/bench_languages.py [--copies 3] [--workers 2]

Answers: the reference solutions of the seed questions in C, C++, Java, JavaScript and Go
(shared/iterkd/shared/data/seed-languages.jsonl), x COPIES. Ours: ``SandboxPool.run_many`` with
the assembled programs (every answer compiled and run under its limits, its own tmpfs, the
verdict over the report fd; Go through ``compile``/``link`` with the precompiled std, Java with
class-data sharing and C1). Peer: per answer, a fresh temporary directory and the plain commands
(``gcc``/``g++ -O1 -o prog``, ``javac`` + ``java``, ``node``, ``go build`` + run) as
subprocesses, no isolation at all, the same worker count in threads. Prints per-language
answers/s and the ratio, then a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from iterkd.feedback.harness import program_for
from iterkd.feedback.sandbox import Limits, Program, SandboxPool
from iterkd.shared.formats import read_problems

SEED = Path(__file__).resolve().parents[1] / "shared" / "iterkd" / "shared" / "data" / "seed-languages.jsonl"
NAIVE = {
    "c": [["gcc", "-std=gnu11", "-O1", "-o", "prog", "main.c", "-lm"], ["./prog", "1", "x"]],
    "cpp": [["g++", "-std=gnu++17", "-O1", "-o", "prog", "main.cpp"], ["./prog", "1", "x"]],
    "java": [["javac", "-encoding", "UTF-8", "-nowarn", "-d", ".", "Iterkd.java"],
             ["java", "-ea", "-cp", ".", "Iterkd", "1", "x"]],
    "javascript": [["node", "main.js", "1", "x"]],
    "go": [["go", "build", "-o", "prog", "main.go", "tests.go", "iterkd.go"], ["./prog", "1", "x"]],
}


def naive_one(program: Program) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in program.files.items():
            Path(tmp, name).write_text(text)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "GOCACHE": f"{tmp}/.gocache",
               "GO111MODULE": "off", "CGO_ENABLED": "0"}
        for argv in NAIVE[program.language]:
            proc = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, timeout=60, check=False)
            if proc.returncode != 0:
                return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    problems = read_problems(SEED)
    rows = {}
    with SandboxPool(workers=args.workers, limits=Limits(timeout_s=10)) as pool:
        for language in NAIVE:
            if not all(shutil.which(argv[0]) for argv in NAIVE[language] if not argv[0].startswith("./")):
                print(f"{language}: no toolchain here, skipped")
                continue
            programs = [program_for(p, p.canonical_solution or "") for p in problems if p.language == language]
            programs = [prog for prog in programs if isinstance(prog, Program)] * args.copies
            start = time.monotonic()
            ours = pool.run_many(programs)
            t_ours = time.monotonic() - start
            start = time.monotonic()
            with ThreadPoolExecutor(args.workers) as ex:
                naive = list(ex.map(naive_one, programs))
            t_naive = time.monotonic() - start
            n = len(programs)
            rows[language] = {"answers": n, "ours_s": round(t_ours, 2), "naive_s": round(t_naive, 2),
                              "ratio": round(t_naive / t_ours, 2), "ours_passed": sum(r.passed for r in ours),
                              "naive_passed": sum(naive)}
            print(f"{language:<11} {n:>3} answers  sandbox {n / t_ours:6.1f}/s  naive {n / t_naive:6.1f}/s  "
                  f"{t_naive / t_ours:5.2f}x  (passed {rows[language]['ours_passed']} / {sum(naive)})", flush=True)
    print(json.dumps({"workers": args.workers, "cores": os.cpu_count(), "languages": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
