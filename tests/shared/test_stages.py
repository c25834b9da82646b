"""The stage-manifest convention: outputs first, manifest last; a stage with a manifest is done."""

from pathlib import Path

import pytest

from iterkd.shared.stages import (
    MANIFEST,
    StageWriter,
    check_run_id,
    cycle_prefix,
    read_manifest,
    stage_done,
    stage_prefix,
)
from iterkd.shared.store import InvalidKey, LocalStore, sha256_bytes


def test_layout() -> None:
    assert cycle_prefix("r1", 3) == "runs/r1/cycle-003"
    assert stage_prefix("r1", 0, "teacher-solve") == "runs/r1/cycle-000/teacher-solve"
    with pytest.raises(InvalidKey, match="unknown stage"):
        stage_prefix("r1", 0, "bake")
    for bad in ["R1", "-r", "a_b", "x" * 41, ""]:
        with pytest.raises(InvalidKey, match="invalid run id"):
            check_run_id(bad)


def test_manifest_written_last_with_hashes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    prefix = stage_prefix("r1", 1, "verify")
    order: list[str] = []
    original = store.put_bytes

    def spy(key: str, data: bytes):  # record write order
        order.append(key.rsplit("/", 1)[-1])
        return original(key, data)

    store.put_bytes = spy  # type: ignore[method-assign]
    with StageWriter(store, prefix, "verify", run_id="r1", cycle=1) as w:
        w.put_jsonl("verdicts.jsonl", [{"sample_id": "a", "passed": True}])
        w.metrics["pass_rate"] = 1.0
        assert not stage_done(store, prefix)
    assert order == ["verdicts.jsonl", MANIFEST]
    manifest = read_manifest(store, prefix)
    assert manifest is not None and manifest.metrics == {"pass_rate": 1.0}
    entry = manifest.outputs["verdicts.jsonl"]
    assert entry.sha256 == sha256_bytes(store.get_bytes(entry.key))


def test_failed_stage_writes_no_manifest(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    prefix = stage_prefix("r1", 1, "train")
    with pytest.raises(RuntimeError), StageWriter(store, prefix, "train") as w:
        w.put_bytes("partial.bin", b"x")
        raise RuntimeError("crash")
    assert not stage_done(store, prefix) and read_manifest(store, prefix) is None


def test_non_finite_metrics_are_left_out_and_named(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    prefix = stage_prefix("r1", 0, "train")
    with StageWriter(store, prefix, "train") as w:
        w.metrics.update(loss=0.5, margin=float("nan"), ratio=float("inf"))
    manifest = read_manifest(store, prefix)
    assert manifest is not None and manifest.metrics == {"loss": 0.5}
    assert manifest.extra["non_finite_metrics"] == ["margin", "ratio"]


# -- the stage contract: one declaration, inputs hashed, a repeat answered, a different request refused


def test_every_stage_is_declared_once_with_its_owner_and_outputs() -> None:
    from iterkd.shared.stages import CYCLE, STAGES, output_key, stage

    assert STAGES == ("teacher-solve", "verify", "train", "student-solve", "feedback", "evolve", "evaluate")
    assert {s.service for s in CYCLE} == {"teacher", "feedback", "trainer", "questions"}
    for s in CYCLE:
        assert s.outputs, s.name
        for inp in s.inputs.values():  # every input is another stage's declared output, the pool or the run's
            if inp.stage in STAGES and inp.name != "checkpoint":  # checkpoint: adapter or model
                assert inp.name in stage(inp.stage).outputs or inp.stage == s.name, (s.name, inp)
    assert output_key("r", 2, "verify", "verdicts.jsonl") == "runs/r/cycle-002/verify/verdicts.jsonl"
    with pytest.raises(KeyError, match="no output 'nope.jsonl'"):
        output_key("r", 2, "verify", "nope.jsonl")


def test_begin_stage_records_inputs_and_refuses_a_different_request(tmp_path: Path) -> None:
    from iterkd.shared.stages import StageConflict, StageManifest, begin_stage, code_version

    store = LocalStore(tmp_path)
    store.put_jsonl("in/problems.jsonl", [{"id": "a"}])
    prefix = stage_prefix("r", 1, "verify")
    owned = begin_stage(store, prefix, "verify", inputs={"problems": "in/problems.jsonl"}, config={"k": [1]},
                        run_id="r", cycle=1)
    assert isinstance(owned, StageWriter)
    owned.put_jsonl("verdicts.jsonl", [{"ok": 1}])
    manifest = owned.commit()
    assert manifest.inputs["problems"].sha256 == sha256_bytes(store.get_bytes("in/problems.jsonl"))
    assert manifest.config == {"k": [1]} and manifest.code_version == code_version() != ""

    again = begin_stage(store, prefix, "verify", inputs={"problems": "in/problems.jsonl"}, config={"k": [1]})
    assert isinstance(again, StageManifest) and again == read_manifest(store, prefix)

    with pytest.raises(StageConflict, match="config k differ"):
        begin_stage(store, prefix, "verify", inputs={"problems": "in/problems.jsonl"}, config={"k": [1, 2]})
    store.put_jsonl("in/problems.jsonl", [{"id": "b"}])  # same key, other bytes: a stale result must not answer
    with pytest.raises(StageConflict, match="input problems differ"):
        begin_stage(store, prefix, "verify", inputs={"problems": "in/problems.jsonl"}, config={"k": [1]})


def test_an_input_written_by_a_stage_is_hashed_from_its_producers_manifest(tmp_path: Path) -> None:
    from iterkd.shared.stages import artifact_sha256

    store = LocalStore(tmp_path)
    with StageWriter(store, "runs/r/cycle-001/train", "train") as w:
        (tmp_path / "ckpt").mkdir()
        (tmp_path / "ckpt" / "w.bin").write_bytes(b"weights")
        entry = w.put_dir("adapter", tmp_path / "ckpt")
    assert artifact_sha256(store, "runs/r/cycle-001/train/adapter") == entry.sha256
    # Without a producer's manifest a folder is hashed from its files, so a changed file changes it.
    store.put_bytes("loose/ckpt/w.bin", b"one")
    first = artifact_sha256(store, "loose/ckpt")
    store.put_bytes("loose/ckpt/w.bin", b"two")
    assert artifact_sha256(store, "loose/ckpt") != first
