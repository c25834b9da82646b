"""End to end through `iterkd run`: tiny models, the four real services on 127.0.0.1, whole cycles.

Each run is small (3 questions, a few tokens, 2 training steps) so the suite stays fast; the
behaviour under test is the controller's: stage order, resume after SIGKILL, cancel, a failing
stage, --from-stage, the local and the S3 store.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from iterkd.controller.config import embedded_config
from iterkd.shared.stages import NEXT_CYCLE_ONLY, STAGES, cycle_stages

IKD = str(Path(sys.executable).with_name("iterkd"))
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    from iterkd.teacher.tiny import build_tiny_model

    student = build_tiny_model(tmp_path_factory.mktemp("student") / "small", preset="small", seed=1)
    return {"teacher": tiny_model_dir, "student": student}


def fast_config(root: Path, models: dict[str, Path], cycles: int = 2, **run: Any) -> Path:
    raw = embedded_config("seed", questions=3, cycles=cycles, workdir=root, eval_size=2)
    raw["logging"]["level"] = "INFO"
    raw["teacher"]["model"] = str(models["teacher"])
    raw["trainer"]["base_model"] = str(models["student"])
    raw["trainer"]["optim"] = {"lr": 5e-3, "max_steps": 2, "batch_size": 4, "max_length": 1024,
                               "save_every_steps": 1}
    raw["feedback"]["judge"]["max_new_tokens"] = 8
    raw["questions"]["generation"].update({"max_new_tokens": 32, "solve_max_new_tokens": 24})
    stages = raw["run"]["stages"]
    stages["teacher-solve"].update({"n": 2, "max_new_tokens": 24})
    stages["student-solve"].update({"n": 1, "max_new_tokens": 24})
    stages["evaluate"].update({"max_new_tokens": 24})
    raw["run"].update(run)
    path = root / "run.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def ikd(*args: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ITERKD_HOME": str(home)}
    return subprocess.run([IKD, *args], capture_output=True, text=True, env=env, timeout=timeout)


def start(*args: str, home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "ITERKD_HOME": str(home)}
    return subprocess.Popen([IKD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def status(cfg: Path, run: str, home: Path) -> dict[str, Any]:
    out = ikd("status", run, "--config", str(cfg), "--json", home=home)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def events(root: Path, run: str) -> list[dict[str, Any]]:
    path = root / "store" / "runs" / run / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def wait_for_event(root: Path, run: str, pred: Any, proc: subprocess.Popen[str], timeout: float = 600) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(pred(e) for e in events(root, run)):
            return
        if proc.poll() is not None:
            raise AssertionError(f"iterkd run ended early: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    raise AssertionError("the awaited transition never came")


def service_pids(root: Path) -> list[int]:
    """Processes still running `iterkd serve` with this run's config."""
    needle = str(root / "services.yaml")
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if needle in cmd:
            found.append(p.pid)
    return found


def no_services_left(root: Path, within_s: float = 30) -> bool:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if not service_pids(root):
            return True
        time.sleep(0.2)
    return False


def artifacts(root: Path, run: str) -> dict[str, str]:
    """Every stage output's digest. Timings are measurements, not results: verdicts' duration_s and
    the manifests (timestamps, durations) are left out, and the store's own folder (in URIs such as
    a student sample's model id) reads as <store>; everything else must match byte for byte."""
    base = root / "store" / "runs" / run
    out = {}
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(base).as_posix()
        if not path.is_file() or not rel.startswith("cycle-") or "/_state/" in rel or rel.endswith("_manifest.json"):
            continue
        data = path.read_bytes()
        if not rel.endswith(".safetensors"):
            data = data.replace(str(root / "store").encode(), b"<store>")
        if rel.endswith(".jsonl"):
            rows = [json.loads(x) for x in data.decode().splitlines() if x.strip()]
            for r in rows:
                r.pop("duration_s", None)
            data = json.dumps(rows, sort_keys=True).encode()
        elif rel.endswith("training_config.json"):  # its fingerprint hashes inputs that carry timings
            obj = json.loads(data)
            obj.pop("fingerprint", None)
            data = json.dumps(obj, sort_keys=True).encode()
        elif rel.endswith("metrics.json"):  # the training log: step times and tokens/s are timings
            obj = json.loads(data)
            for s in obj.get("steps", []):
                for k in ("tokens_per_second", "eta_s", "step_time_s"):
                    s.pop(k, None)
            for k in list(obj.get("summary", {})):
                if "second" in k or k.endswith("_s"):
                    obj["summary"].pop(k)
            data = json.dumps(obj, sort_keys=True).encode()
        out[rel] = hashlib.sha256(data).hexdigest()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> dict[str, Any]:
    """One uninterrupted 2-cycle run: the reference the other runs are compared with."""
    root = tmp_path_factory.mktemp("reference")
    cfg = fast_config(root, models)
    t0 = time.monotonic()
    out = ikd("run", "--config", str(cfg), "--run-id", "e2e", home=root)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return {"root": root, "cfg": cfg, "stdout": out.stdout, "wall_s": time.monotonic() - t0}


