"""Solve is one stage-owning implementation (iterkd.shared.solve) behind two real gRPC services:
the teacher (hf backend) and the trainer (the student), both on loopback with the tiny model.

Per server: the manifest is written after the samples; a repeat returns the stored result without
generating; a different request for the same folder is refused; a Solve that dies leaves no
manifest. Across servers: the same bad generation parameters get the same INVALID_ARGUMENT."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from iterkd.shared.config import ServerConfig
from iterkd.shared.formats import Problem, Sample
from iterkd.shared.rpc import Server, Service, connect, service_name
from iterkd.shared.store import LocalStore
from iterkd.v1 import common_pb2, teacher_pb2, teacher_pb2_grpc, trainer_pb2, trainer_pb2_grpc

LIMITS = {"max_n": 4, "max_new_tokens": 32, "max_batch_prompts": 8}
PROBLEMS = [
    Problem(id="p/1", prompt="Write add(a, b).", entry_point="add", tests="assert add(1, 2) == 3",
            canonical_solution="def add(a, b):\n    return a + b\n"),
    Problem(id="p/2", prompt="Write neg(x).", entry_point="neg", tests="assert neg(1) == -1"),
]


@dataclass
class Solver:
    """One served Solve: its stub, its store, the HFGenerator it generates with, its own stage."""

    name: str
    stub: Any
    store: LocalStore
    generator: Any
    own_stage: str


def _serve(servicer: Any, add: Any, pb2: Any, name: str, stub_cls: Any) -> tuple[Server, Any, Any]:
    server = Server([Service(add, servicer, service_name(pb2, name))], ServerConfig(port=0, grace_s=0))
    server.start()
    channel, stub = connect(server.target, stub_cls, timeout=120)
    return server, channel, stub


@pytest.fixture(scope="module", params=["teacher", "trainer"])
def solver(request: pytest.FixtureRequest, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Solver]:
    store = LocalStore(tmp_path_factory.mktemp(f"store-{request.param}"))
    if request.param == "teacher":
        from iterkd.teacher.backends import HFBackend
        from iterkd.teacher.config import TeacherConfig
        from iterkd.teacher.service import TeacherServicer

        cfg = TeacherConfig(backend="hf", model=str(tiny_model_dir), device="cpu", **LIMITS)
        backend = HFBackend(cfg)
        servicer: Any = TeacherServicer(cfg, backend, store)
        server, channel, stub = _serve(servicer, teacher_pb2_grpc.add_TeacherServiceServicer_to_server,
                                       teacher_pb2, "TeacherService", teacher_pb2_grpc.TeacherServiceStub)
        generator = backend.generator
        own = "teacher-solve"
    else:
        from iterkd.trainer.config import TrainerConfig
        from iterkd.trainer.service import TrainerServicer

        servicer = TrainerServicer(TrainerConfig(base_model=str(tiny_model_dir), device="cpu", **LIMITS), store)
        server, channel, stub = _serve(servicer, trainer_pb2_grpc.add_TrainerServiceServicer_to_server,
                                       trainer_pb2, "TrainerService", trainer_pb2_grpc.TrainerServiceStub)
        generator = servicer._current().generator
        own = "student-solve"
    try:
        yield Solver(request.param, stub, store, generator, own)
    finally:
        channel.close()
        server.stop(0)


@pytest.fixture
def calls(solver: Solver) -> Iterator[list[int]]:
    """Counts the micro-batches the served generator decodes."""
    real = solver.generator.generate_rows
    seen: list[int] = []

    def counting(rows: Any, cancelled: Any = None) -> Any:
        for item in real(rows, cancelled):
            seen.append(1)
            yield item

    solver.generator.generate_rows = counting
    try:
        yield seen
    finally:
        del solver.generator.generate_rows


def solve(solver: Solver, folder: str, seed: int = 1, **fields: Any) -> common_pb2.SolveResponse:
    solver.store.put_jsonl("inputs/problems.jsonl", PROBLEMS)
    return solver.stub.Solve(common_pb2.SolveRequest(
        run=common_pb2.RunCycle(run_id="r", cycle=1), problems_uri=solver.store.uri("inputs/problems.jsonl"),
        samples_uri=solver.store.uri(f"{folder}/samples.jsonl"),
        params=common_pb2.GenerationParams(n=2, max_new_tokens=8, temperature=0.8, seed=seed), **fields))


def manifest(solver: Solver, folder: str) -> dict[str, Any] | None:
    path = solver.store.local_path(f"{folder}/_manifest.json")
    return json.loads(path.read_text()) if path.exists() else None


def test_solve_writes_samples_then_its_manifest(solver: Solver, calls: list[int]) -> None:
    folder = f"runs/r/cycle-001/{solver.own_stage}"
    reply = solve(solver, folder, include_references=True)
    assert not reply.cached and calls
    rows = solver.store.get_jsonl(f"{folder}/samples.jsonl", Sample)
    assert [r.sample_id for r in rows] == ["p/1#0", "p/1#1", "p/2#0", "p/2#1", "p/1#ref"]
    assert rows[-1].model == "reference" and rows[-1].completion == PROBLEMS[0].canonical_solution
    assert (reply.problems, reply.samples_written) == (2, 5)
    done = manifest(solver, folder)
    assert done is not None and done["stage"] == solver.own_stage and (done["run_id"], done["cycle"]) == ("r", 1)
    assert done["inputs"]["problems"]["sha256"] == solver.store.info("inputs/problems.jsonl").sha256
    assert done["outputs"]["samples.jsonl"]["sha256"] == reply.samples.sha256
    config = done["config"]
    assert (config["n"], config["max_new_tokens"], config["seed"], config["temperature"]) == (2, 8, 1, 0.8)
    assert config["include_references"] and config["model"] == rows[0].model and "{prompt}" in config["template"]
    assert config["use_chat_template"] is True  # the service's configured prompt format


def test_a_repeat_returns_the_stored_result_without_generating(solver: Solver, calls: list[int]) -> None:
    folder = f"runs/r/cycle-002/{solver.own_stage}"
    first = solve(solver, folder)
    before = solver.store.local_path(f"{folder}/samples.jsonl").stat().st_mtime_ns
    n = len(calls)
    again = solve(solver, folder)
    assert again.cached and len(calls) == n, "a repeat generated again"
    assert (again.samples.uri, again.samples.sha256) == (first.samples.uri, first.samples.sha256)
    assert (again.problems, again.samples_written) == (first.problems, first.samples_written)
    assert solver.store.local_path(f"{folder}/samples.jsonl").stat().st_mtime_ns == before


def test_a_different_request_for_the_same_folder_is_refused(solver: Solver, calls: list[int]) -> None:
    folder = f"runs/r/cycle-003/{solver.own_stage}"
    first = solve(solver, folder)
    n = len(calls)
    with pytest.raises(grpc.RpcError) as err:
        solve(solver, folder, seed=2)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "config seed" in err.value.details()
    solver.store.put_jsonl("inputs/other.jsonl", PROBLEMS[:1])
    with pytest.raises(grpc.RpcError) as err:
        solver.stub.Solve(common_pb2.SolveRequest(
            run=common_pb2.RunCycle(run_id="r", cycle=1), problems_uri="inputs/other.jsonl",
            samples_uri=f"{folder}/samples.jsonl",
            params=common_pb2.GenerationParams(n=2, max_new_tokens=8, temperature=0.8, seed=1)))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "input problems" in err.value.details()
    assert len(calls) == n and solver.store.info(f"{folder}/samples.jsonl").sha256 == first.samples.sha256


def test_a_solve_that_dies_leaves_no_manifest(solver: Solver) -> None:
    folder = f"runs/r/cycle-004/{solver.own_stage}"
    model = solver.generator.model
    real = model.forward
    steps = {"n": 0}

    def failing(*args: Any, **kwargs: Any) -> Any:
        steps["n"] += 1
        if steps["n"] > 2:
            raise RuntimeError("the device fell over")
        return real(*args, **kwargs)

    model.forward = failing
    try:
        with pytest.raises(grpc.RpcError) as err:
            solve(solver, folder)
        assert err.value.code() == grpc.StatusCode.INTERNAL and "fell over" in err.value.details()
    finally:
        del model.forward
    assert steps["n"] > 2, "generation had started before it died"
    assert manifest(solver, folder) is None and not solver.store.exists(f"{folder}/samples.jsonl")
    reply = solve(solver, folder)  # the stage is not done: the same request runs again
    assert not reply.cached and manifest(solver, folder) is not None


@pytest.mark.parametrize(("folder", "stage", "step"), [
    ("runs/r/cycle-005/evaluate/solve", "evaluate", "solve"),
    ("scratch/anywhere", None, None),
])
def test_the_stage_is_named_by_its_folder(solver: Solver, folder: str, stage: str | None, step: str | None) -> None:
    solve(solver, folder)
    done = manifest(solver, folder)
    assert done is not None and (done["stage"], done["step"]) == (stage or solver.own_stage, step)


def test_a_folder_of_another_stage_is_refused(solver: Solver) -> None:
    with pytest.raises(grpc.RpcError) as err:
        solve(solver, "runs/r/cycle-006/verify")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'verify' stage" in err.value.details()
    assert manifest(solver, "runs/r/cycle-006/verify") is None


def test_an_empty_problem_set_is_refused(solver: Solver) -> None:
    solver.store.put_bytes("inputs/empty.jsonl", b"")
    with pytest.raises(grpc.RpcError) as err:
        solver.stub.Solve(common_pb2.SolveRequest(
            problems_uri="inputs/empty.jsonl", samples_uri="runs/r/cycle-007/x/samples.jsonl",
            params=common_pb2.GenerationParams(n=1, max_new_tokens=4)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "no problems in" in err.value.details()
    assert manifest(solver, "runs/r/cycle-007/x") is None


# One behaviour: the same bad parameters, the same INVALID_ARGUMENT from teacher and trainer, for
# Generate and for Solve.
BAD_PARAMS = [
    ({"n": 0, "max_new_tokens": 8}, "params.n must be >= 1, got 0"),
    ({"n": 5, "max_new_tokens": 8}, "params.n=5 is over this service's limit max_n=4"),
    ({"n": 1, "max_new_tokens": 0}, "params.max_new_tokens must be > 0, got 0"),
    ({"n": 1, "max_new_tokens": 33}, "params.max_new_tokens=33 is over this service's limit max_new_tokens=32"),
    ({"n": 1, "max_new_tokens": 8, "temperature": float("nan")}, "params.temperature must be >= 0, got nan"),
    ({"n": 1, "max_new_tokens": 8, "temperature": float("inf")}, "params.temperature must be >= 0, got inf"),
    ({"n": 1, "max_new_tokens": 8, "temperature": -1}, "params.temperature must be >= 0, got -1"),
    ({"n": 1, "max_new_tokens": 8, "top_p": 1.5}, "params.top_p must be in (0, 1], got 1.5"),
]


@pytest.mark.parametrize(("params", "message"), BAD_PARAMS, ids=[m.split(" ")[0] + str(i)
                                                                  for i, (_, m) in enumerate(BAD_PARAMS)])
def test_bad_generation_parameters_get_one_answer(solver: Solver, params: dict[str, Any], message: str) -> None:
    solver.store.put_jsonl("inputs/problems.jsonl", PROBLEMS)
    calls = [
        lambda: solver.stub.Generate(common_pb2.GenerateRequest(
            prompts=[common_pb2.Prompt(id="a", text="x")], params=common_pb2.GenerationParams(**params))),
        lambda: solver.stub.Solve(common_pb2.SolveRequest(
            problems_uri="inputs/problems.jsonl", samples_uri="runs/r/cycle-008/bad/samples.jsonl",
            params=common_pb2.GenerationParams(**params))),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == message
    assert manifest(solver, "runs/r/cycle-008/bad") is None
