"""Run every benchmark in bench/ (each a script printing a final JSON line) and summarise.

    python bench/run_all.py [--quick] [--only NAME ...]

Each benchmark measures against the peer it replaces in the same run and reports ratios, since
absolute times on a shared machine are noisy. This runner only collects their last JSON lines.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names (e.g. sandbox pylint)")
    args = parser.parse_args(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    summary: dict[str, object] = {}
    failed = []
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        print(f"== {name} ==", flush=True)
        t0 = time.monotonic()
        cmd = [sys.executable, str(script), *(["--quick"] if args.quick else [])]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        print(proc.stdout, end="", flush=True)
        last = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{")), None)
        if proc.returncode != 0 or last is None:
            failed.append(name)
            summary[name] = {"error": f"exit {proc.returncode}"}
        else:
            summary[name] = json.loads(last)
        print(f"({name}: {time.monotonic() - t0:.1f}s)\n", flush=True)
    print(json.dumps(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
