"""The real gRPC TrainerService on 127.0.0.1: Train streams, caches, Generate/Solve serve the student."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from iterkd.shared.cli import ServeOptions
from iterkd.shared.formats import Problem, Sample, TrainingExample
from iterkd.shared.rpc import connect
from iterkd.shared.store import LocalStore
from iterkd.trainer.server import build_server
from iterkd.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc


@pytest.fixture
def served(tmp_path: Path, fast_cfg: dict[str, Any]) -> Iterator[tuple[Any, LocalStore]]:
    cfg_path = tmp_path / "trainer.yaml"
    trainer = {**fast_cfg, "optim": {**fast_cfg["optim"], "max_steps": 3}}
    cfg_path.write_text(yaml.safe_dump({"store": {"root": "store"}, "trainer": trainer,
                                        "logging": {"level": "WARNING"}}))
    server = build_server(ServeOptions(config=str(cfg_path), port=0))
    server.start()
    channel, stub = connect(server.target, trainer_pb2_grpc.TrainerServiceStub, timeout=120, wait_ready_s=10)
    try:
        yield stub, LocalStore(tmp_path / "store")
    finally:
        channel.close()
        server.stop(0)


def train_cycle(stub: Any, store: LocalStore, run_id: str, cycle: int, answers: dict[str, tuple[str, bool]],
                replay_uri: str = "") -> tuple[trainer_pb2.TrainProgress, dict[str, str]]:
    """Train one cycle on one answer per problem (``{problem id: (completion, passed)}``): the last
    progress record and the uris of the problems, samples and verdicts it was given."""
    from iterkd.shared.formats import Verdict

    problems = [Problem(id=pid, prompt=f"def {pid}(a, b):\n", entry_point=pid, tests="") for pid in answers]
    samples = [Sample(problem_id=pid, sample_id=f"{pid}#0", completion=body) for pid, (body, _) in answers.items()]
    verdicts = [Verdict(sample_id=f"{pid}#0", problem_id=pid, passed=ok, result="passed" if ok else "failed: x")
                for pid, (_, ok) in answers.items()]
    uris = {name: store.put_jsonl(f"{run_id}-{cycle}/{name}.jsonl", rows).uri
            for name, rows in (("problems", problems), ("samples", samples), ("verdicts", verdicts))}
    req = trainer_pb2.TrainRequest(run=common_pb2.RunCycle(run_id=run_id, cycle=cycle), problems_uri=uris["problems"],
                                   samples_uri=uris["samples"], verdicts_uri=uris["verdicts"], replay_uri=replay_uri)
    return list(stub.Train(req))[-1], uris


def test_train_streams_caches_and_serves_the_student(
    served: tuple[Any, LocalStore], train_examples: list[TrainingExample], tiny_model_dir: Path) -> None:
    stub, store = served
    context = json.loads((tiny_model_dir / "config.json").read_text())["max_position_embeddings"]
    uri = store.put_jsonl("sets/train.jsonl", train_examples).uri
    req = trainer_pb2.TrainRequest(run=common_pb2.RunCycle(run_id="svc", cycle=0), train_set_uri=uri)
    records = list(stub.Train(req))
    states = [r.state for r in records]
    assert states[0] == "queued" and "loading" in states and states[-1] == "done"
    steps = [r for r in records if r.state == "training"]
    assert [r.step for r in steps] == [1, 2, 3] and all(r.total_steps == 3 for r in steps)
    assert all(r.tokens_per_second > 0 and r.sft_loss > 0 and r.learning_rate >= 0 for r in steps)
    assert any(r.contrastive_loss > 0 for r in steps) and steps[-1].eta_s == 0
    done = records[-1]
    assert not done.cached and done.checkpoint.uri.endswith("runs/svc/cycle-000/train/adapter")

    again = list(stub.Train(req))
    assert len(again) == 1 and again[0].cached and again[0].checkpoint.uri == done.checkpoint.uri

    info = stub.Info(common_pb2.InfoRequest())
    assert info.backend == "student" and info.adapter == done.checkpoint.uri and info.context_length == context
    reply = stub.Generate(common_pb2.GenerateRequest(
        prompts=[common_pb2.Prompt(id="q1", text="def add(a, b):")],
        params=common_pb2.GenerationParams(n=2, max_new_tokens=8, temperature=0.8, seed=3)))
    assert [(c.prompt_id, c.index) for c in reply.completions] == [("q1", 0), ("q1", 1)]
    assert all(0 < c.completion_tokens <= 8 for c in reply.completions)

    store.put_jsonl("sets/problems.jsonl", [Problem(id="p1", prompt="def add(a, b):\n", entry_point="add",
                                                     tests="assert add(1, 2) == 3")])
    solved = stub.Solve(common_pb2.SolveRequest(
        run=common_pb2.RunCycle(run_id="svc", cycle=0), problems_uri="sets/problems.jsonl",
        samples_uri="runs/svc/cycle-000/student-solve/samples.jsonl",
        params=common_pb2.GenerationParams(n=2, max_new_tokens=6)))
    assert solved.problems == 1 and solved.samples_written == 2
    rows = store.get_jsonl("runs/svc/cycle-000/student-solve/samples.jsonl", Sample)
    assert [r.sample_id for r in rows] == ["p1#0", "p1#1"]
    solve_manifest = json.loads(store.local_path("runs/svc/cycle-000/student-solve/_manifest.json").read_text())
    assert solve_manifest["inputs"]["checkpoint"]["uri"] == done.checkpoint.uri  # the student it served

    base = stub.LoadStudent(trainer_pb2.LoadStudentRequest())
    assert base.adapter == ""
    back = stub.LoadStudent(trainer_pb2.LoadStudentRequest(checkpoint_uri=done.checkpoint.uri))
    assert back.adapter == done.checkpoint.uri


@pytest.mark.parametrize(("fields", "message"), [
    ({"run": {"run_id": "Bad_Id", "cycle": 0}, "train_set_uri": "sets/train.jsonl"}, "invalid run id"),
    ({"run": {"run_id": "ok", "cycle": -1}, "train_set_uri": "sets/train.jsonl"}, "cycle"),
    ({"run": {"run_id": "ok", "cycle": 0}}, "nothing to learn from"),
    ({"run": {"run_id": "ok", "cycle": 0}, "train_set_uri": "file:///etc/passwd"}, "outside the local store"),
    ({"run": {"run_id": "ok", "cycle": 0}, "train_set_uri": "sets/missing.jsonl"}, "no training set"),
    ({"run": {"run_id": "ok", "cycle": 0}, "train_set_uri": "sets/empty.jsonl"}, "training set is empty"),
    ({"run": {"run_id": "ok", "cycle": 0}, "train_set_uri": "sets/train.jsonl",
      "config_json": '{"loss": {"loss_type": "nope"}}'}, "loss.loss_type"),
    ({"run": {"run_id": "ok", "cycle": 0}, "train_set_uri": "sets/train.jsonl", "config_json": "[1]"},
     "expected a JSON object"),
    ({"run": {"run_id": "ok", "cycle": 0}, "train_set_uri": "sets/train.jsonl",
      "config_json": '{"base_model": "/etc"}'}, "base_model cannot be overridden per request"),
])
def test_bad_train_requests_are_invalid_argument(
    served: tuple[Any, LocalStore], train_examples: list[TrainingExample], fields: dict[str, Any],
    message: str) -> None:
    stub, store = served
    store.put_jsonl("sets/train.jsonl", train_examples)
    store.put_bytes("sets/empty.jsonl", b"")
    req = trainer_pb2.TrainRequest(
        run=common_pb2.RunCycle(**fields["run"]), train_set_uri=fields.get("train_set_uri", ""),
        config_json=fields.get("config_json", ""))
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Train(req))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()


def test_bad_generate_requests_are_invalid_argument(served: tuple[Any, LocalStore]) -> None:
    stub, _ = served
    for params, message in [({"n": 1, "max_new_tokens": 0}, "max_new_tokens must be > 0"),
                            ({"max_new_tokens": 4, "n": 99}, "params.n"),
                            ({"n": 1, "max_new_tokens": 4, "temperature": -1}, "temperature")]:
        with pytest.raises(grpc.RpcError) as info:
            stub.Generate(common_pb2.GenerateRequest(prompts=[common_pb2.Prompt(id="a", text="x")],
                                                     params=common_pb2.GenerationParams(**params)))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in info.value.details()


def test_train_builds_its_training_set_from_verified_answers_inside_the_stage(
        served: tuple[Any, LocalStore]) -> None:
    """The train stage reads problems, samples and verdicts itself: the training set is one of its
    outputs, its manifest records each input's hash, and a rerun on other verdicts is refused."""
    from iterkd.shared.formats import Verdict
    from iterkd.shared.stages import MANIFEST, artifact_sha256

    stub, store = served
    problems = [Problem(id=f"p{i}", prompt=f"def f{i}(a, b):\n    \"\"\"Add a and b.\"\"\"\n", entry_point=f"f{i}",
                        tests="") for i in range(3)]
    samples = [Sample(problem_id=p.id, sample_id=f"{p.id}#{j}", completion=body)
               for p in problems for j, body in enumerate(["    return a + b\n", "    return a - b\n"])]
    verdicts = [Verdict(sample_id=s.sample_id, problem_id=s.problem_id, passed=s.sample_id.endswith("#0"),
                        result="passed" if s.sample_id.endswith("#0") else "failed: AssertionError")
                for s in samples]
    uris = {name: store.put_jsonl(f"in/{name}.jsonl", rows).uri
            for name, rows in (("problems", problems), ("samples", samples), ("verdicts", verdicts))}
    req = trainer_pb2.TrainRequest(run=common_pb2.RunCycle(run_id="built", cycle=0), problems_uri=uris["problems"],
                                   samples_uri=uris["samples"], verdicts_uri=uris["verdicts"])
    records = list(stub.Train(req))
    assert records[-1].state == "done" and not records[-1].cached
    prefix = "runs/built/cycle-000/train"
    train_set = store.get_jsonl(f"{prefix}/train_set.jsonl", TrainingExample)
    assert [(t.problem_id, t.chosen, t.rejected) for t in train_set] == [
        (p.id, "    return a + b\n", ["    return a - b\n"]) for p in problems]
    manifest = store.get_json(f"{prefix}/{MANIFEST}")
    assert {k: v["sha256"] for k, v in manifest["inputs"].items()} == {
        name: artifact_sha256(store, f"in/{name}.jsonl") for name in uris}
    assert manifest["metrics"]["data_contrastive_pairs"] == 3 and manifest["config"]["base_model"]

    assert list(stub.Train(req))[-1].cached  # the same request: the stored result
    store.put_jsonl("in/verdicts.jsonl", [v.model_copy(update={"passed": True}) for v in verdicts])
    with pytest.raises(grpc.RpcError) as info:  # other verdicts under the same key: refused, not stale
        list(stub.Train(req))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "input verdicts" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Train(trainer_pb2.TrainRequest(run=common_pb2.RunCycle(run_id="x", cycle=0),
                                                 problems_uri=uris["problems"], samples_uri=uris["samples"])))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "verdicts_uri missing" in info.value.details()


