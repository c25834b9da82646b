"""The controller's cost: orchestration overhead per stage, and one cycle's wall time by pool size.

Part 1 (no work): the orchestrator drives runs whose stages do no work (an executor that writes
each stage's manifest at once), on the local store and on S3 (moto on 127.0.0.1). Its peer is
the least any controller must do: a bare loop writing the same manifests. Reported: seconds per
stage for both and the overhead per stage (target: under 0.5 s).

Part 2 (real work): `iterkd run` of one cycle on the tiny models at pool sizes 50, 100 and 200
(--quick: 8), the four services on 127.0.0.1. Reported: wall time, each stage's time, the stage
that dominates, and the time outside the stages (the services' start, the inputs, the report).

    python bench/bench_controller.py [--quick] [--skip-real]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from iterkd.controller.config import RunConfig, embedded_config
from iterkd.controller.executors.base import Executor, Handle, StageStatus
from iterkd.controller.orchestrator import Orchestrator
from iterkd.controller.planner import Step
from iterkd.controller.stagerun import Outcome
from iterkd.shared.stages import BY_NAME, STAGES, StageWriter, stage_prefix
from iterkd.shared.store import ArtifactStore, LocalStore

IKD = str(Path(sys.executable).with_name("iterkd"))


class NoWork(Executor):
    """Each stage 'runs' by writing its declared outputs (empty) and its manifest at once."""

    name = "no-work"

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    def submit(self, run_id: str, step: Step, run: RunConfig, attempt: int) -> Handle:
        write_stage(self.store, run_id, step)
        return Handle(run_id, step, attempt)

    def status(self, handle: Handle) -> StageStatus:
        return StageStatus(state="succeeded", outcome=Outcome(metrics={}, outputs={}, cached=False))

    def cancel(self, handle: Handle) -> None:
        return None


def write_stage(store: ArtifactStore, run_id: str, step: Step) -> None:
    with StageWriter(store, stage_prefix(run_id, step.cycle, step.stage), step.stage, run_id, step.cycle) as w:
        for name in BY_NAME[step.stage].outputs:
            if "." in name:
                w.put_bytes(name, b"")


def no_work(store: ArtifactStore, cycles: int, label: str) -> dict[str, float]:
    cfg = RunConfig.model_validate({"cycles": cycles, "pool": {"source": "seed", "limit": 4},
                                    "eval": {"source": "seed", "limit": 2}})
    stages = cycles * len(STAGES)
    orch = Orchestrator(store, NoWork(store), poll_s=0.01)
    orch.create(cfg, f"ctl-{label}")
    t0 = time.perf_counter()
    final = orch.drive(f"ctl-{label}")
    ours = (time.perf_counter() - t0) / stages
    assert final.state == "succeeded", final.message
    t0 = time.perf_counter()
    for c in range(1, cycles + 1):
        for s in STAGES:
            write_stage(store, f"bare-{label}", Step(c, s))
    bare = (time.perf_counter() - t0) / stages
    return {"stages": stages, "controller_s_per_stage": ours, "bare_s_per_stage": bare,
            "overhead_s_per_stage": ours - bare, "ratio": ours / bare if bare else float("nan")}


def s3_store() -> tuple[ArtifactStore, Any]:
    import logging

    from minio import Minio
    from moto.server import ThreadedMotoServer

    from iterkd.shared.store import S3Store

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = Minio(f"{host}:{port}", access_key="bench", secret_key="bench-secret", secure=False)
    return S3Store(client, "bench"), server


def real_cycle(pool: int, models: dict[str, Path], root: Path) -> dict[str, Any]:
    raw = embedded_config("seed", questions=pool, cycles=1, workdir=root, eval_size=8)
    raw["teacher"]["model"] = str(models["teacher"])
    raw["trainer"]["base_model"] = str(models["student"])
    raw["trainer"]["optim"]["epochs"] = 1
    cfg = root / "run.yaml"
    root.mkdir(parents=True, exist_ok=True)
    cfg.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "ITERKD_HOME": str(root)}
    t0 = time.perf_counter()
    proc = subprocess.run([IKD, "run", "--config", str(cfg), "--run-id", f"pool{pool}"], capture_output=True,
                          text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"pool {pool}: iterkd run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    st = json.loads(subprocess.run([IKD, "status", f"pool{pool}", "--config", str(cfg), "--json"],
                                   capture_output=True, text=True, env=env, check=True).stdout)
    stages = {s["name"]: s["duration_s"] for s in st["cycles"][0]["stages"]}
    top = max(stages, key=lambda s: stages[s])
    # What is not a stage: the services' start, the run's inputs, the report, the time between stages.
    outside = wall - sum(stages.values())
    return {"pool": pool, "wall_s": round(wall, 1), "stages_s": {k: round(v, 1) for k, v in stages.items()},
            "dominant": top, "dominant_share": round(stages[top] / sum(stages.values()), 3),
            "outside_stages_s": round(outside, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-real", action="store_true", help="only the no-work part")
    parser.add_argument("--pools", default="50,100,200", help="pool sizes of the real cycles")
    args = parser.parse_args(argv)
    cycles = 3 if args.quick else 10
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        result["no_work_local"] = no_work(LocalStore(Path(tmp) / "store"), cycles, "local")
        store, server = s3_store()
        try:
            result["no_work_s3"] = no_work(store, cycles, "s3")
        finally:
            server.stop()
        for where in ("local", "s3"):
            r = result[f"no_work_{where}"]
            print(f"no-work stages ({where} store): controller {r['controller_s_per_stage'] * 1000:.1f} ms/stage, "
                  f"bare manifests {r['bare_s_per_stage'] * 1000:.1f} ms/stage, overhead "
                  f"{r['overhead_s_per_stage'] * 1000:.1f} ms/stage ({r['ratio']:.1f}x the bare loop)")
        if not args.skip_real:
            from iterkd.teacher.tiny import build_tiny_model

            models = {"teacher": build_tiny_model(Path(tmp) / "teacher", preset="small", seed=0),
                      "student": build_tiny_model(Path(tmp) / "student", preset="small", seed=1)}
            result["real"] = []
            for pool in ([8] if args.quick else [int(x) for x in args.pools.split(",")]):
                r = real_cycle(pool, models, Path(tmp) / f"pool{pool}")
                result["real"].append(r)
                print(f"pool {pool:>3}: one cycle {r['wall_s']:.0f} s wall; stages {r['stages_s']}; dominant "
                      f"{r['dominant']} ({r['dominant_share'] * 100:.0f}%); outside the stages (services' start, "
                      f"inputs, report) {r['outside_stages_s']:.0f} s", flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
