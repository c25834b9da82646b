"""Small helpers shared by the executor's and the reconciler's tests."""

from __future__ import annotations

from iterkd.shared.stages import StageWriter, stage_prefix
from iterkd.shared.store import ArtifactStore


def finish_stage(store: ArtifactStore, run: str, cycle: int, stage: str, metrics: dict[str, float] | None = None
                 ) -> None:
    """What the stage's service does: its outputs, then its manifest."""
    with StageWriter(store, stage_prefix(run, cycle, stage), stage, run, cycle) as w:
        w.put_bytes("out.jsonl", b"{}\n")
        for k, v in (metrics or {}).items():
            w.metrics[k] = v
