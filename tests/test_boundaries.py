"""The layers hold: no service imports another, shared/ imports no service, and the feedback and
question images need no torch, nor does the light shared distribution (import-linter contracts in
.importlinter)."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "lint-imports (import-linter) is not installed in this environment"
    proc = subprocess.run([exe, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    declared = (REPO / ".importlinter").read_text().count("[importlinter:contract:")
    assert f"Contracts: {declared} kept, 0 broken." in proc.stdout
