"""End to end: the embedded demo runs a whole cycle through the four real services on loopback,
and a second run resumes from the stage manifests instead of redoing the work."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES_WITH_MANIFEST = ("verify", "train", "feedback", "evolve", "evaluate")


def run_demo(workdir: Path) -> tuple[list[str], dict]:
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), "--workdir", str(workdir), "--pool-size", "6",
         "--eval-size", "2", "--epochs", "1", "--warmup-steps", "0"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    return lines, json.loads(lines[-1])


def test_demo_runs_a_cycle_and_resumes(tmp_path: Path) -> None:
    lines, summary = run_demo(tmp_path)
    (cycle,) = summary["cycles"]
    assert cycle["cycle"] == 1 and cycle["next_pool"] >= 1
    run = tmp_path / "store" / "runs" / "demo" / "cycle-001"
    for stage in STAGES_WITH_MANIFEST:
        manifest = json.loads((run / stage / "_manifest.json").read_text())
        assert manifest["stage"] == stage and manifest["outputs"], stage
    verdicts = [json.loads(x) for x in (run / "verify" / "verdicts.jsonl").read_text().splitlines()]
    refs = [v for v in verdicts if v["sample_id"].endswith("#ref")]
    assert len(refs) == 6 and all(v["passed"] for v in refs), "every seed reference passes its tests"
    assert (run / "train" / "adapter" / "adapter_model.safetensors").exists()
    trained = [ln for ln in lines if " train " in f" {ln} " and " done " in f" {ln} "]
    assert trained and "(cached)" not in trained[0], "the first run trains"

    again, summary_again = run_demo(tmp_path)
    assert any("teacher-solve" in ln and "already done" in ln for ln in again)
    assert any("train" in ln and "(cached)" in ln for ln in again)
    assert summary_again["cycles"][0]["next_pool"] == cycle["next_pool"]