def test_a_two_cycle_run_goes_through_every_stage_and_reports(reference: dict[str, Any]) -> None:
    root, cfg = reference["root"], reference["cfg"]
    lines = reference["stdout"].strip().splitlines()
    assert lines[0] == "e2e"  # the run id first ...
    report = Path(lines[-1])  # ... the report's path last
    assert report.name == "report.md" and report.exists()
    text = report.read_text()
    assert "| 2 | succeeded |" in text and "Learning curve" in text
    for png in ("pass_at_1.png", "pool.png", "training.png"):
        assert (report.parent / png).stat().st_size > 1000
    finished = [ln for ln in lines if ln.startswith("✓ cycle ") and " succeeded " in ln]
    assert len(finished) == 2 * len(STAGES) - len(NEXT_CYCLE_ONLY)  # one line per finished stage
    assert "The last cycle leaves out student-solve, feedback, evolve" in text

    st = status(cfg, "e2e", root)
    assert st["state"] == "succeeded" and st["progress"] == 1.0 and len(st["cycles"]) == 2
    for c in st["cycles"]:
        # The last cycle runs no student-solve, feedback or evolve: they would only prepare a cycle 3.
        assert [s["name"] for s in c["stages"]] == list(cycle_stages(c["cycle"], 2))
        assert all(s["state"] == "succeeded" and s["attempt"] == 1 for s in c["stages"])
        m = c["metrics"]
        assert 0 <= m["student_pass_at_1"] <= 1 and m["pool_size"] >= 1 and m["sft_loss"] > 0
        if c["cycle"] == 1:
            assert sum(m["levels"].values()) == m["pool_size"]
        else:
            assert m["levels"] is None and not (root / "store" / "runs" / "e2e" / "cycle-002" / "evolve").exists()
    # Cycle 2 answers the pool cycle 1 evolved, and trains from cycle 1's adapter.
    base = root / "store" / "runs" / "e2e"
    train2 = json.loads((base / "cycle-002" / "train" / "_manifest.json").read_text())
    assert train2["inputs"]["init"]["uri"].endswith("cycle-001/train/adapter")
    assert train2["inputs"]["problems"]["uri"].endswith("cycle-001/evolve/next_pool.jsonl")
    assert "replay" not in train2["inputs"]  # run.stages.train.replay is off
    # The story: one line per transition with run, cycle, stage, state, attempt.
    log = (root / "logs" / "controller-e2e.log").read_text().splitlines()
    done = [json.loads(x) for x in log if '"transition"' in x and '"succeeded"' in x]
    assert {(e["cycle"], e["stage"]) for e in done if e["stage"]} == {(c, s) for c in (1, 2)
                                                                      for s in cycle_stages(c, 2)}
    assert all("attempt" in e and "run" in e for e in done)
    assert no_services_left(root, within_s=5), "the services end with `iterkd run`"
    # Runs, logs and report work on the finished run.
    assert "e2e" in ikd("runs", "--config", str(cfg), home=root).stdout
    logs = ikd("logs", "e2e", "--config", str(cfg), "--stage", "train", home=root)
    assert logs.returncode == 0 and "cycle 2 train" in logs.stdout
    rep = ikd("report", "e2e", "--config", str(cfg), "--out", str(root / "rep2"), home=root)
    assert rep.returncode == 0 and rep.stdout.strip().endswith("report.md")


