"""A run's status as one JSON object (``iterkd status --json``, GetRun, the report) and as a table.

Per cycle: its state, each stage's record and the cycle's key metrics, read from the stages'
manifests and outputs: student_pass_at_1 (evaluate), teacher_pass_rate (verify, the teacher's own
answers only: reference solutions verified beside them are left out), sft_loss and
contrastive_margin (train), pool_size (the cycle's pool) and levels (evolve: level -> count).
"""

from __future__ import annotations

from typing import Any

from iterkd.controller.planner import pool_key
from iterkd.controller.runs import RunRecord
from iterkd.shared.formats import Sample, Verdict
from iterkd.shared.stages import STAGES, baseline_prefix, output_key, read_manifest, stage_prefix
from iterkd.shared.store import ArtifactNotFound, ArtifactStore

LEVELS = ("mastered", "learning", "struggling")


def _count_lines(store: ArtifactStore, key: str) -> int | None:
    try:
        return sum(1 for line in store.get_bytes(key).splitlines() if line.strip())
    except ArtifactNotFound:
        return None


def teacher_pass_rate(store: ArtifactStore, run_id: str, cycle: int) -> float | None:
    """Passed / verified over the teacher's own answers (samples whose model is not "reference")."""
    if read_manifest(store, stage_prefix(run_id, cycle, "verify")) is None:
        return None
    try:
        samples = store.get_jsonl(output_key(run_id, cycle, "teacher-solve", "samples.jsonl"), Sample)
        verdicts = store.get_jsonl(output_key(run_id, cycle, "verify", "verdicts.jsonl"), Verdict)
    except ArtifactNotFound:
        return None
    teacher = {s.sample_id for s in samples if s.model != "reference"}
    rows = [v.passed for v in verdicts if v.sample_id in teacher]
    return sum(rows) / len(rows) if rows else None


def cycle_metrics(store: ArtifactStore, run_id: str, cycle: int) -> dict[str, Any]:
    def metric(stage: str, name: str) -> float | None:
        m = read_manifest(store, stage_prefix(run_id, cycle, stage))
        return m.metrics.get(name) if m is not None else None

    evolve = read_manifest(store, stage_prefix(run_id, cycle, "evolve"))
    levels = None
    if evolve is not None:  # the question service's per-level stats: problems of the pool at each level
        stats = {s.get("level"): s for s in evolve.extra.get("stats", [])}
        levels = {lv: int(stats.get(lv, {}).get("problems", 0)) for lv in LEVELS}
    return {
        "student_pass_at_1": metric("evaluate", "pass@1"),
        "teacher_pass_rate": teacher_pass_rate(store, run_id, cycle),
        "sft_loss": metric("train", "sft_loss"),
        "contrastive_margin": metric("train", "margin"),
        "pool_size": _count_lines(store, pool_key(run_id, cycle)),
        "levels": levels,
    }


def _cycle_state(states: list[str]) -> str:
    for s in ("failed", "cancelled", "running"):
        if s in states:
            return s
    if all(s == "succeeded" for s in states):
        return "succeeded"
    return "running" if "succeeded" in states else "pending"


def baseline_pass_at_1(store: ArtifactStore, run_id: str) -> float | None:
    """The base student's pass@1 (``run.stages.evaluate.baseline``), or None where not measured."""
    m = read_manifest(store, baseline_prefix(run_id))
    return m.metrics.get("pass@1") if m is not None else None


def run_status(store: ArtifactStore, record: RunRecord) -> dict[str, Any]:
    current = record.current
    cycles = []
    for c in range(1, record.cycles + 1):
        recs = [r for r in record.stages if r.cycle == c]
        cycles.append({
            "cycle": c,
            "state": _cycle_state([r.state for r in recs]),
            "stages": [{"name": r.stage, "state": r.state, "attempt": r.attempt, "duration_s": r.duration_s,
                        "message": r.message} for r in recs],
            "metrics": cycle_metrics(store, record.run_id, c),
        })
    return {
        "run": record.run_id,
        "state": record.state,
        "current_cycle": current.cycle if current is not None else record.cycles,
        "current_stage": current.stage if current is not None else None,
        "progress": round(record.progress, 4),
        "message": record.message,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "baseline_pass_at_1": baseline_pass_at_1(store, record.run_id),
        "cycles": cycles,
    }


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def render_table(status: dict[str, Any]) -> Any:
    """A rich renderable a person reads at a glance."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text.assemble(
        ("run ", "bold"), status["run"], "  ", (status["state"], _STYLE.get(status["state"], "")),
        f"  {status['progress'] * 100:.0f}%",
        f"  cycle {status['current_cycle']}" + (f" {status['current_stage']}" if status["current_stage"] else ""))
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("cycle", justify="right", no_wrap=True, min_width=5)
    table.add_column("stages", no_wrap=True)
    for col in ("state", "pass@1", "teacher", "sft", "margin", "pool", "m/l/s"):
        table.add_column(col, justify="right" if col != "state" else "left", no_wrap=True)
    if status.get("baseline_pass_at_1") is not None:  # the student before distillation
        table.add_row("0", Text("base", style="dim"), Text("-"), _fmt(status["baseline_pass_at_1"]),
                      *(["-"] * 5))
    for c in status["cycles"]:
        m = c["metrics"]
        marks = Text()
        states = {s["name"]: s["state"] for s in c["stages"]}
        for name in STAGES:  # a stage the cycle leaves out (the last cycle's evolve) shows as "-"
            state = states.get(name, "skipped")
            marks.append(_MARK.get(state, "?"), style=_STYLE.get(state, ""))
        lv = m["levels"]
        table.add_row(str(c["cycle"]), marks, Text(c["state"], style=_STYLE.get(c["state"], "")),
                      _fmt(m["student_pass_at_1"]), _fmt(m["teacher_pass_rate"], ".2f"), _fmt(m["sft_loss"]),
                      _fmt(m["contrastive_margin"], "+.3f"), _fmt(m["pool_size"], "d"),
                      "/".join(str(lv[k]) for k in LEVELS) if lv else "-")
    legend = Text("stages: " + " ".join(STAGES) + ("  (-: left out of the last cycle)"
                                                    if any(len(c["stages"]) < len(STAGES) for c in status["cycles"])
                                                    else ""), style="dim") if status["cycles"] else Text("")
    parts: list[Any] = [head, table, legend]
    failed = [(c["cycle"], s) for c in status["cycles"] for s in c["stages"] if s["state"] == "failed"]
    for cycle, s in failed:
        parts.append(Text(f"cycle {cycle} {s['name']} failed (attempt {s['attempt']}): {s['message']}", style="red"))
    if status["message"] and status["state"] != "failed":
        parts.append(Text(status["message"], style="dim"))
    return Group(*parts)


_MARK = {"succeeded": "✓", "running": "…", "failed": "✗", "cancelled": "⊘", "pending": "·", "skipped": "-"}
_STYLE = {"succeeded": "green", "running": "yellow", "failed": "red", "cancelled": "magenta", "pending": "dim",
          "skipped": "dim"}
