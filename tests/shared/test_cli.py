"""The `iterkd` dispatcher: commands come from the installed services' entry points."""

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from iterkd.shared.cli import main


def test_installed_services_and_commands_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    commands = {ep.name for ep in entry_points(group="iterkd.commands")}
    assert {"eval", "models"} <= commands
    for name in ["serve", *commands]:
        assert name in out


def test_unknown_service_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "nope"]) == 2
    assert "unknown service 'nope'" in capsys.readouterr().err


def test_bad_config_exits_2_and_names_the_field(tmp_path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("store: {backend: ftp}\n")
    proc = subprocess.run([sys.executable, "-m", "iterkd.shared.cli", "serve", "feedback", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "bad.yaml: store.backend" in proc.stderr


def test_unusable_store_exits_2(tmp_path) -> None:
    cfg = tmp_path / "s3.yaml"
    cfg.write_text(f"store: {{backend: s3, credentials_dir: {tmp_path / 'absent'}}}\n")
    proc = subprocess.run([sys.executable, "-m", "iterkd.shared.cli", "serve", "feedback", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "store.credentials_dir: cannot read" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("error", "status"), [
    ("BadRequest", 2), ("ConfigError", 2), ("InvalidKey", 2), ("FileExistsError", 2),
    ("Unavailable", 1), ("DeviceUnavailable", 1), ("ConnectionRefusedError", 1),
])
def test_every_command_exits_one_way(error: str, status: int, capsys: pytest.CaptureFixture[str]) -> None:
    """The dispatcher, not each command, turns an error into ``iterkd COMMAND: message`` and a status."""
    import argparse
    import builtins

    from iterkd.shared import config, errors, store
    from iterkd.shared.cli import run_command

    cls = next(getattr(m, error) for m in (errors, config, store, builtins) if hasattr(m, error))

    def fails(_args: argparse.Namespace) -> int:
        raise cls("runs/x/p.jsonl: the culprit")

    assert run_command(argparse.Namespace(command="demo", func=fails)) == status
    assert capsys.readouterr().err == "iterkd demo: runs/x/p.jsonl: the culprit\n"
