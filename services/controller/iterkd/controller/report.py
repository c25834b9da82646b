"""``iterkd report RUN``: a markdown report with PNG plots (matplotlib, Agg) of a run's curves.

Plots: the student's pass@1 per cycle with the teacher's pass rate as a reference line; the pool's
size and level mix per cycle; the training loss and the contrastive margin over every cycle's steps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from iterkd.controller.runs import RunRecord
from iterkd.controller.status import LEVELS, run_status
from iterkd.shared.stages import STAGES, output_key
from iterkd.shared.store import ArtifactNotFound, ArtifactStore

NOTE_MINIATURE = ("The embedded default runs the miniature world (docs/miniature.md): models trained from "
                  "scratch on this machine, a pool of two-step compositions, and pass@1 on 200 problems of "
                  "held-out compositions the student never trains on. It shows whether the student learns "
                  "from the teacher; docs/results.md compares the method with one-shot distillation at equal "
                  "budget.")


def _train_steps(store: ArtifactStore, run_id: str, cycles: int) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for c in range(1, cycles + 1):
        try:
            data = json.loads(store.get_bytes(output_key(run_id, c, "train", "metrics.json")))
        except (ArtifactNotFound, ValueError):
            continue
        rows.extend((c, s) for s in data.get("steps", []))
    return rows


def _plots(status: dict[str, Any], steps: list[tuple[int, dict[str, Any]]], out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: dict[str, str] = {}
    cycles = [c["cycle"] for c in status["cycles"]]
    metrics = [c["metrics"] for c in status["cycles"]]

    def nan(v: Any) -> float:
        return float("nan") if v is None else float(v)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    base = status.get("baseline_pass_at_1")
    xs, ys = ([0], [float(base)]) if base is not None else ([], [])  # cycle 0: the base student
    ax.plot(xs + cycles, ys + [nan(m["student_pass_at_1"]) for m in metrics], "o-",
            label="student pass@1 (eval set)")
    ax.plot(cycles, [nan(m["teacher_pass_rate"]) for m in metrics], "s--", color="gray",
            label="teacher pass rate (pool)")
    ax.set_xlabel("cycle")
    ax.set_ylabel("rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(xs + cycles)
    ax.legend(loc="best", fontsize=8)
    ax.set_title("Learning curve" + (" (cycle 0: the base student)" if xs else ""))
    fig.tight_layout()
    fig.savefig(out / "pass_at_1.png", dpi=110)
    plt.close(fig)
    files["pass_at_1"] = "pass_at_1.png"

    fig, ax = plt.subplots(figsize=(6, 3.6))
    bottom = [0.0] * len(cycles)
    for lv, color in zip(LEVELS, ("tab:green", "tab:orange", "tab:red")):
        vals = [float((m["levels"] or {}).get(lv, 0)) for m in metrics]
        ax.bar(cycles, vals, bottom=bottom, color=color, label=lv)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.plot(cycles, [nan(m["pool_size"]) for m in metrics], "ko-", label="pool size")
    ax.set_xlabel("cycle")
    ax.set_ylabel("questions")
    ax.set_xticks(cycles)
    ax.legend(loc="best", fontsize=8)
    ax.set_title("Pool size and level mix")
    fig.tight_layout()
    fig.savefig(out / "pool.png", dpi=110)
    plt.close(fig)
    files["pool"] = "pool.png"

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    xs = list(range(1, len(steps) + 1))
    a1.plot(xs, [nan(s.get("loss")) for _, s in steps], label="total")
    a1.plot(xs, [nan(s.get("sft_loss")) for _, s in steps], label="SFT")
    a2.plot(xs, [nan(s.get("margin")) for _, s in steps], color="tab:purple")
    for ax, title in ((a1, "Training loss"), (a2, "Contrastive margin (chosen - rejected)")):
        boundaries = [i for i in range(1, len(steps)) if steps[i][0] != steps[i - 1][0]]
        for b in boundaries:
            ax.axvline(b + 0.5, color="gray", lw=0.6, ls=":")
        ax.set_xlabel("step (all cycles; dotted lines: cycle boundaries)")
        ax.set_title(title)
    a1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=110)
    plt.close(fig)
    files["training"] = "training.png"
    return files


def _cell(v: Any, spec: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def write_report(store: ArtifactStore, record: RunRecord, out: Path, miniature: bool = False) -> Path:
    """Write ``report.md`` and its PNGs into ``out``; returns the markdown file's path."""
    out.mkdir(parents=True, exist_ok=True)
    status = run_status(store, record)
    steps = _train_steps(store, record.run_id, record.cycles)
    _plots(status, steps, out)
    lines = [f"# IterKD run `{record.run_id}`", "",
             f"State **{status['state']}**, {status['progress'] * 100:.0f}% of {record.total} stages "
             f"({record.cycles} cycle(s)); created {record.created_at}, updated {record.updated_at}.", ""]
    if miniature:
        lines += [f"> {NOTE_MINIATURE}", ""]
    last = {r.stage for r in record.stages if r.cycle == record.cycles}
    left_out = [s for s in STAGES if s not in last]
    if left_out:
        lines += [f"The last cycle leaves out {', '.join(left_out)}: they only prepare a next cycle "
                  "(`evolve_last_cycle: true` keeps them).", ""]
    if status["message"]:
        lines += [f"{status['message']}", ""]
    lines += ["| cycle | state | student pass@1 | teacher pass rate | SFT loss | margin | pool | mastered | learning "
              "| struggling | wall s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    if status.get("baseline_pass_at_1") is not None:
        lines.append(f"| 0 | base student | {_cell(status['baseline_pass_at_1'])} |" + " - |" * 8)
    for c in status["cycles"]:
        m = c["metrics"]
        lv = m["levels"] or {}
        wall = sum(s["duration_s"] or 0 for s in c["stages"])
        lines.append(f"| {c['cycle']} | {c['state']} | {_cell(m['student_pass_at_1'])} | "
                     f"{_cell(m['teacher_pass_rate'], '.2f')} | {_cell(m['sft_loss'])} | "
                     f"{_cell(m['contrastive_margin'], '+.3f')} | {_cell(m['pool_size'], 'd')} | "
                     f"{lv.get('mastered', '-')} | {lv.get('learning', '-')} | {lv.get('struggling', '-')} | "
                     f"{wall:.0f} |")
    lines += ["", "![Learning curve](pass_at_1.png)", "", "![Pool size and level mix](pool.png)", "",
              "![Training loss and contrastive margin](training.png)", "", "## Stages", "",
              "| cycle | stage | state | attempt | seconds | note |", "|---|---|---|---|---|---|"]
    for c in status["cycles"]:
        for s in c["stages"]:
            note = (s["message"] or "").replace("|", "\\|").replace("\n", " ")[:160]
            lines.append(f"| {c['cycle']} | {s['name']} | {s['state']} | {s['attempt']} | "
                         f"{_cell(s['duration_s'], '.1f')} | {note} |")
    lines += ["", f"Artifacts: `{store.uri(f'runs/{record.run_id}')}`", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
