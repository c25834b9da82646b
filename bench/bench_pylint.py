"""Static view throughput: in-process batched pylint (StaticAnalyzer) against one ``python -m pylint``
subprocess per answer, the way a naive service would call it.

    python bench/bench_pylint.py [--quick] [--answers N] [--subprocess-answers M] [--batch-size B]

Answers: HumanEval's canonical solutions (prompt + canonical_solution), cycled up to N. The
in-process analyzer runs all N; the subprocess peer runs the first M only (it is slow) and its rate
is extrapolated from those M, which the table says. Both use the same checks (an empty rcfile and
the analyzer's disable list), and every answer of the subset must get the same score from both.
Prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from iterkd.feedback.static import StaticAnalyzer
from iterkd.shared.formats import load_humaneval


def answers(n: int) -> list[str]:
    problems = load_humaneval()
    codes = [p.prompt + (p.canonical_solution or "") for p in problems]
    return [codes[i % len(codes)] for i in range(n)]


def subprocess_scores(codes: list[str], disable: list[str]) -> tuple[list[float], float]:
    """One ``python -m pylint`` per answer; its JSON2 score (the file's own score)."""
    scores = []
    with tempfile.TemporaryDirectory(prefix="bench-pylint-") as tmp:
        folder = Path(tmp)
        rc = folder / "empty.pylintrc"
        rc.write_text("")
        start = time.perf_counter()
        for i, code in enumerate(codes):
            path = folder / f"a_{i:04d}.py"
            path.write_text(code)
            proc = subprocess.run(
                [sys.executable, "-m", "pylint", str(path), f"--rcfile={rc}", "--persistent=n", "--jobs=1",
                 "--output-format=json2", "--score=y", f"--disable={','.join(disable)}"],
                capture_output=True, text=True, check=False,
            )
            stats = json.loads(proc.stdout)["statistics"]
            score = stats["score"]
            scores.append(max(0.0, min(10.0, float(score))) if isinstance(score, int | float) else 0.0)
        elapsed = time.perf_counter() - start
    return scores, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 answers in-process, 5 by subprocess")
    parser.add_argument("--answers", type=int, default=200)
    parser.add_argument("--subprocess-answers", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    n = 40 if args.quick else args.answers
    m = min(n, 5 if args.quick else args.subprocess_answers)
    codes = answers(n)

    analyzer = StaticAnalyzer(batch_size=args.batch_size)
    try:
        analyzer.analyze(codes[:2])  # import pylint and build its checkers once, outside the timing
        start = time.perf_counter()
        reports = analyzer.analyze(codes)
        t_in = time.perf_counter() - start
    finally:
        analyzer.close()
    sub_scores, t_sub = subprocess_scores(codes[:m], analyzer.disable)
    ours = [r.pylint_score for r in reports[:m]]
    mismatches = [(i, a, b) for i, (a, b) in enumerate(zip(ours, sub_scores)) if abs(a - b) > 0.005]

    rate_in = n / t_in
    rate_sub = m / t_sub
    print(f"{'method':<44} {'answers':>8} {'seconds':>9} {'answers/s':>10}")
    print(f"{f'in-process batched (batch {args.batch_size})':<44} {n:>8} {t_in:>9.2f} {rate_in:>10.2f}")
    print(f"{'subprocess per answer (rate from subset)':<44} {m:>8} {t_sub:>9.2f} {rate_sub:>10.2f}")
    print(f"speed-up: {rate_in / rate_sub:.1f}x; scores equal on the {m}-answer subset: {not mismatches}")
    for i, a, b in mismatches:
        print(f"  answer {i}: in-process {a:.2f} vs subprocess {b:.2f}")
    mean = sum(r.pylint_score for r in reports) / len(reports)
    print(f"mean pylint score over {n} canonical solutions: {mean:.2f}")
    print(json.dumps({
        "answers": n, "subprocess_answers": m, "batch_size": args.batch_size,
        "inprocess_answers_per_s": round(rate_in, 3), "subprocess_answers_per_s": round(rate_sub, 3),
        "speedup": round(rate_in / rate_sub, 2), "scores_equal_on_subset": not mismatches,
        "subprocess_rate_extrapolated": m < n, "mean_score": round(mean, 3),
    }))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
