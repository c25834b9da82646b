"""Pure planning: which stage comes next, and where each stage's inputs are, from what exists.

The planner reads manifests (a stage is done exactly when its manifest exists) and nothing else:
no executor, no RPC. Level-triggered: the same store gives the same plan, so a restarted
controller continues where the artifacts say, whatever its memory said.
"""

from __future__ import annotations

from dataclasses import dataclass

from iterkd.shared.stages import (
    BY_NAME,
    CYCLE,
    STAGES,
    Input,
    checkpoint_entry,
    cycle_stages,
    output_key,
    read_manifest,
    run_input_key,
    stage_prefix,
)
from iterkd.shared.store import ArtifactStore, join

POOL_INPUT = "pool.jsonl"
EVAL_INPUT = "eval.jsonl"


@dataclass(frozen=True)
class Step:
    cycle: int
    stage: str

    def __str__(self) -> str:
        return f"cycle {self.cycle} {self.stage}"


def all_steps(cycles: int, evolve_last_cycle: bool = False) -> list[Step]:
    """Every step of a ``cycles``-cycle run in order (the last cycle without the stages that only
    prepare a next one, unless ``evolve_last_cycle``). A run's record holds this list
    (:attr:`RunRecord.steps`), fixed when the run is created."""
    return [Step(c, s) for c in range(1, cycles + 1) for s in cycle_stages(c, cycles, evolve_last_cycle)]


def is_done(store: ArtifactStore, run_id: str, step: Step) -> bool:
    return read_manifest(store, stage_prefix(run_id, step.cycle, step.stage)) is not None


def next_step(store: ArtifactStore, run_id: str, steps: list[Step], known_done: set[Step] | None = None) -> Step | None:
    """The first of the run's ``steps`` whose manifest does not exist; None when the run is done.
    ``known_done``: steps the caller saw finished (a manifest is never removed while a run is
    driven), so a long run does not read every earlier manifest again at each step."""
    for step in steps:
        if known_done is not None and step in known_done:
            continue
        if not is_done(store, run_id, step):
            return step
        if known_done is not None:
            known_done.add(step)
    return None


def pool_key(run_id: str, cycle: int) -> str:
    """Cycle 1 answers the run's seed pool; cycle k answers the pool that cycle k-1 evolved."""
    if cycle <= 1:
        return run_input_key(run_id, POOL_INPUT)
    return output_key(run_id, cycle - 1, "evolve", "next_pool.jsonl")


def input_key(store: ArtifactStore, run_id: str, cycle: int, inp: Input) -> str | None:
    """The store key of one declared input of a stage in ``cycle`` (None for an absent optional one)."""
    if inp.stage == "pool":
        return pool_key(run_id, cycle)
    if inp.stage == "run":
        return run_input_key(run_id, inp.name)
    source_cycle = cycle - 1 if inp.previous else cycle
    if source_cycle < 1:
        return None
    prefix = stage_prefix(run_id, source_cycle, inp.stage)
    if inp.name == "checkpoint":
        manifest = read_manifest(store, prefix)
        entry = checkpoint_entry(manifest) if manifest is not None else None
        if entry is None and not inp.optional:
            raise LookupError(f"cycle {source_cycle} {inp.stage} has no checkpoint")
        return entry.key if entry is not None else None
    return join(prefix, inp.name)


def stage_inputs(store: ArtifactStore, run_id: str, step: Step) -> dict[str, str]:
    """Every input of ``step`` by name (store keys); optional inputs that do not exist are left out."""
    out = {}
    for name, inp in BY_NAME[step.stage].inputs.items():
        key = input_key(store, run_id, step.cycle, inp)
        if key is not None:
            out[name] = key
    return out


def later_steps(steps: list[Step], start: Step) -> list[Step]:
    """``start`` and every step after it among the run's ``steps`` (what --from-stage re-runs)."""
    if start not in steps:
        raise ValueError(f"the run has no step {start} (its cycle {start.cycle} runs "
                         f"{', '.join(s.stage for s in steps if s.cycle == start.cycle) or 'nothing'})")
    return steps[steps.index(start):]


assert [s.name for s in CYCLE] == list(STAGES)
