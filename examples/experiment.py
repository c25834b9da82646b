"""Does the method work? IterKD against one-shot distillation in the miniature world, with ablations.

    python examples/experiment.py [--arms A,B] [--seeds 0,1,2] [--quick] [--out docs]
    make experiment [ARM=iterkd] [SEED=0]     # part of the table: printed beside docs/results.json's numbers

Every distillation arm is a real run of the system: `iterkd run --config ARM.yaml` against the
four services, which are started once on 127.0.0.1 and shared by the arms (each arm's run differs
only by its configuration). The two reference arms measure a model as it is: the student before
distillation and the teacher answer the held-out set through the trainer's and the teacher's Solve,
and the feedback service scores them. Arms:

* ``student-base``, ``teacher``: the models as built (greedy, so one number for every seed);
* ``one-shot``: one cycle, SFT only, the whole teacher budget spent on the seed pool (n answers per
  question), no new questions;
* ``one-shot-random-questions``: first the teacher writes new questions at random levels (the
  question service, no feedback, so no judge calls), then one cycle of SFT on the seed pool plus
  those questions with the rest of the budget;
* ``iterkd``: the full method, K cycles; ``iterkd-no-contrastive`` (lambda 0),
  ``iterkd-no-feedback-update`` (levels at random), ``iterkd-no-judge`` (execution and pylint only).

Equal budget: every arm gets the same student training steps in total (K x steps per cycle for the
cycled arms, all at once for one-shot) and the one-shot arms get the teacher generations the full
method used on average (answers + questions + validation answers + judge calls, counted from the
runs' manifests). The held-out set is answered once per cycle for the curves; the table reports the
last cycle, with no selection on it. Hyperparameters are fixed once for all arms (below).
Results: docs/results.md, docs/results.json, docs/results.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
IKD = str(Path(sys.executable).with_name("iterkd"))
ARMS = ("student-base", "teacher", "one-shot", "one-shot-random-questions", "iterkd", "iterkd-no-contrastive",
        "iterkd-no-feedback-update", "iterkd-no-judge")
CYCLED = ("iterkd", "iterkd-no-contrastive", "iterkd-no-feedback-update", "iterkd-no-judge")

# The one set of hyperparameters every arm uses (chosen once, on the validation split).
SETTINGS: dict[str, Any] = {
    "depth": "2",          # composition depth of the seed pool and of the evaluation set
    "pool": 256,           # seed questions (miniature seed split)
    "heldout": 100,        # evaluation problems (whole compositions never seen)
    "cycles": 2,
    "teacher_n": 2,        # answers per question per cycle (cycled arms)
    "student_n": 1,
    "steps_per_cycle": 120,
    "batch_size": 8,
    "lr": 3e-3,
    "lambda": 0.5,
    "loss_type": "infonce",  # the cycled arms' contrastive term (trainer.loss.loss_type)
    "fault_weight": 0.0,     # trainer.loss.fault_weight: extra weight of the tokens where the pair differs
    "pool_cap": 256,       # the evolved pool's size limit (questions service)
    "replay": True,        # cycled arms train on every earlier cycle's passing answers too
}
DEFAULT_SEEDS = [0, 1, 2]
VALIDATION_SAMPLES = 1  # fresh teacher answers per new question (besides the one written with it)
QUICK = {**SETTINGS, "pool": 6, "heldout": 8, "cycles": 2, "teacher_n": 2, "student_n": 1, "steps_per_cycle": 3}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def home() -> Path:
    return Path(os.environ.get("ITERKD_HOME") or Path.home() / ".iterkd").expanduser()


def build_models(root: Path, quick: bool, models: Path | None = None) -> dict[str, Path]:
    out = models or root / "models"
    if not (out / "teacher" / "config.json").exists() or not (out / "student" / "config.json").exists():
        log(f"building the miniature world's models in {out}")
        cmd = [IKD, "models", "miniature", "--out", str(out), "--seed", "0"] + (["--preset", "quick"] if quick else [])
        subprocess.run(cmd, check=True)
    return {"teacher": out / "teacher", "student": out / "student"}


def services_config(root: Path, models: dict[str, Path], heldout_file: Path, s: dict[str, Any]) -> dict[str, Any]:
    return {
        "store": {"backend": "local", "root": str(root / "store")},
        "logging": {"level": "INFO", "format": "json"},
        "teacher": {"backend": "hf", "model": str(models["teacher"]), "micro_batch_size": 16, "max_n": 256,
                    "prompts": {"use_chat_template": True}},
        "trainer": {"base_model": str(models["student"]), "device": "cpu", "prompts": {"use_chat_template": True},
                    "lora": {"enabled": False},
                    "optim": {"lr": s["lr"], "batch_size": s["batch_size"], "max_length": 512,
                              "save_every_steps": 50}},
        "feedback": {"sandbox": {"timeout_s": 3.0},
                     "judge": {"enabled": True, "max_new_tokens": 32}},
        "questions": {"generation": {"per_question": {"mastered": 1, "learning": 1, "struggling": 1},
                                     "max_new_tokens": 256, "samples_per_question": VALIDATION_SAMPLES,
                                     "solve_max_new_tokens": 192},
                      "pool": {"max_size": s["pool_cap"]},
                      "decontamination": {"extra_sets": [str(heldout_file)]}},
    }


def arm_run(arm: str, seed: int, s: dict[str, Any], teacher_n: int, pool_source: str,
            eval_split: str = "heldout") -> dict[str, Any]:
    """The `run` section of one arm (everything else is shared)."""
    one_shot = arm.startswith("one-shot")
    loss: dict[str, Any] = {"lambda": 0.0 if one_shot or arm == "iterkd-no-contrastive" else s["lambda"]}
    for key in ("loss_type", "fault_weight"):  # only where changed, so the table's runs stay as they were
        if s[key] != SETTINGS[key]:
            loss[key] = s[key]
    train: dict[str, Any] = {"optim": {"max_steps": s["steps_per_cycle"] * (s["cycles"] if one_shot else 1),
                                       "seed": seed}, "loss": loss}
    evolve: dict[str, Any] = {"generation": {"seed": seed}}
    if arm == "iterkd-no-feedback-update":
        evolve["levels"] = {"assign": "random", "random_seed": seed}
    return {
        "cycles": 1 if one_shot else s["cycles"],
        "seed": seed,
        "pool": {"source": pool_source, "limit": s["pool"], "seed": seed} if pool_source.startswith("miniature")
        else {"source": pool_source},
        "eval": {"source": f"miniature:{eval_split}:{s['depth']}", "limit": s["heldout"], "seed": 10_000},
        "stages": {
            "teacher-solve": {"n": teacher_n, "temperature": 0.8, "max_new_tokens": 192},
            "train": {"config": train, "replay": bool(s["replay"]) and not one_shot},
            "student-solve": {"n": s["student_n"], "temperature": 0.8, "max_new_tokens": 192},
            # A run's last cycle (a one-shot arm's only one) leaves out student-solve, feedback and
            # evolve: what they spend would feed a cycle that never comes.
            "feedback": {"judge": arm != "iterkd-no-judge"},
            "evolve": {"config": evolve},
            "evaluate": {"n": 1, "temperature": 0.0, "max_new_tokens": 192},
        },
    }


def run_arm(root: Path, base_cfg: dict[str, Any], targets: dict[str, str], run_id: str,
            run: dict[str, Any]) -> dict[str, Any]:
    cfg = {**base_cfg, "controller": {"executor": "local", "services": targets, "workdir": str(root)}, "run": run}
    path = root / "configs" / f"{run_id}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "ITERKD_HOME": str(root)}
    t0 = time.monotonic()
    if (root / "store" / "runs" / run_id / "run.json").exists():
        proc = subprocess.run([IKD, "run", "--config", str(path), "--resume", run_id], capture_output=True, text=True,
                              env=env)
    else:
        proc = subprocess.run([IKD, "run", "--config", str(path), "--run-id", run_id], capture_output=True,
                              text=True, env=env)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{run_id}: iterkd run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    status = json.loads(subprocess.run([IKD, "status", run_id, "--config", str(path), "--json"], capture_output=True,
                                       text=True, env=env, check=True).stdout)
    return {"status": status, "wall_s": wall, "budget": budget(root / "store" / "runs" / run_id, run)}


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "_manifest.json").read_text())


def budget(run_dir: Path, run: dict[str, Any]) -> dict[str, float]:
    """Teacher generations and student training tokens, counted from the run's artifacts."""
    teacher = 0
    tokens = 0.0
    for c in range(1, run["cycles"] + 1):
        cyc = run_dir / f"cycle-{c:03d}"
        samples = [json.loads(x) for x in (cyc / "teacher-solve" / "samples.jsonl").read_text().splitlines() if x]
        teacher += sum(1 for x in samples if x.get("model") != "reference")
        tokens += _manifest(cyc / "train")["metrics"].get("tokens", 0.0)
        if not (cyc / "evolve" / "_manifest.json").exists():
            continue  # the last cycle leaves out student-solve, feedback and evolve (evolve_last_cycle off)
        ev = _manifest(cyc / "evolve")
        for st in ev["extra"].get("stats", []):
            teacher += int(st["asked"])
        per = int(((run["stages"]["evolve"]["config"] or {}).get("generation") or {}).get("samples_per_question",
                                                                                          VALIDATION_SAMPLES))
        teacher += per * sum(int(st["parsed"]) for st in ev["extra"].get("stats", []))  # validation answers
        fb = _manifest(cyc / "feedback")
        if run["stages"]["feedback"]["judge"]:
            teacher += int(fb["metrics"].get("samples", 0))  # the judge is the teacher model
    return {"teacher_generations": teacher, "student_train_tokens": tokens}


