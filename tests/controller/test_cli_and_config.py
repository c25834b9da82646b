"""The run configuration and the CLI's usage errors: exit 2 with a message naming the culprit,
and nothing written. These need no services, so they run in a second."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from iterkd.controller.config import ControllerFileConfig, embedded_config
from iterkd.shared.config import parse_config

IKD = str(Path(sys.executable).with_name("iterkd"))


def ikd(*args: str, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ITERKD_HOME": str(home)}
    return subprocess.run([IKD, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_config_init_prints_the_embedded_default_and_check_accepts_it(tmp_path: Path) -> None:
    out = ikd("config", "init", "--world", "seed", "--questions", "5", "--cycles", "3", "--workdir",
              str(tmp_path / "w"), home=tmp_path)
    assert out.returncode == 0, out.stderr
    data = yaml.safe_load(out.stdout)
    assert data["run"]["cycles"] == 3 and data["run"]["pool"] == {"source": "seed", "limit": 5}
    assert data["store"]["root"] == str((tmp_path / "w" / "store").resolve())
    path = tmp_path / "run.yaml"
    path.write_text(out.stdout)
    check = ikd("config", "check", str(path), home=tmp_path)
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout.splitlines()[-1])["cycles"] == 3
    # The default that `make demo` runs: the miniature world, its files under $ITERKD_HOME.
    out = ikd("config", "init", home=tmp_path)
    assert out.returncode == 0, out.stderr
    raw = yaml.safe_load(out.stdout)
    cfg = parse_config(raw, ControllerFileConfig)
    assert cfg.controller.executor == "local" and cfg.run.pool.source == "miniature:seed:2"
    assert cfg.run.eval.source == "miniature:heldout:2" and cfg.run.stages.train.replay
    assert raw["teacher"]["model"] == str(tmp_path / "miniature" / "teacher")
    assert raw["questions"]["decontamination"]["extra_sets"] == [str(tmp_path / "miniature" / "heldout.jsonl")]
    assert raw == embedded_config(workdir=tmp_path)
    with pytest.raises(ValueError, match="unknown world 'mini'"):
        embedded_config("mini")


def test_run_without_config_names_the_missing_demo_files_and_writes_nothing(tmp_path: Path) -> None:
    out = ikd("run", "--run-id", "r1", home=tmp_path)
    assert out.returncode == 2, out.stderr
    assert f"needs {tmp_path / 'miniature' / 'teacher'}" in out.stderr, out.stderr
    assert "heldout.jsonl" in out.stderr and "make demo" in out.stderr and "--world seed" in out.stderr
    assert not (tmp_path / "store" / "runs" / "r1").exists()


def test_config_schema_is_json_schema_of_every_section(tmp_path: Path) -> None:
    out = ikd("config", "schema", home=tmp_path)
    schema = json.loads(out.stdout)
    assert {"run", "controller", "store"} <= set(schema["properties"])
    run_def = schema["$defs"]["RunConfig"]["properties"]
    assert run_def["cycles"]["minimum"] == 1 and "stages" in run_def


@pytest.mark.parametrize(("content", "message"), [
    ({"run": {"cycles": 0}}, "run.cycles: Input should be greater than or equal to 1"),
    ({"run": {"stages": {"train": {"lr": 1}}}}, "run.stages.train.lr: unknown field"),
    ({"run": {"stages": {"teacher-solve": {"n": 0}}}}, "run.stages.teacher-solve.n"),
    ({"controller": {"executor": "slurm"}}, "controller.executor"),
    ({"runn": {}}, "unknown section(s) runn"),
])
def test_config_check_names_the_file_and_the_field(tmp_path: Path, content: dict, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    out = ikd("config", "check", str(path), home=tmp_path)
    assert out.returncode == 2
    assert str(path) in out.stderr and message in out.stderr, out.stderr


def test_run_usage_errors_exit_2_and_write_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cases = [
        (["run", "--config", str(tmp_path / "missing.yaml")], "missing.yaml: no such file"),
        (["run", "--from-stage", "train"], "--from-stage re-runs part of an existing run"),
        (["run", "--cycle", "2"], "--cycle goes with --from-stage"),
        (["run", "--from-stage", "bake", "--resume", "x"], "invalid choice: 'bake'"),
        (["run", "--resume", "nope"], "no run 'nope'"),
        (["status"], "no runs in the store"),
        (["status", "nope"], "no run 'nope'"),
        (["cancel", "nope"], "no run 'nope'"),
        (["logs", "nope"], "no run 'nope'"),
    ]
    for args, message in cases:
        out = ikd(*args, home=home)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert message in out.stderr, (args, out.stderr)
    cfg = tmp_path / "run.yaml"
    raw = embedded_config("seed", workdir=tmp_path / "w")
    raw["run"]["pool"] = {"source": "no/such/pool.jsonl"}
    cfg.write_text(yaml.safe_dump(raw))
    out = ikd("run", "--config", str(cfg), "--run-id", "bad", home=home)
    assert out.returncode == 2 and "run.pool.source: no such file" in out.stderr, out.stderr
    assert not (tmp_path / "w" / "store" / "runs" / "bad").exists()  # nothing half-written
    raw["run"]["pool"] = {"source": "seed"}
    cfg.write_text(yaml.safe_dump(raw))
    out = ikd("run", "--config", str(cfg), "--run-id", "Bad_Id", home=home)
    assert out.returncode == 2 and "invalid run id 'Bad_Id'" in out.stderr, out.stderr
