"""Measure the miniature world's models (built by ``iterkd models miniature --out DIR``).

1. pass@1 (greedy) of the teacher and of the student base on N held-out problems, on N fresh
   instances of seed compositions (what a run's pool asks) and on the 43 primitives: answers
   generated with ``iterkd models sample`` (the services' prompt, chat wrapping and code
   extraction), scored by ``iterkd eval`` (the feedback sandbox).
2. A question-writing trial through the real services: a feedback server and a teacher server
   (``hf`` backend on the built teacher) on loopback, and the question service's Evolve logic on
   a pool of seed problems, a third per level; it reports the per-level counts (asked, parsed,
   valid, duplicate, contaminated, kept) and the rejection reasons. Decontamination runs against
   HumanEval and the held-out problems.

    .venv/bin/python examples/miniature_check.py DIR [--heldout 100] [--depth 2,3] [--parents 30] [--out REPORT.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BIN = Path(sys.executable).parent


def run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def pass_at_1(model: Path, problems: Path, work: Path, tag: str) -> dict[str, float]:
    samples, results = work / f"{tag}.samples.jsonl", work / f"{tag}.results.jsonl"
    t0 = time.perf_counter()
    run([str(BIN / "iterkd"), "models", "sample", "--model", str(model), "--problems", str(problems),
         "--out", str(samples)])
    gen_s = time.perf_counter() - t0
    out = run([str(BIN / "iterkd"), "eval", str(samples), "--dataset", str(problems), "--out", str(results)])
    return {"pass@1": json.loads(out.strip().splitlines()[-1])["pass@1"], "generate_s": round(gen_s, 1)}


def question_trial(teacher: Path, heldout: Path, n_parents: int, work: Path) -> dict:
    import yaml

    from iterkd.feedback.server import build_server as build_feedback
    from iterkd.questions.config import LEVELS, QuestionsConfig
    from iterkd.questions.service import QuestionServicer
    from iterkd.shared.cli import ServeOptions
    from iterkd.shared.miniature import world
    from iterkd.shared.store import LocalStore
    from iterkd.teacher.server import build_server as build_teacher

    (work / "fb.yaml").write_text(yaml.safe_dump({"store": {"root": str(work / "fb-store")},
                                                  "feedback": {"sandbox": {"workers": 2},
                                                               "static": {"enabled": False}}}))
    (work / "t.yaml").write_text(yaml.safe_dump({"store": {"root": str(work / "t-store")},
                                                 "teacher": {"backend": "hf", "model": str(teacher), "device": "cpu",
                                                             "dtype": "float32", "micro_batch_size": 16}}))
    fb = build_feedback(ServeOptions(config=str(work / "fb.yaml"), port=0))
    te = build_teacher(ServeOptions(config=str(work / "t.yaml"), port=0))
    fb.start()
    te.start()
    try:
        cfg = QuestionsConfig.model_validate({
            "teacher_target": te.target, "feedback_target": fb.target,
            "generation": {"per_question": dict.fromkeys(LEVELS, 1), "max_new_tokens": 400,
                           "solve_max_new_tokens": 256, "samples_per_question": 1},
            "decontamination": {"extra_sets": [str(heldout)]}})
        pool = world.export_split("seed", n_parents, seed=11, depths=(1, 2, 3))
        levels = {p.id: LEVELS[i % 3] for i, p in enumerate(pool)}
        t0 = time.perf_counter()
        result = QuestionServicer(cfg, LocalStore(work / "q-store"))._evolve(pool, levels, cfg, 1)
        new = [p for p in result["next_pool"] if p.source == "teacher"]
        return {"parents": len(pool), "stats": result["stats"], "seconds": round(time.perf_counter() - t0, 1),
                "rejected": dict(Counter(r["reason"] for r in result["rejected"])),
                "examples": [p.prompt for p in new[:2]]}
    finally:
        te.stop(0)
        fb.stop(0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", type=Path)
    ap.add_argument("--heldout", type=int, default=100)
    ap.add_argument("--depth", default="2,3", help="composition depths of the held-out and seed problems")
    ap.add_argument("--parents", type=int, default=30)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    report: dict = {"models": str(args.models)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = {}
        for split, n in (("heldout", args.heldout), ("seed", args.heldout), ("primitives", 43)):
            files[split] = work / f"{split}.jsonl"
            run([str(BIN / "iterkd"), "world", "export", "--split", split, "--n", str(n), "--seed", "0",
                 "--depth", args.depth, "--out", str(files[split])])
        for role in ("teacher", "student"):
            for split in files:
                report[f"{role}.{split}"] = pass_at_1(args.models / role, files[split], work, f"{role}-{split}")
                print(role, split, report[f"{role}.{split}"], flush=True)
        if args.parents:
            report["questions"] = question_trial(args.models / "teacher", files["heldout"], args.parents, work)
            print(json.dumps(report["questions"], indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