def measure_model(root: Path, targets: dict[str, str], which: str, heldout: Path) -> float:
    """pass@1 (greedy) of the teacher or the untrained student on the held-out set, through the
    services' own Solve and Evaluate."""
    from iterkd.shared.rpc import connect
    from iterkd.shared.store import LocalStore
    from iterkd.v1 import common_pb2, feedback_pb2, feedback_pb2_grpc, teacher_pb2_grpc, trainer_pb2, trainer_pb2_grpc

    store = LocalStore(root / "store")
    problems = store.put_file(f"reference/{which}/problems.jsonl", heldout)
    params = common_pb2.GenerationParams(n=1, max_new_tokens=192, temperature=0.0, use_chat_template=True)
    if which == "teacher":
        _, solver = connect(targets["teacher"], teacher_pb2_grpc.TeacherServiceStub, timeout=3600)
    else:
        _, solver = connect(targets["trainer"], trainer_pb2_grpc.TrainerServiceStub, timeout=3600)
        solver.LoadStudent(trainer_pb2.LoadStudentRequest(checkpoint_uri=""))
    samples_uri = store.uri(f"reference/{which}/solve/samples.jsonl")
    solver.Solve(common_pb2.SolveRequest(problems_uri=problems.uri, samples_uri=samples_uri, params=params))
    _, feedback = connect(targets["feedback"], feedback_pb2_grpc.FeedbackServiceStub, timeout=3600)
    reply = feedback.Evaluate(feedback_pb2.EvaluateRequest(problems_uri=problems.uri, samples_uri=samples_uri,
                                                           output_prefix=store.uri(f"reference/{which}/eval"), k=[1]))
    return float(reply.metrics["pass@1"])


