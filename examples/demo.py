"""The embedded demo: one machine, tiny local models, the real services over gRPC on loopback.

    python examples/demo.py [--workdir .demo] [--cycles 1] [--fresh]

It builds a tiny teacher and a tiny student (``iterkd models tiny``), writes a config, starts the
four services as processes (``iterkd serve NAME``), and runs each cycle's stages in order through
their RPCs: teacher-solve, verify, train, student-solve, feedback, evolve, evaluate. Every stage
writes its artifacts and manifest under ``<workdir>/store/runs/demo/``; running the demo again
reuses what is finished (stages with a manifest are not redone), ``--fresh`` starts over.

Tiny models write poor code, so the seed pool's reference solutions join the teacher's samples
(marked ``model: reference``) and go through the same verification: they give the student its
correct answers, and the tiny teacher's failing ones give it the faulty answers to contrast.
Until the controller lands, this script is the cycle's orchestration.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "services" / "questions" / "iterkd" / "questions" / "data" / "seed.jsonl"
RUN = "demo"


def say(stage: str, message: str, **fields: Any) -> None:
    extra = "  ".join(f"{k}={v}" for k, v in fields.items())
    print(f"[{time.strftime('%H:%M:%S')}] {stage:<14} {message}" + (f"  {extra}" if extra else ""), flush=True)


def iterkd_bin() -> str:
    exe = Path(sys.executable).with_name("iterkd")
    return str(exe) if exe.exists() else (shutil.which("iterkd") or "iterkd")


def build_models(workdir: Path, warmup_steps: int) -> tuple[Path, Path]:
    models = workdir / "models"
    out = []
    for name, seed in (("teacher", 0), ("student", 1)):
        target = models / name
        if not (target / "config.json").exists():
            cmd = [iterkd_bin(), "models", "tiny", "--out", str(target), "--preset", "small", "--seed", str(seed),
                   "--warmup-steps", str(warmup_steps), "--overwrite"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"building the tiny {name} failed:\n{proc.stderr}")
            say("models", f"built tiny {name}", **json.loads(proc.stdout.strip().splitlines()[-1]))
        else:
            say("models", f"tiny {name} already built", path=target)
        out.append(target)
    return out[0], out[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(workdir: Path, teacher: Path, student: Path, epochs: float) -> tuple[Path, dict[str, int]]:
    ports = {name: free_port() for name in ("teacher", "trainer", "feedback", "questions")}
    cfg = {
        "store": {"backend": "local", "root": str(workdir / "store")},
        "logging": {"level": "INFO", "format": "json"},
        "teacher": {"server": {"port": ports["teacher"]}, "backend": "hf", "model": str(teacher),
                    "micro_batch_size": 16, "prompts": {"use_chat_template": True}},
        "trainer": {
            "server": {"port": ports["trainer"]}, "base_model": str(student), "device": "cpu",
            "prompts": {"use_chat_template": True},
            "lora": {"r": 8, "alpha": 16},
            "loss": {"loss_type": "infonce", "lambda": 0.5, "max_rejected": 2},
            "optim": {"lr": 5e-3, "epochs": epochs, "batch_size": 8, "max_length": 1024, "save_every_steps": 10},
        },
        "feedback": {
            "server": {"port": ports["feedback"]},
            "sandbox": {"timeout_s": 3.0},
            "judge": {"enabled": True, "endpoint": {"kind": "teacher", "target": f"127.0.0.1:{ports['teacher']}"},
                      "max_new_tokens": 48},
        },
        "questions": {
            "server": {"port": ports["questions"]},
            "teacher_target": f"127.0.0.1:{ports['teacher']}",
            "feedback_target": f"127.0.0.1:{ports['feedback']}",
            "generation": {"per_question": {"mastered": 1, "learning": 1, "struggling": 1},
                           "max_new_tokens": 160, "samples_per_question": 1, "solve_max_new_tokens": 160},
        },
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, ports


@contextmanager
def services(config: Path, workdir: Path) -> Iterator[dict[str, str]]:
    """Start the four services; yield their gRPC targets; SIGTERM them on the way out."""
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen[str]] = {}
    targets: dict[str, str] = {}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    try:
        for name in ("feedback", "teacher", "trainer", "questions"):
            procs[name] = subprocess.Popen(
                [iterkd_bin(), "serve", name, "--config", str(config)], stdout=subprocess.PIPE,
                stderr=open(logs / f"{name}.log", "w"), text=True, env=env,  # noqa: SIM115
            )
        for name, proc in procs.items():
            line = proc.stdout.readline() if proc.stdout else ""
            if not line:
                raise SystemExit(f"the {name} service did not start; see {logs / (name + '.log')}")
            targets[name] = json.loads(line)["serving"]
            say("services", f"{name} serving", target=targets[name], log=logs / f"{name}.log")
        yield targets
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                say("services", f"{name} did not stop in time and was killed")


def run_cycles(targets: dict[str, str], store_root: Path, cycles: int, pool_size: int,
               eval_size: int) -> list[dict[str, Any]]:
    from iterkd.shared.formats import Problem, Sample, Verdict, load_humaneval, read_problems
    from iterkd.shared.rpc import connect
    from iterkd.shared.stages import cycle_prefix, read_manifest, stage_prefix
    from iterkd.shared.store import LocalStore
    from iterkd.trainer.data import build_examples
    from iterkd.v1 import (
        common_pb2,
        feedback_pb2,
        feedback_pb2_grpc,
        questions_pb2,
        questions_pb2_grpc,
        teacher_pb2_grpc,
        trainer_pb2,
        trainer_pb2_grpc,
    )

    store = LocalStore(store_root)
    _, teacher = connect(targets["teacher"], teacher_pb2_grpc.TeacherServiceStub, timeout=1800, wait_ready_s=60)
    _, trainer = connect(targets["trainer"], trainer_pb2_grpc.TrainerServiceStub, timeout=3600, wait_ready_s=60)
    _, feedback = connect(targets["feedback"], feedback_pb2_grpc.FeedbackServiceStub, timeout=1800, wait_ready_s=60)
    _, questions = connect(targets["questions"], questions_pb2_grpc.QuestionServiceStub, timeout=1800,
                           wait_ready_s=60)

    pool_key = f"runs/{RUN}/seed_pool.jsonl"
    if not store.exists(pool_key):
        seed = read_problems(SEED)
        store.put_jsonl(pool_key, seed[:: max(1, len(seed) // pool_size)][:pool_size] if pool_size else seed)
    eval_key = f"runs/{RUN}/humaneval_subset.jsonl"
    if not store.exists(eval_key):
        store.put_jsonl(eval_key, load_humaneval()[:eval_size])

    summary = []
    for cycle in range(1, cycles + 1):
        run = common_pb2.RunCycle(run_id=RUN, cycle=cycle)
        base = cycle_prefix(RUN, cycle)
        row: dict[str, Any] = {"cycle": cycle}
        pool_uri = store.uri(pool_key)

        # teacher-solve ------------------------------------------------------------------------
        t0 = time.monotonic()
        samples_key = f"{stage_prefix(RUN, cycle, 'teacher-solve')}/samples.jsonl"
        if not store.exists(samples_key):
            reply = teacher.Solve(common_pb2.SolveRequest(
                run=run, problems_uri=pool_uri, samples_uri=store.uri(samples_key),
                params=common_pb2.GenerationParams(n=2, max_new_tokens=192, temperature=0.8, top_p=0.95, seed=cycle)))
            say("teacher-solve", "teacher answered the pool", problems=reply.problems,
                samples=reply.samples_written, seconds=f"{time.monotonic() - t0:.1f}")
        else:
            say("teacher-solve", "already done", samples=samples_key)

        # verify (teacher samples + the pool's reference solutions) -----------------------------
        verify = stage_prefix(RUN, cycle, "verify")
        candidates_key = f"{base}/verify-input.jsonl"
        pool = store.get_jsonl(pool_key, Problem)
        if not store.exists(candidates_key):
            refs = [Sample(problem_id=p.id, sample_id=f"{p.id}#ref", model="reference", completion=p.canonical_solution)
                    for p in pool if p.canonical_solution]
            store.put_jsonl(candidates_key, [*store.get_jsonl(samples_key, Sample), *refs])
        reply = feedback.Evaluate(feedback_pb2.EvaluateRequest(
            run=run, problems_uri=pool_uri, samples_uri=store.uri(candidates_key), output_prefix=verify,
            run_static=False, run_judge=False))
        verdicts = store.get_jsonl(f"{verify}/verdicts.jsonl", Verdict)
        teacher_rows = [v for v in verdicts if not v.sample_id.endswith("#ref")]
        row["teacher_pass"] = sum(v.passed for v in teacher_rows) / max(1, len(teacher_rows))
        say("verify", "answers executed against the tests", verdicts=int(reply.metrics["samples"]),
            passed=int(reply.metrics["passed"]), teacher_pass_rate=f"{row['teacher_pass']:.2f}")

        # train ----------------------------------------------------------------------------------
        train_set_key = f"{base}/train_set.jsonl"
        if not store.exists(train_set_key):
            examples, counts = build_examples(pool, store.get_jsonl(candidates_key, Sample),
                                              verdicts)
            store.put_jsonl(train_set_key, examples)
            say("train", "training set built", **counts)
        last = None
        for progress in trainer.Train(trainer_pb2.TrainRequest(run=run, train_set_uri=store.uri(train_set_key))):
            last = progress
            if progress.state == "training" and (progress.step % 5 == 0 or progress.step == progress.total_steps):
                say("train", f"step {progress.step}/{progress.total_steps}", sft=f"{progress.sft_loss:.3f}",
                    contrastive=f"{progress.contrastive_loss:.3f}", margin=f"{progress.margin:+.3f}",
                    tok_s=f"{progress.tokens_per_second:.0f}", eta_s=f"{progress.eta_s:.0f}")
            elif progress.state in ("done", "failed"):
                say("train", progress.state + (" (cached)" if progress.cached else ""),
                    checkpoint=progress.checkpoint.uri, note=progress.message or "-")
        if last is None or last.state != "done":
            raise SystemExit(f"training cycle {cycle} did not finish: {last.message if last else 'no progress'}")
        row["train_loss"] = last.loss

        # student-solve + feedback -----------------------------------------------------------------
        student_key = f"{stage_prefix(RUN, cycle, 'student-solve')}/samples.jsonl"
        if not store.exists(student_key):
            trainer.Solve(common_pb2.SolveRequest(
                run=run, problems_uri=pool_uri, samples_uri=store.uri(student_key),
                params=common_pb2.GenerationParams(n=2, max_new_tokens=192, temperature=0.8, top_p=0.95, seed=cycle)))
        fb_prefix = stage_prefix(RUN, cycle, "feedback")
        reply = feedback.Evaluate(feedback_pb2.EvaluateRequest(
            run=run, problems_uri=pool_uri, samples_uri=store.uri(student_key), output_prefix=fb_prefix,
            run_static=True, run_judge=True))
        m = reply.metrics
        row.update(student_pass=m["pass_rate"], static=m.get("static_mean", 0.0), quality=m.get("quality_mean", 0.0))
        say("feedback", "student judged from three views", pass_rate=f"{m['pass_rate']:.2f}",
            static_mean=f"{m.get('static_mean', 0):.2f}", judge_parsed=int(m.get("judge_parsed", 0)),
            quality_mean=f"{m.get('quality_mean', 0):.2f}")

        # evolve ------------------------------------------------------------------------------------
        reply = questions.Evolve(questions_pb2.EvolveRequest(
            run=run, pool_uri=pool_uri, feedback_uri=store.uri(f"{fb_prefix}/feedback.jsonl")))
        for s in reply.stats:
            say("evolve", f"level {s.level}", problems=s.problems, asked=s.asked, parsed=s.parsed, valid=s.valid,
                duplicate=s.duplicate, contaminated=s.contaminated, kept=s.kept)
        pool_key = store.resolve(reply.next_pool.uri)
        row["next_pool"] = len(store.get_jsonl(pool_key, Problem))

        # evaluate ------------------------------------------------------------------------------------
        ev = stage_prefix(RUN, cycle, "evaluate")
        he_samples = f"{ev}/solve/samples.jsonl"  # the evaluate stage's solve step
        if read_manifest(store, ev) is None and not store.exists(he_samples):
            trainer.Solve(common_pb2.SolveRequest(
                run=run, problems_uri=store.uri(eval_key), samples_uri=store.uri(he_samples),
                params=common_pb2.GenerationParams(n=1, max_new_tokens=160, temperature=0.0)))
        reply = feedback.Evaluate(feedback_pb2.EvaluateRequest(
            run=run, problems_uri=store.uri(eval_key), samples_uri=store.uri(he_samples), output_prefix=ev, k=[1]))
        row["humaneval_pass@1"] = reply.metrics["pass@1"]
        say("evaluate", f"student on {int(reply.metrics['problems'])} HumanEval problems",
            pass_at_1=f"{reply.metrics['pass@1']:.3f}")
        summary.append(row)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO / ".demo")
    parser.add_argument("--cycles", type=int, default=1)
    parser.add_argument("--fresh", action="store_true", help="delete the previous run's artifacts first")
    parser.add_argument("--pool-size", type=int, default=0, help="seed questions to use (0 = all)")
    parser.add_argument("--eval-size", type=int, default=16, help="HumanEval problems for the evaluate stage")
    parser.add_argument("--epochs", type=float, default=3, help="training epochs per cycle")
    parser.add_argument("--warmup-steps", type=int, default=60,
                        help="language-model steps on the stdlib when building the tiny models")
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.pool_size < 0 or args.eval_size < 1 or args.epochs <= 0 or args.warmup_steps < 0:
        parser.error("need --cycles >= 1, --pool-size >= 0, --eval-size >= 1, --epochs > 0, --warmup-steps >= 0")
    workdir = args.workdir.resolve()
    if args.fresh and (workdir / "store").exists():
        shutil.rmtree(workdir / "store")
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    teacher, student = build_models(workdir, args.warmup_steps)
    config, _ = write_config(workdir, teacher, student, args.epochs)
    with services(config, workdir) as targets:
        summary = run_cycles(targets, workdir / "store", args.cycles, args.pool_size, args.eval_size)
    print("\ncycle  teacher_pass  student_pass  static  quality  next_pool  humaneval_pass@1")
    for row in summary:
        print(f"{row['cycle']:>5}  {row['teacher_pass']:>12.2f}  {row['student_pass']:>12.2f}  {row['static']:>6.2f}"
              f"  {row['quality']:>7.2f}  {row['next_pool']:>9}  {row['humaneval_pass@1']:>16.3f}")
    print(f"\nartifacts: {workdir / 'store' / 'runs' / RUN}   ({time.monotonic() - t0:.0f}s)")
    print(json.dumps({"run": RUN, "cycles": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