def test_a_missing_gpu_is_failed_precondition(tmp_path: Path, fast_cfg: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    cfg_path = tmp_path / "trainer.yaml"
    cfg_path.write_text(yaml.safe_dump({"store": {"root": "store"}, "trainer": {**fast_cfg, "device": "cuda"},
                                        "logging": {"level": "WARNING"}}))
    server = build_server(ServeOptions(config=str(cfg_path), port=0))
    server.start()
    channel, stub = connect(server.target, trainer_pb2_grpc.TrainerServiceStub, timeout=60, wait_ready_s=10)
    try:
        with pytest.raises(grpc.RpcError) as info:
            stub.Info(common_pb2.InfoRequest())
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "trainer.device" in info.value.details() and "no CUDA device" in info.value.details()
    finally:
        channel.close()
        server.stop(0)


def test_a_cycle_where_no_answer_passed_keeps_the_student(served: tuple[Any, LocalStore]) -> None:
    """Nothing to learn is not an error: the stage is done without training; its checkpoint is the
    one it started from (none in a first cycle: the base model is served)."""
    from iterkd.shared.stages import MANIFEST, checkpoint_entry, read_manifest

    stub, store = served
    done, uris = train_cycle(stub, store, "none", 1, {"p0": ("    return a - b\n", False)})
    assert done.state == "done" and "unchanged" in done.message and not done.checkpoint.uri
    manifest = read_manifest(store, "runs/none/cycle-001/train")
    assert manifest is not None and checkpoint_entry(manifest) is None and manifest.metrics["steps"] == 0
    assert store.get_bytes(f"runs/none/cycle-001/train/{MANIFEST}")
    solved = stub.Solve(common_pb2.SolveRequest(
        run=common_pb2.RunCycle(run_id="none", cycle=1), problems_uri=uris["problems"],
        samples_uri=store.uri("runs/none/cycle-001/student-solve/samples.jsonl"),
        params=common_pb2.GenerationParams(n=1, max_new_tokens=4)))
    assert solved.samples_written == 1
    assert stub.Info(common_pb2.InfoRequest()).adapter == ""  # the base model answered


def test_replay_trains_each_cycle_on_every_earlier_passing_answer_too(served: tuple[Any, LocalStore]) -> None:
    """With replay_uri (the cycle before's train_set.jsonl) a cycle's training set is its own
    examples plus the earlier ones it does not repeat, stored as its own train_set.jsonl, so the
    chain holds every cycle's; a cycle where nothing new passed still trains on the replayed ones."""
    from iterkd.shared.stages import read_manifest

    stub, store = served

    def cycle(k: int, answers: dict[str, tuple[str, bool]], replay: bool) -> trainer_pb2.TrainProgress:
        replay_uri = store.uri(f"runs/replay/cycle-{k - 1:03d}/train/train_set.jsonl") if replay else ""
        return train_cycle(stub, store, "replay", k, answers, replay_uri)[0]

    def train_set(k: int) -> list[tuple[str, str]]:
        rows = store.get_jsonl(f"runs/replay/cycle-{k:03d}/train/train_set.jsonl", TrainingExample)
        return [(t.problem_id, t.chosen or "") for t in rows]

    add, sub = "    return a + b\n", "    return a - b\n"
    assert cycle(1, {"p0": (add, True), "p1": (add, True)}, replay=False).state == "done"
    done = cycle(2, {"p1": (add, True), "p2": (add, True), "p3": (sub, False)}, replay=True)
    assert done.state == "done" and done.metrics["data_replayed"] == 1 and done.metrics["data_replay_repeated"] == 1
    assert train_set(2) == [("p1", add), ("p2", add), ("p0", add)]  # this cycle's first; p1 once
    manifest = read_manifest(store, "runs/replay/cycle-002/train")
    assert manifest is not None and manifest.inputs["replay"].uri.endswith("cycle-001/train/train_set.jsonl")
    done = cycle(3, {"p4": (sub, False)}, replay=True)  # nothing new passed: the earlier answers still train
    assert done.state == "done" and done.step > 0 and sorted(train_set(3)) == [("p0", add), ("p1", add), ("p2", add)]
    assert cycle(4, {"p4": (sub, False)}, replay=False).step == 0  # without replay: the student is unchanged

    with pytest.raises(grpc.RpcError) as info:
        list(stub.Train(trainer_pb2.TrainRequest(run=common_pb2.RunCycle(run_id="replay", cycle=5),
                                                 train_set_uri=store.uri("runs/replay/cycle-001/train/train_set.jsonl"),
                                                 replay_uri="sets/nothing-here.jsonl")))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "replay_uri: no training set" in info.value.details()


def test_cycle_0_is_answered_by_the_base_student_even_after_training(served: tuple[Any, LocalStore]) -> None:
    """The baseline evaluation asks for cycle 0: the base model answers, whatever was served before;
    a later cycle's request brings its trained checkpoint back."""
    stub, store = served
    done, uris = train_cycle(stub, store, "base", 1, {"b0": ("    return a + b\n", True)})
    assert done.state == "done" and done.checkpoint.uri

    def solve(cycle: int) -> tuple[str, str]:
        out = store.uri(f"runs/base/solve-{cycle}/samples.jsonl")
        stub.Solve(common_pb2.SolveRequest(run=common_pb2.RunCycle(run_id="base", cycle=cycle),
                                           problems_uri=uris["problems"], samples_uri=out,
                                           params=common_pb2.GenerationParams(n=1, max_new_tokens=4)))
        model = store.get_jsonl(f"runs/base/solve-{cycle}/samples.jsonl", Sample)[0].model
        return model, stub.Info(common_pb2.InfoRequest()).adapter

    trained_model, adapter = solve(1)
    assert adapter == done.checkpoint.uri
    base_model, adapter = solve(0)
    assert adapter == "" and base_model != trained_model
    assert solve(1) == (trained_model, done.checkpoint.uri)
