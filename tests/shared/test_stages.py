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