def pool_with_random_questions(root: Path, run_id: str, seed_pool: Path) -> Path:
    """The seed pool plus the questions the teacher wrote at random levels in run ``run_id``."""
    from iterkd.shared.formats import read_problems, write_jsonl

    base = read_problems(seed_pool)
    evolved = read_problems(root / "store" / "runs" / run_id / "cycle-001" / "evolve" / "next_pool.jsonl")
    known = {p.id for p in base}
    new = [p for p in evolved if p.id not in known]
    out = root / "pools" / f"{run_id}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, [*base, *new])
    return out


def summarize(results: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for arm in ARMS:
        if arm not in results:
            continue
        per_seed = results[arm]
        seeds = sorted(per_seed)
        scores = [per_seed[s]["pass_at_1"] for s in seeds]
        rows.append({
            "arm": arm, "seeds": seeds, "pass_at_1": scores, "mean": statistics.fmean(scores),
            "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "teacher_generations": statistics.fmean(per_seed[s].get("teacher_generations", 0) for s in seeds),
            "student_train_tokens": statistics.fmean(per_seed[s].get("student_train_tokens", 0) for s in seeds),
            "wall_s": sum(per_seed[s].get("wall_s", 0) for s in seeds),
            "curve": [statistics.fmean(c) for c in zip(*[per_seed[s].get("curve", [per_seed[s]["pass_at_1"]])
                                                         for s in seeds])],
        })
    return rows


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        curve = r["curve"]
        if len(curve) == 1:
            ax.axhline(curve[0], ls=":", lw=1, label=f"{r['arm']} ({curve[0]:.2f})",
                       color="gray" if r["arm"] in ("student-base", "teacher") else None)
        else:
            ax.plot(range(1, len(curve) + 1), curve, "o-", label=r["arm"])
    longest = max((len(r["curve"]) for r in rows), default=1)
    ax.set_xticks(range(1, longest + 1))
    ax.set_xlabel("cycle")
    ax.set_ylabel("held-out pass@1 (mean over seeds)")
    ax.legend(fontsize=7, loc="best")
    ax.set_title("Miniature world: pass@1 per cycle per arm")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


BEGIN, END = "<!-- results:begin (written by examples/experiment.py) -->", "<!-- results:end -->"


def results_block(table: list[dict[str, Any]], s: dict[str, Any]) -> str:
    """The measured part of docs/results.md: settings, the table, the curves."""
    lines = [BEGIN, "", "| arm | held-out pass@1 (mean ± std) | per seed | teacher generations | "
             "student train tokens | wall (s, all seeds) |", "|---|---|---|---|---|---|"]
    for r in table:
        per = ", ".join(f"{x:.2f}" for x in r["pass_at_1"])
        lines.append(f"| `{r['arm']}` | {r['mean']:.3f} ± {r['std']:.3f} | {per} | {r['teacher_generations']:.0f} | "
                     f"{r['student_train_tokens']:.0f} | {r['wall_s']:.0f} |")
    lines += ["", "Held-out pass@1 per cycle (mean over seeds):", ""]
    for r in table:
        if len(r.get("curve", [])) > 1:
            lines.append(f"- `{r['arm']}`: " + " → ".join(f"{x:.3f}" for x in r["curve"]))
    lines += ["", "Settings (every arm): " + ", ".join(f"`{k}={v}`" for k, v in s.items()) + "."]
    lines.append(f"Wall time of the arms together: {sum(r['wall_s'] for r in table) / 60:.1f} minutes "
                 "(the runs one after another, services shared).")
    lines += ["", "![held-out pass@1 per cycle per arm](results.png)", "", END]
    return "\n".join(lines)


def write_results_md(path: Path, block: str) -> None:
    """Replace the measured block of ``path`` (the analysis around it is kept), or start the file."""
    if path.exists() and BEGIN in (text := path.read_text()) and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = "# Results: the miniature experiment\n\n" + block + "\n"
    path.write_text(text)


def settings_tag(sets: list[str], seeds: list[int]) -> str:
    """A run-id suffix naming ``--set`` overrides: ``lambda=0.1`` -> ``lambda0p1``. Run ids allow only
    lower-case letters, digits and '-' (40 at most with the arm's name), so a long tag is hashed."""
    tag = "-".join(re.sub(r"[^a-z0-9]+", "-", x.lower().replace("=", "").replace(".", "p")).strip("-")
                   for x in sets)
    longest = max(len(f"{a}-s{sd}") for a in (*ARMS, "questions") for sd in seeds)
    room = 40 - 1 - longest
    if tag and len(tag) > room:
        tag = "set" + hashlib.sha256(tag.encode()).hexdigest()[:max(4, room - 3)]
    return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)))
    parser.add_argument("--quick", action="store_true", help="a smoke version: tiny models, one small budget")
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--models", type=Path, default=None,
                        help="built miniature models (default: WORKDIR/models, built when absent)")
    parser.add_argument("--split", choices=("heldout", "validation"), default="heldout",
                        help="evaluation set: validation for choosing hyperparameters (results stay in the "
                             "workdir), heldout once for the table in --out")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a setting (tuning on the validation split); keys: {', '.join(SETTINGS)}")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite results.md and results.png from --out/results.json, running nothing")
    args = parser.parse_args(argv)
    if args.report_only:
        table = json.loads((args.out / "results.json").read_text())
        plot(table, args.out / "results.png")
        write_results_md(args.out / "results.md", results_block(table, SETTINGS))
        return 0
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; arms: {', '.join(ARMS)}")
    seeds = [int(x) for x in args.seeds.split(",") if x]
    s = dict(QUICK if args.quick else SETTINGS)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in SETTINGS:
            parser.error(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(SETTINGS)}")
        if isinstance(SETTINGS[key], bool):
            if value.lower() not in ("true", "false"):
                parser.error(f"--set {item!r}: {key} is true or false")
            s[key] = value.lower() == "true"
        else:
            s[key] = type(SETTINGS[key])(value)
    split = args.split
    tuning = split == "validation" or bool(args.set)
    default_root = "experiment-quick" if args.quick else "experiment-validation" if tuning else "experiment"
    root = (args.workdir or home() / default_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    models = build_models(root, args.quick, args.models)
    depths = tuple(int(d) for d in str(s["depth"]).split(","))

    from iterkd.controller.services import LocalServices
    from iterkd.shared.formats import write_jsonl
    from iterkd.shared.miniature.world import export_split

    heldout = root / f"{split}.jsonl"  # the evaluation set, as the runs' `eval` section draws it
    write_jsonl(heldout, export_split(split, s["heldout"], seed=10_000, depths=depths))
    decontaminate = root / "heldout.jsonl"  # new questions are always checked against the held-out set
    write_jsonl(decontaminate, export_split("heldout", SETTINGS["heldout"], seed=10_000, depths=depths))
    base_cfg = services_config(root, models, decontaminate, s)
    results: dict[str, dict[int, dict[str, Any]]] = {}
    tag = settings_tag(args.set, seeds)
    suffix = f"-{tag}" if tag else ""  # run ids differ when the settings do
    saved = root / f"results-{split}{'-' + tag if tag else ''}.json" if tuning else args.out / "results.json"
    previous = {r["arm"]: r for r in json.loads(saved.read_text())} if saved.exists() and not args.quick else {}
    with LocalServices(base_cfg, root, start_timeout_s=600) as services:
        targets = services.targets
        log(f"services up: {targets}")
        for arm in ("student-base", "teacher"):
            if arm in arms:
                t0 = time.monotonic()
                score = measure_model(root, targets, "teacher" if arm == "teacher" else "student", heldout)
                results[arm] = {sd: {"pass_at_1": score, "wall_s": (time.monotonic() - t0) / len(seeds)}
                                for sd in seeds}
                log(f"{arm}: held-out pass@1 {score:.3f}")
        cycled_budget: list[float] = []
        for arm in [a for a in arms if a in CYCLED]:
            results[arm] = {}
            for sd in seeds:
                r = run_arm(root, base_cfg, targets, f"{arm}-s{sd}{suffix}", arm_run(arm, sd, s, s["teacher_n"],
                                                                            f"miniature:seed:{s['depth']}", split))
                curve = [c["metrics"]["student_pass_at_1"] for c in r["status"]["cycles"]]
                results[arm][sd] = {"pass_at_1": curve[-1], "curve": curve, "wall_s": r["wall_s"], **r["budget"]}
                if arm == "iterkd":
                    cycled_budget.append(r["budget"]["teacher_generations"])
                log(f"{arm} seed {sd}: pass@1 per cycle {curve}, teacher generations "
                    f"{r['budget']['teacher_generations']}, {r['wall_s']:.0f}s")
        if not cycled_budget and "iterkd" in previous:
            cycled_budget = [previous["iterkd"]["teacher_generations"]]
        budget_b = statistics.fmean(cycled_budget) if cycled_budget else s["teacher_n"] * s["pool"] * s["cycles"]
        for arm in [a for a in arms if a.startswith("one-shot")]:
            results[arm] = {}
            for sd in seeds:
                seed_pool = root / "pools" / f"seed-{sd}.jsonl"
                seed_pool.parent.mkdir(parents=True, exist_ok=True)
                write_jsonl(seed_pool, export_split("seed", s["pool"], seed=sd, depths=depths))
                spent = 0
                pool_source, pool_size = f"miniature:seed:{s['depth']}", s["pool"]
                wall = 0.0
                if arm == "one-shot-random-questions":
                    # The teacher writes the questions first (random levels, no feedback): one round
                    # of question writing on the seed pool, as one cycle of the full method does.
                    gen = arm_run("iterkd-no-feedback-update", sd, s, 1, f"miniature:seed:{s['depth']}", split)
                    gen["cycles"] = 1
                    gen["evolve_last_cycle"] = True  # its one cycle is the last, and its questions are the point
                    gen["stages"]["train"]["config"]["optim"]["max_steps"] = 1
                    # Random levels read no feedback: judge calls here would be budget spent on nothing.
                    gen["stages"]["feedback"]["judge"] = False
                    r = run_arm(root, base_cfg, targets, f"questions-s{sd}{suffix}", gen)
                    wall += r["wall_s"]
                    spent = r["budget"]["teacher_generations"]
                    pool_file = pool_with_random_questions(root, f"questions-s{sd}{suffix}", seed_pool)
                    pool_source = str(pool_file)
                    pool_size = sum(1 for line in pool_file.read_text().splitlines() if line.strip())
                n = max(1, math.floor((budget_b - spent) / pool_size))
                r = run_arm(root, base_cfg, targets, f"{arm}-s{sd}{suffix}",
                            arm_run(arm, sd, s, n, pool_source, split))
                score = r["status"]["cycles"][-1]["metrics"]["student_pass_at_1"]
                results[arm][sd] = {"pass_at_1": score, "curve": [score], "wall_s": wall + r["wall_s"],
                                    "teacher_generations": spent + r["budget"]["teacher_generations"],
                                    "student_train_tokens": r["budget"]["student_train_tokens"]}
                log(f"{arm} seed {sd}: pass@1 {score:.3f} with n={n} on {pool_size} questions, teacher generations "
                    f"{results[arm][sd]['teacher_generations']}")
    rows = summarize(results)
    if args.quick:
        print(json.dumps(rows))
        return 0
    if not tuning and (set(arms) != set(ARMS) or seeds != DEFAULT_SEEDS):
        # Part of the table (make experiment ARM=... SEED=...): compare with it, never overwrite it.
        for r in rows:
            table_row = previous.get(r["arm"], {})
            known = dict(zip(table_row.get("seeds", []), table_row.get("pass_at_1", [])))
            for sd, score in zip(r["seeds"], r["pass_at_1"]):
                was = f"{known[sd]:.3f}" if sd in known else "not in the table"
                print(f"{r['arm']:<28} seed {sd}: held-out pass@1 {score:.3f} (docs/results.json: {was})")
        return 0
    merged = {**previous, **{r["arm"]: r for r in rows}}
    table = [merged[a] for a in ARMS if a in merged]
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(table, indent=2) + "\n")
    png = saved.with_suffix(".png")
    plot(table, png)
    if not tuning:
        write_results_md(args.out / "results.md", results_block(table, s))
    log(f"done in {time.monotonic() - t_start:.0f}s: {saved}, {png}")
    for r in table:
        print(f"{r['arm']:<28} {r['mean']:.3f} ± {r['std']:.3f}  teacher gens {r['teacher_generations']:.0f}  "
              f"train tokens {r['student_train_tokens']:.0f}  wall {r['wall_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
