"""Static view throughput: in-process batched pylint (StaticAnalyzer) against one ``python -m pylint``
subprocess per answer, the way a naive service would call it.

    python bench/bench_pylint.py [--quick] [--answers N] [--subprocess-answers M] [--batch-size B]

Answers: half HumanEval's canonical solutions (prompt + canonical_solution), half broken or noisy
variants of them (bench/pylint_corpus.py), N in all. The in-process analyzer runs all N; the
subprocess peer runs M of them (M/2 from each half; it is slow) and its rate is extrapolated from
those M, which the table says. Both use the same checks (an empty rcfile and the analyzer's disable
list), and every answer of the subset must get the same score and the same messages from both.
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

sys.path.insert(0, str(Path(__file__).parent))
from pylint_corpus import corpus

from iterkd.feedback.static import StaticAnalyzer


def subprocess_scores(codes: list[str], disable: list[str]) -> tuple[list[float], list[set[tuple]], float]:
    """One ``python -m pylint`` per answer; its JSON2 score (the file's own score) and messages."""
    scores = []
    messages: list[set[tuple]] = []
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
            report = json.loads(proc.stdout)
            stats = report["statistics"]
            score = stats["score"]
            messages.append({(m["symbol"], m["line"], m["column"]) for m in report["messages"]})
            scores.append(max(0.0, min(10.0, float(score))) if isinstance(score, int | float) else 0.0)
        elapsed = time.perf_counter() - start
    return scores, messages, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 answers in-process, 5 by subprocess")
    parser.add_argument("--answers", type=int, default=400)
    parser.add_argument("--subprocess-answers", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=None, help="pylint runs at a time (default: cores)")
    args = parser.parse_args(argv)
    n = 40 if args.quick else args.answers
    m = min(n, 6 if args.quick else args.subprocess_answers)
    codes = corpus(n // 2)  # canonical, then as many noisy variants
    n = len(codes)
    subset = [*range(m // 2), *range(n // 2, n // 2 + m - m // 2)]

    analyzer = StaticAnalyzer(batch_size=args.batch_size, jobs=args.jobs)
    try:
        analyzer.analyze(codes[:2])  # import pylint and build its checkers once, outside the timing
        start = time.perf_counter()
        reports = analyzer.analyze(codes)
        t_in = time.perf_counter() - start
    finally:
        analyzer.close()
    sub_scores, sub_messages, t_sub = subprocess_scores([codes[i] for i in subset], analyzer.disable)
    mismatches = [(i, reports[i].pylint_score, b) for i, b in zip(subset, sub_scores, strict=True)
                  if abs(reports[i].pylint_score - b) > 0.005]
    other_messages = [i for i, theirs in zip(subset, sub_messages, strict=True)
                      if {(x["symbol"], x["line"], x["column"]) for x in reports[i].messages} != theirs]

    rate_in = n / t_in
    rate_sub = m / t_sub
    print(f"{'method':<44} {'answers':>8} {'seconds':>9} {'answers/s':>10}")
    print(f"{f'in-process batched (batch {args.batch_size})':<44} {n:>8} {t_in:>9.2f} {rate_in:>10.2f}")
    print(f"{'subprocess per answer (rate from subset)':<44} {m:>8} {t_sub:>9.2f} {rate_sub:>10.2f}")
    print(f"speed-up: {rate_in / rate_sub:.1f}x; on the {m}-answer subset, scores equal: {not mismatches}, "
          f"messages equal: {not other_messages} (answers differing: {other_messages})")
    for i, a, b in mismatches:
        print(f"  answer {i}: in-process {a:.2f} vs subprocess {b:.2f}")
    mean = sum(r.pylint_score for r in reports) / len(reports)
    print(f"mean pylint score over {n} answers: {mean:.2f}")
    print(json.dumps({
        "answers": n, "subprocess_answers": m, "batch_size": args.batch_size,
        "inprocess_answers_per_s": round(rate_in, 3), "subprocess_answers_per_s": round(rate_sub, 3),
        "speedup": round(rate_in / rate_sub, 2), "scores_equal_on_subset": not mismatches,
        "messages_equal_on_subset": not other_messages, "jobs": analyzer.jobs,
        "subprocess_rate_extrapolated": m < n, "mean_score": round(mean, 3),
    }))
    return 1 if mismatches or other_messages else 0


if __name__ == "__main__":
    sys.exit(main())
