"""How much composition data does the miniature student need? (The ceiling of distillation.)

Fine-tunes the student base (DIR/student from ``iterkd models miniature``) directly on the
generator's references of ``seed`` compositions of depth 2 - what a perfect teacher would answer -
and measures greedy pass@1 on the validation split (depth 2) through the sandbox. Three regimes:

* ``--fresh``: every example a new instance (all seed compositions, or ``--compositions N`` of them);
* ``--distinct N``: N fixed instances, repeated (what one cycle of distillation gives: one correct
  answer per solved question).

    .venv/bin/python examples/miniature_probe.py DIR --steps 300 --batch 8 --fresh
    .venv/bin/python examples/miniature_probe.py DIR --steps 240 --batch 8 --distinct 150 --lr 1e-3

Not a test and not part of the experiment's arms: it bounds what any arm could reach with a given
amount of correct data (docs/results.md).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from iterkd.shared.formats import write_jsonl
from iterkd.shared.miniature import world
from iterkd.teacher import miniature as mini


def stream(compositions: int, distinct: int, seed: int) -> Iterator[world.Task]:
    rng = random.Random(seed)
    chains = world.compositions(2, "seed")
    if distinct:
        fixed = [world.make_task(rng.choice(chains), rng) for _ in range(distinct)]
        while True:
            yield rng.choice(fixed)
    if compositions:
        rng.shuffle(chains)
        chains = chains[:compositions]
    while True:
        yield world.make_task(rng.choice(chains), rng)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", type=Path)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--fresh", action="store_true", help="a new instance per example")
    group.add_argument("--distinct", type=int, default=0, help="N fixed instances")
    ap.add_argument("--compositions", type=int, default=0, help="with --fresh: only N seed compositions")
    ap.add_argument("--problems", type=int, default=60, help="validation problems (depth 2)")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.models / "student")
    model = AutoModelForCausalLM.from_pretrained(args.models / "student")
    spec = mini.TrainSpec(steps=args.steps, batch_size=args.batch, lr=args.lr)
    t0 = time.perf_counter()
    stats = mini.train(model, tok, spec, seed=5, tasks=stream(args.compositions, args.distinct, seed=5))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model.save_pretrained(work / "student")
        tok.save_pretrained(work / "student")
        problems = world.export_split("validation", args.problems, seed=10_000, depths=(2,))
        write_jsonl(work / "problems.jsonl", problems)
        write_jsonl(work / "samples.jsonl", mini.sample_answers(work / "student", problems))
        done = subprocess.run([str(Path(sys.executable).with_name("iterkd")), "eval", str(work / "samples.jsonl"),
                               "--dataset", str(work / "problems.jsonl"), "--out", str(work / "results.jsonl")],
                              capture_output=True, text=True, check=True)
    score = json.loads(done.stdout.strip().splitlines()[-1])["pass@1"]
    print(json.dumps({"regime": "distinct" if args.distinct else "fresh", "distinct": args.distinct,
                      "compositions": args.compositions or len(world.compositions(2, "seed")),
                      "steps": args.steps, "batch": args.batch, "lr": args.lr,
                      "examples": stats["examples"], "final_loss": round(stats["final_loss"], 4),
                      "train_s": round(time.perf_counter() - t0, 1), "validation_pass@1": score}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