def test_sigkill_at_a_stage_boundary_then_resume_gives_identical_artifacts(
        reference: dict[str, Any], models: dict[str, Path], tmp_path: Path) -> None:
    cfg = fast_config(tmp_path, models)
    proc = start("run", "--config", str(cfg), "--run-id", "e2e", home=tmp_path)
    wait_for_event(tmp_path, "e2e", lambda e: e.get("stage") == "teacher-solve" and e.get("state") == "succeeded"
                   and e.get("cycle") == 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert no_services_left(tmp_path), "a kill -9 of `iterkd run` leaves no service behind"
    out = ikd("run", "--config", str(cfg), "--resume", "e2e", home=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert artifacts(tmp_path, "e2e") == artifacts(reference["root"], "e2e")
    st = status(cfg, "e2e", tmp_path)
    assert st["state"] == "succeeded"
    first = {s["name"]: s["attempt"] for s in st["cycles"][0]["stages"]}
    assert set(first.values()) == {1}  # nothing of cycle 1 was redone


def test_sigkill_in_the_middle_of_training_resumes_without_redoing_finished_stages(
        models: dict[str, Path], tmp_path: Path) -> None:
    cfg = fast_config(tmp_path, models, cycles=1)
    raw = yaml.safe_load(cfg.read_text())
    raw["trainer"]["optim"].update({"max_steps": 12, "save_every_steps": 2})
    cfg.write_text(yaml.safe_dump(raw))
    proc = start("run", "--config", str(cfg), "--run-id", "mid", home=tmp_path)
    wait_for_event(tmp_path, "mid", lambda e: e.get("stage") == "train" and e.get("state") == "running", proc)
    base = tmp_path / "store" / "runs" / "mid" / "cycle-001"
    end = time.monotonic() + 300
    while not (base / "train" / "_state" / "latest.json").exists() and time.monotonic() < end:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {s: (base / s / "_manifest.json").read_bytes() for s in ("teacher-solve", "verify")}
    assert not (base / "train" / "_manifest.json").exists()
    assert no_services_left(tmp_path)
    out = ikd("run", "--config", str(cfg), "--resume", "mid", home=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert {s: (base / s / "_manifest.json").read_bytes() for s in before} == before  # not redone
    train = json.loads((base / "train" / "_manifest.json").read_text())
    assert train["metrics"]["resumed_from"] >= 2  # training continued from its saved state
    st = status(cfg, "mid", tmp_path)
    stages = {s["name"]: s for s in st["cycles"][0]["stages"]}
    assert st["state"] == "succeeded" and stages["train"]["attempt"] == 2 and stages["verify"]["attempt"] == 1


def test_cancel_stops_the_current_stage_and_marks_the_run(models: dict[str, Path], tmp_path: Path) -> None:
    cfg = fast_config(tmp_path, models, cycles=1)
    raw = yaml.safe_load(cfg.read_text())
    raw["trainer"]["optim"].update({"max_steps": 500})  # long enough to be cancelled mid-way
    cfg.write_text(yaml.safe_dump(raw))
    proc = start("run", "--config", str(cfg), "--run-id", "stop", home=tmp_path)
    wait_for_event(tmp_path, "stop", lambda e: e.get("stage") == "train" and e.get("state") == "running", proc)
    time.sleep(1.0)
    t0 = time.monotonic()
    out = ikd("cancel", "stop", "--config", str(cfg), home=tmp_path)
    assert out.returncode == 0 and "cancel requested" in out.stdout, out.stdout + out.stderr
    assert proc.wait(timeout=120) == 1
    assert time.monotonic() - t0 < 90  # the call was cancelled, not waited out (500 steps take longer)
    st = status(cfg, "stop", tmp_path)
    stages = {s["name"]: s for s in st["cycles"][0]["stages"]}
    assert st["state"] == "cancelled" and stages["train"]["state"] == "cancelled"
    assert stages["verify"]["state"] == "succeeded" and stages["evaluate"]["state"] == "pending"
    assert not (tmp_path / "store" / "runs" / "stop" / "cycle-001" / "train" / "_manifest.json").exists()
    assert no_services_left(tmp_path)


def test_a_failing_stage_records_its_cause_and_from_stage_reruns(
        reference: dict[str, Any], models: dict[str, Path], tmp_path: Path) -> None:
    cfg = fast_config(tmp_path, models, cycles=1)
    raw = yaml.safe_load(cfg.read_text())
    raw["run"]["stages"]["train"] = {"config": {"loss": {"loss_type": "nope"}}}
    cfg.write_text(yaml.safe_dump(raw))
    out = ikd("run", "--config", str(cfg), "--run-id", "bad", home=tmp_path)
    assert out.returncode == 1
    st = status(cfg, "bad", tmp_path)
    train = next(s for s in st["cycles"][0]["stages"] if s["name"] == "train")
    assert st["state"] == "failed" and train["state"] == "failed"
    assert "INVALID_ARGUMENT" in train["message"] and "loss.loss_type" in train["message"]
    assert train["attempt"] == 1  # not retried: a bad request stays bad

    # --from-stage on the finished reference run: later outputs are set aside, not reused.
    ref_root, ref_cfg = reference["root"], reference["cfg"]
    before = (ref_root / "store" / "runs" / "e2e" / "cycle-002" / "evaluate" / "_manifest.json").read_bytes()
    out = ikd("run", "--config", str(ref_cfg), "--resume", "e2e", "--from-stage", "evolve", "--cycle", "2",
              home=ref_root)  # a stage the last cycle does not run: refused before anything moves
    assert out.returncode == 2 and "cycle 2 of run e2e does not run evolve" in out.stderr
    assert not (ref_root / "store" / "runs" / "e2e" / "set-aside").exists()
    out = ikd("run", "--config", str(ref_cfg), "--resume", "e2e", "--from-stage", "train", "--cycle", "2",
              home=ref_root)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    aside = list((ref_root / "store" / "runs" / "e2e" / "set-aside").glob("*/cycle-002/evaluate/_manifest.json"))
    assert len(aside) == 1 and aside[0].read_bytes() == before
    st = status(ref_cfg, "e2e", ref_root)
    c2 = {s["name"]: s for s in st["cycles"][1]["stages"]}
    assert c2["train"]["attempt"] == 2 and c2["evaluate"]["attempt"] == 2 and c2["verify"]["attempt"] == 1


def test_a_two_cycle_run_on_the_s3_store(models: dict[str, Path], tmp_path: Path, s3_endpoint: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIO_ACCESS_KEY", "testing-access")
    monkeypatch.setenv("MINIO_SECRET_KEY", "testing-secret")
    cfg = fast_config(tmp_path, models)
    raw = yaml.safe_load(cfg.read_text())
    raw["store"] = {"backend": "s3", "endpoint": s3_endpoint, "bucket": "ikd-e2e", "secure": False}
    raw["run"]["stages"].setdefault("train", {})["replay"] = True
    cfg.write_text(yaml.safe_dump(raw))
    out = ikd("run", "--config", str(cfg), "--run-id", "s3run", home=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    st = status(cfg, "s3run", tmp_path)
    assert st["state"] == "succeeded" and st["progress"] == 1.0
    assert st["cycles"][1]["metrics"]["pool_size"] >= 1
    from iterkd.shared.config import StoreConfig
    from iterkd.shared.store import open_store

    store = open_store(StoreConfig(**raw["store"]))
    keys = store.list("runs/s3run")
    assert "runs/s3run/cycle-002/train/adapter/adapter_model.safetensors" in keys
    assert all(f"runs/s3run/cycle-00{c}/{s}/_manifest.json" in keys for c in (1, 2) for s in cycle_stages(c, 2))
    train2 = store.get_json("runs/s3run/cycle-002/train/_manifest.json")  # replay: cycle 1's set joins cycle 2's
    assert train2["inputs"]["replay"]["uri"].endswith("runs/s3run/cycle-001/train/train_set.jsonl")


def test_the_controller_service_starts_watches_and_cancels_runs(models: dict[str, Path], tmp_path: Path) -> None:
    """`iterkd serve controller` over real gRPC: StartRun, WatchRun to the end, GetRun, ListRuns,
    and CancelRun of a run in training."""
    import grpc

    from iterkd.shared.rpc import connect
    from iterkd.v1 import controller_pb2, controller_pb2_grpc

    cfg = fast_config(tmp_path, models, cycles=1)
    env = {**os.environ, "ITERKD_HOME": str(tmp_path)}
    server = subprocess.Popen([IKD, "serve", "controller", "--config", str(cfg), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=open(tmp_path / "controller.log", "w"),  # noqa: SIM115
                              text=True, env=env)
    try:
        line = server.stdout.readline() if server.stdout else ""
        assert line, (tmp_path / "controller.log").read_text()[-3000:]
        channel, stub = connect(json.loads(line)["serving"], controller_pb2_grpc.ControllerServiceStub,
                                timeout=60, wait_ready_s=30)
        run_yaml = yaml.safe_dump(yaml.safe_load(cfg.read_text())["run"])
        started = stub.StartRun(controller_pb2.StartRunRequest(run_id="svc", config_yaml=run_yaml))
        assert started.run_id == "svc" and started.cycles == 1
        seen = list(stub.WatchRun(controller_pb2.WatchRunRequest(run_id="svc"), timeout=600))
        assert seen[-1].state == "succeeded" and seen[-1].stage == ""
        assert [e.stage for e in seen if e.state == "succeeded" and e.stage] == list(cycle_stages(1, 1))
        assert all(a.progress <= b.progress for a, b in itertools.pairwise(seen))  # progress never goes back
        got = stub.GetRun(controller_pb2.GetRunRequest(run_id="svc"))
        assert got.state == "succeeded" and got.progress == 1.0
        assert got.cycle_status[0].metrics.HasField("student_pass_at_1") and got.cycle_status[0].metrics.pool_size
        assert [r.run_id for r in stub.ListRuns(controller_pb2.ListRunsRequest()).runs] == ["svc"]

        with pytest.raises(grpc.RpcError) as err:
            stub.StartRun(controller_pb2.StartRunRequest(run_id="svc2", config_yaml="cycles: 0\n"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "cycles" in err.value.details()

        long_run = yaml.safe_load(run_yaml)
        long_run["stages"]["train"] = {"config": {"optim": {"max_steps": 500}}}
        stub.StartRun(controller_pb2.StartRunRequest(run_id="long", config_yaml=yaml.safe_dump(long_run)))
        for e in stub.WatchRun(controller_pb2.WatchRunRequest(run_id="long"), timeout=600):
            if e.stage == "train" and e.state == "running":
                break
        cancelled = stub.CancelRun(controller_pb2.CancelRunRequest(run_id="long"), timeout=120)
        assert cancelled.state == "cancelled"
        channel.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert no_services_left(tmp_path)


def test_the_miniature_default_runs_through_every_stage(tmp_path: Path) -> None:
    """`make demo`'s configuration (the miniature world: its pool and held-out set, the judge off,
    λ = 0, replay, the base student scored first) on the quick models, smaller in size only: both
    cycles run on the world's pool and held-out set, the baseline is cycle 0 in the status and the
    report, no judge is called, and the services get the demo's settings."""
    from iterkd.controller.config import miniature_files
    from iterkd.shared.formats import write_jsonl
    from iterkd.shared.miniature.world import export_split
    from iterkd.teacher.miniature import build_miniature

    home = tmp_path / "home"
    files = miniature_files(home)
    build_miniature(home / "miniature", preset="quick", seed=0)
    write_jsonl(files["heldout"], export_split("heldout", 4, seed=10000, depths=(2,)))
    raw = embedded_config(questions=6, eval_size=4, workdir=home)
    raw["questions"]["generation"].update({"max_new_tokens": 48, "solve_max_new_tokens": 32})
    for stage in ("teacher-solve", "student-solve", "evaluate"):
        raw["run"]["stages"][stage]["max_new_tokens"] = 32
    raw["run"]["stages"]["train"]["config"]["optim"]["max_steps"] = 2
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = ikd("run", "--config", str(cfg), "--run-id", "mini", home=home)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    st = status(cfg, "mini", home)
    assert st["state"] == "succeeded" and [c["cycle"] for c in st["cycles"]] == [1, 2]
    run = home / "store" / "runs" / "mini"
    # The baseline: cycle 1's evaluate also scored the base student, shown as cycle 0.
    base = run / "cycle-001" / "evaluate" / "base"
    base_samples = [json.loads(x) for x in (base / "solve" / "samples.jsonl").read_text().splitlines()]
    assert len(base_samples) == 4 and {r["model"] for r in base_samples} == {str(files["student"])}
    manifest = json.loads((base / "_manifest.json").read_text())
    assert st["baseline_pass_at_1"] == manifest["metrics"]["pass@1"]
    assert (manifest["stage"], manifest["step"]) == ("evaluate", "base")
    solve_manifest = json.loads((base / "solve" / "_manifest.json").read_text())
    assert (solve_manifest["stage"], solve_manifest["step"]) == ("evaluate", "base/solve")
    table = ikd("status", "mini", "--config", str(cfg), home=home)
    assert table.returncode == 0 and " 0 │ base " in table.stdout, table.stdout
    report = (home / "reports" / "mini" / "report.md").read_text()
    assert "| 0 | base student |" in report
    rows = [json.loads(x) for x in (run / "cycle-001" / "feedback" / "feedback.jsonl").read_text().splitlines()]
    assert rows and all(r["judge"] is None for r in rows)
    feedback = json.loads((run / "cycle-001" / "feedback" / "_manifest.json").read_text())
    assert feedback["config"]["run_judge"] is False  # the quick teacher parses no verdict either way
    for name, prefix in (("pool", "mini/seed/"), ("eval", "mini/heldout/")):
        problems = [json.loads(x) for x in (run / "inputs" / f"{name}.jsonl").read_text().splitlines()]
        assert problems and all(p["id"].startswith(prefix) for p in problems), name
    train2 = json.loads((run / "cycle-002" / "train" / "_manifest.json").read_text())
    assert "replay" in train2["inputs"]
    # The quick models write noise, so nothing trains here; the services got the demo's settings.
    services = yaml.safe_load((home / "services.yaml").read_text())
    assert services["trainer"]["loss"]["lambda"] == 0.0 and services["feedback"]["judge"]["enabled"] is False
    assert services["questions"]["decontamination"]["extra_sets"] == [str(files["heldout"])]
