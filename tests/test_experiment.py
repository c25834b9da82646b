"""The miniature experiment's smoke version: every kind of arm runs through the real system
(quick models, one seed, a small budget) and the budgets come out equal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(1200)
def test_the_experiment_runs_every_kind_of_arm_with_equal_budgets(tmp_path: Path) -> None:
    env = {**os.environ, "ITERKD_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "experiment.py"), "--quick", "--seeds", "0", "--workdir",
         str(tmp_path / "w"), "--arms", "student-base,iterkd,one-shot,one-shot-random-questions"],
        capture_output=True, text=True, env=env, timeout=1100)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["arm"]: r for r in json.loads(proc.stdout.strip().splitlines()[-1])}
    assert set(rows) == {"student-base", "iterkd", "one-shot", "one-shot-random-questions"}
    for r in rows.values():
        assert all(0.0 <= x <= 1.0 for x in r["pass_at_1"]) and r["seeds"] == [0]
    assert len(rows["iterkd"]["curve"]) == 2  # one held-out pass@1 per cycle
    full = rows["iterkd"]["teacher_generations"]
    for arm in ("one-shot", "one-shot-random-questions"):  # the same teacher budget, to within one answer
        assert full > 0 and full - 8 < rows[arm]["teacher_generations"] <= full, arm  # per question
    runs = tmp_path / "w" / "store" / "runs"
    assert (runs / "iterkd-s0" / "cycle-002" / "evaluate" / "_manifest.json").exists()
    assert not (runs / "iterkd-s0" / "cycle-002" / "evolve").exists()  # the last cycle writes no questions
    questions = runs / "questions-s0" / "cycle-001" / "evolve" / "next_pool.jsonl"  # ... unless that is the point
    assert questions.exists()
    train2 = json.loads((runs / "iterkd-s0" / "cycle-002" / "train" / "_manifest.json").read_text())
    assert "replay" in train2["inputs"]  # the cycled arms replay earlier cycles' answers
    assert json.loads((runs / "one-shot-s0" / "run.json").read_text())["cycles"] == 1


def test_rewriting_the_results_keeps_the_analysis(tmp_path: Path) -> None:
    """`--report-only` and a finished table replace only the measured block of results.md."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("experiment", REPO / "examples" / "experiment.py")
    assert spec and spec.loader
    exp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exp)
    rows = [{"arm": "iterkd", "pass_at_1": [0.1, 0.3], "mean": 0.2, "std": 0.1414, "teacher_generations": 10,
             "student_train_tokens": 99, "wall_s": 60, "curve": [0.05, 0.2]},
            {"arm": "one-shot", "pass_at_1": [0.0, 0.0], "mean": 0.0, "std": 0.0, "teacher_generations": 10,
             "student_train_tokens": 99, "wall_s": 30, "curve": [0.0]}]
    out = tmp_path / "results.md"
    exp.write_results_md(out, exp.results_block(rows, exp.SETTINGS))
    first = out.read_text()
    assert "| `iterkd` | 0.200 ± 0.141 | 0.10, 0.30 |" in first and "0.050 → 0.200" in first
    assert "1.5 minutes" in first
    out.write_text("# Mine\n\nintro\n\n" + first.split("\n", 2)[2] + "\n## Analysis\n\nkept\n")
    rows[0]["mean"] = 0.5
    exp.write_results_md(out, exp.results_block(rows, exp.SETTINGS))
    text = out.read_text()
    assert text.startswith("# Mine\n\nintro\n") and text.endswith("## Analysis\n\nkept\n")
    assert "| `iterkd` | 0.500 ±" in text and "| `iterkd` | 0.200 ±" not in text


def test_tuning_runs_get_valid_distinct_run_ids() -> None:
    """`--set lambda=0.1` once made the run id 'iterkd-s0-lambda0.1', which the controller refuses."""
    import importlib.util

    from iterkd.shared.stages import check_run_id

    spec = importlib.util.spec_from_file_location("experiment", REPO / "examples" / "experiment.py")
    assert spec and spec.loader
    exp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exp)
    sets = [["lambda=0.1"], ["lambda=0.0"], ["replay=false"], ["Pool=700", "lr=0.003", "steps_per_cycle=240"]]
    tags = [exp.settings_tag(s, [0, 1, 2]) for s in sets]
    assert tags[:3] == ["lambda0p1", "lambda0p0", "replayfalse"] and len(set(tags)) == 4
    for tag in tags:
        for arm in (*exp.ARMS, "questions"):
            check_run_id(f"{arm}-s2-{tag}")
    long_seed = exp.settings_tag(["replay=false"], [12])  # one more digit: the tag is hashed to fit
    assert long_seed.startswith("set") and check_run_id(f"iterkd-no-feedback-update-s12-{long_seed}")
