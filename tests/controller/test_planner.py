"""The planner decides from manifests alone; --from-stage sets finished work aside, never reuses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from iterkd.controller.config import RunConfig
from iterkd.controller.executors.local import LocalExecutor
from iterkd.controller.orchestrator import Orchestrator, parse_step
from iterkd.controller.planner import Step, all_steps, next_step, pool_key, stage_inputs
from iterkd.controller.runs import RunStore
from iterkd.shared.stages import CYCLE, NEXT_CYCLE_ONLY, STAGES, StageWriter, cycle_stages, stage_prefix
from iterkd.shared.store import LocalStore


def finish(store: LocalStore, run: str, cycle: int, stage: str, outputs: dict[str, bytes] | None = None) -> None:
    with StageWriter(store, stage_prefix(run, cycle, stage), stage, run, cycle) as w:
        for name, data in (outputs or {"out.jsonl": b"{}\n"}).items():
            w.put_bytes(name, data)


def test_next_step_is_the_first_stage_without_a_manifest(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    steps = all_steps(2, evolve_last_cycle=True)
    assert next_step(store, "r", steps) == Step(1, "teacher-solve")
    for stage in STAGES:
        finish(store, "r", 1, stage)
    finish(store, "r", 2, "teacher-solve")
    assert next_step(store, "r", steps) == Step(2, "verify")
    store.put_bytes(f"{stage_prefix('r', 2, 'verify')}/verdicts.jsonl", b"")  # outputs without a manifest
    assert next_step(store, "r", steps) == Step(2, "verify")  # ... are not a finished stage
    for stage in STAGES[1:]:
        finish(store, "r", 2, stage)
    assert next_step(store, "r", steps) is None


def test_the_last_cycle_leaves_out_what_only_a_next_cycle_reads(tmp_path: Path) -> None:
    """By default the last cycle runs teacher-solve, verify, train and evaluate: the judge calls and the
    new questions of student-solve/feedback/evolve would feed a cycle that never comes."""
    assert cycle_stages(1, 2) == STAGES
    assert cycle_stages(2, 2) == ("teacher-solve", "verify", "train", "evaluate")
    assert cycle_stages(2, 2, evolve_last_cycle=True) == STAGES
    # The claim behind it: within a cycle, nothing outside those three reads their outputs.
    for st in CYCLE:
        if st.name not in NEXT_CYCLE_ONLY:
            assert not {i.stage for i in st.inputs.values() if not i.previous} & set(NEXT_CYCLE_ONLY), st.name
    store = LocalStore(tmp_path)
    steps = all_steps(2)
    assert len(steps) == 2 * len(STAGES) - 3
    for step in steps[:-1]:
        finish(store, "r", step.cycle, step.stage)
    assert next_step(store, "r", steps) == Step(2, "evaluate")
    finish(store, "r", 2, "evaluate")
    assert next_step(store, "r", steps) is None  # done without cycle 2's evolve

    orch = Orchestrator(store, LocalExecutor(store, {}))
    cfg = RunConfig.model_validate({"cycles": 2, "pool": {"source": "seed", "limit": 2},
                                    "eval": {"source": "seed", "limit": 1}})
    record = orch.create(cfg, "lean")
    assert record.steps == steps and record.total == 11
    with pytest.raises(ValueError, match="cycle 2 of run lean does not run evolve"):
        parse_step("evolve", 2, record)
    assert parse_step("evolve", None, record) == Step(1, "evolve")  # the first cycle where it is not done
    full = orch.create(cfg.model_copy(update={"evolve_last_cycle": True}), "full")
    assert full.steps == all_steps(2, evolve_last_cycle=True) and full.total == 14


def test_inputs_follow_the_cycle_the_pool_and_the_last_checkpoint(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert pool_key("r", 1) == "runs/r/inputs/pool.jsonl"
    assert pool_key("r", 2) == "runs/r/cycle-001/evolve/next_pool.jsonl"
    train1 = stage_inputs(store, "r", Step(1, "train"))
    assert train1 == {"problems": "runs/r/inputs/pool.jsonl", "samples": "runs/r/cycle-001/teacher-solve/samples.jsonl",
                      "verdicts": "runs/r/cycle-001/verify/verdicts.jsonl"}  # no checkpoint before cycle 1
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "adapter_model.safetensors").write_bytes(b"w")
    with StageWriter(store, stage_prefix("r", 1, "train"), "train", "r", 1) as w:
        w.put_dir("adapter", tmp_path / "ckpt")
    train2 = stage_inputs(store, "r", Step(2, "train"))
    assert train2["init"] == "runs/r/cycle-001/train/adapter"
    assert train2["replay"] == "runs/r/cycle-001/train/train_set.jsonl"  # every earlier example, when replaying
    assert stage_inputs(store, "r", Step(1, "student-solve"))["checkpoint"] == "runs/r/cycle-001/train/adapter"
    assert stage_inputs(store, "r", Step(2, "evaluate")) == {
        "problems": "runs/r/inputs/eval.jsonl", "samples": "runs/r/cycle-002/evaluate/solve/samples.jsonl"}


def test_from_stage_sets_later_outputs_aside_and_progress_counts_them_again(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    orch = Orchestrator(store, LocalExecutor(store, {}))
    cfg = RunConfig.model_validate({"cycles": 2, "pool": {"source": "seed", "limit": 2},
                                    "eval": {"source": "seed", "limit": 1}, "evolve_last_cycle": True})
    record = orch.create(cfg, "r")
    assert store.exists("runs/r/inputs/pool.jsonl") and record.progress == 0
    for cycle in (1, 2):
        for stage in STAGES:
            finish(store, "r", cycle, stage, {"out.jsonl": f"{cycle}-{stage}".encode()})
    orch.reconcile(record)
    RunStore(store).save(record)
    assert record.progress == 1.0

    moved = orch.rerun_from("r", Step(2, "feedback"))
    assert moved == [stage_prefix("r", 2, s) for s in ("feedback", "evolve", "evaluate")]
    assert next_step(store, "r", record.steps) == Step(2, "feedback")
    aside = [k for k in store.list("runs/r/set-aside")]
    assert sorted(k.split("/", 4)[-1] for k in aside if k.endswith("out.jsonl")) == [
        "cycle-002/evaluate/out.jsonl", "cycle-002/evolve/out.jsonl", "cycle-002/feedback/out.jsonl"]
    again = RunStore(store).load("r")
    assert again.state == "pending" and again.progress == 11 / 14
    assert again.record(2, "feedback").state == "pending" and again.record(2, "student-solve").state == "succeeded"
    events = RunStore(store).events("r")
    assert events[-1]["message"] == "set aside 3 finished stage(s)"


def test_a_run_can_start_on_the_miniature_world(tmp_path: Path) -> None:
    """pool/eval sources `miniature:SPLIT` export the world's split, deterministic for the set's seed."""
    from iterkd.controller.config import ProblemSet
    from iterkd.controller.inputs import load_problem_set
    from iterkd.shared.config import ConfigError

    pool = load_problem_set(ProblemSet(source="miniature:seed", limit=5, seed=3), "run.pool")
    again = load_problem_set(ProblemSet(source="miniature:seed", limit=5, seed=3), "run.pool")
    assert [p.id for p in pool] == [p.id for p in again] and len(pool) == 5
    assert all(p.id.startswith("mini/seed/") and p.canonical_solution for p in pool)
    held = load_problem_set(ProblemSet(source="miniature:heldout", limit=5), "run.eval")
    assert not {p.id.split("/")[2] for p in held} & {p.id.split("/")[2] for p in pool}
    two = load_problem_set(ProblemSet(source="miniature:heldout:2", limit=6), "run.eval")
    assert {p.level for p in two} == {"depth-2"} and {p.level for p in held} == {"depth-2", "depth-3"}
    for source, message in (("miniature:nope", "run.pool.source: unknown miniature split 'nope'"),
                            ("miniature:seed:4", "expected miniature:SPLIT or miniature:SPLIT:DEPTHS"),
                            ("miniature:seed:x", "expected miniature:SPLIT or miniature:SPLIT:DEPTHS")):
        with pytest.raises(ConfigError) as err:
            load_problem_set(ProblemSet(source=source), "run.pool")
        assert message in str(err.value)


def test_seed_pools_in_every_language() -> None:
    from iterkd.controller.config import ProblemSet
    from iterkd.controller.inputs import LANGUAGES, load_problem_set

    everything = load_problem_set(ProblemSet(source="seed:all"), "run.pool")
    assert {p.language for p in everything} == set(LANGUAGES)
    go = load_problem_set(ProblemSet(source="seed:go"), "run.pool")
    assert go and {p.language for p in go} == {"go"}
    assert {p.language for p in load_problem_set(ProblemSet(source="seed"), "run.pool")} == {"python"}


def test_a_dead_controller_on_this_host_is_known_at_once(tmp_path: Path) -> None:
    """--resume and cancel ask whether a controller drives a run: a fresh heartbeat of a process that
    no longer exists (a kill -9) does not count; one of a live process does."""
    import os
    import socket
    import subprocess
    import sys
    import time

    from iterkd.controller.orchestrator import controller_alive

    store = LocalStore(tmp_path)
    key = RunStore.key("r", "controller.json")
    assert not controller_alive(store, "r")  # no heartbeat
    store.put_json(key, {"host": socket.gethostname(), "pid": os.getpid(), "t": time.time()})
    assert controller_alive(store, "r")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.put_json(key, {"host": socket.gethostname(), "pid": dead.pid, "t": time.time()})
    assert not controller_alive(store, "r")
    store.put_json(key, {"host": "elsewhere", "pid": dead.pid, "t": time.time()})
    assert controller_alive(store, "r")  # another host's controller: its heartbeat decides
    store.put_json(key, {"host": "elsewhere", "pid": 1, "t": time.time() - 60})
    assert not controller_alive(store, "r")
