"""`iterkd data check FILE [--kind]`: reads a file as the services would, prints a JSON summary
last, or exits 2 naming the file and the first bad record."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from iterkd.shared.cli import main

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["data", "check", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def summary(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_data_is_a_command_of_shared_itself() -> None:
    [ep] = [ep for ep in entry_points(group="iterkd.commands") if ep.name == "data"]
    assert ep.value.startswith("iterkd.shared.")  # every image installs shared, so every image has it


def test_each_kind_is_guessed_and_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({"id": f"q{i}", "prompt": "p", "tests": "assert True"}) + "\n"
                                for i in range(3)))
    samples = tmp_path / "samples.jsonl.gz"
    with gzip.open(samples, "wt") as fh:
        fh.write(json.dumps({"task_id": "HumanEval/0", "completion": "    return 1\n"}) + "\n")
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps([{"instruction": "Add.", "response": ["a + b", "a - b"]},
                                 {"prompt": "Neg.", "chosen": "-x", "rejected": "x"}]))
    expected = [(problems, "problems", "jsonl", 3, ["id", "prompt", "tests"]),
                (samples, "samples", "jsonl", 1, ["completion", "task_id"]),
                (pairs, "pairs", "json-array", 2, ["chosen", "instruction", "prompt", "rejected", "response"])]
    for path, kind, container, records, fields in expected:
        code, out, _ = run(capsys, str(path))
        assert code == 0
        assert summary(out) == {"file": str(path), "kind": kind, "container": container, "records": records,
                                "fields": fields}
    # --kind overrides the guess, and a file read as the wrong kind is refused by record
    code, out, _ = run(capsys, str(pairs), "--kind", "pairs")
    assert code == 0 and summary(out)["records"] == 2
    code, _, err = run(capsys, str(problems), "--kind", "samples")
    assert code == 2 and f"{problems}:1: missing" in err and '"completion"' in err


@pytest.mark.skipif(not (SHARED_DATA / "mbpp.jsonl").exists(), reason=f"MBPP data not found at {SHARED_DATA}")
def test_mbpp_and_humaneval_as_published(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(SHARED_DATA / "mbpp.jsonl"))
    assert code == 0 and summary(out)["kind"] == "problems" and summary(out)["records"] == 974
    if (SHARED_DATA / "sanitized-mbpp.json").exists():
        code, out, _ = run(capsys, str(SHARED_DATA / "sanitized-mbpp.json"))
        assert code == 0 and summary(out)["records"] == 427 and summary(out)["container"] == "json-array"


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ('[{"instruction": "a", "response": ["x", "y"]},\n {"instruction": "b", "response": "x"}]', "p.json",
         'p.json:2: record 2: field "response"'),
        ('{"problem_id": "q", "completion": "x"}\n{"problem_id": "q"}\n', "s.jsonl", 's.jsonl:2: missing "completion"'),
        ('{"id": "a", "prompt": "p", "tests": "t"}\n{oops\n', "q.jsonl", "q.jsonl:2: invalid JSON"),
        ('{"name": "a"}\n', "x.jsonl", "x.jsonl:1: cannot tell the kind of data"),
        ("", "e.jsonl", "e.jsonl: no records"),
        ("[]", "e.json", "e.json: no records"),
    ],
)
def test_bad_files_exit_2_naming_the_first_bad_record(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       content: str, name: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    code, out, err = run(capsys, str(path))
    assert code == 2 and out == ""
    assert message in err and err.startswith("iterkd data: ")


def test_missing_file_and_bad_kind_exit_2(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "iterkd.shared.cli", "data", "check"]
    proc = subprocess.run([*cmd, str(tmp_path / "absent.jsonl")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "absent.jsonl: no such file" in proc.stderr
    proc = subprocess.run([*cmd, "x.jsonl", "--kind", "verdicts"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "invalid choice: 'verdicts'" in proc.stderr
