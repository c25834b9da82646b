"""Keep the DistillationRun CRD's spec schema generated from the run configuration.

``python -m iterkd.controller.crd FILE...`` rewrites the ``spec:`` block of each CRD file with
:func:`iterkd.controller.config.crd_spec_schema`; ``--check`` exits 1 when a file is out of date.
``make k8s`` runs it on the chart's CRD, so `kubectl apply` rejects a typo in a run's spec the way
`iterkd config check` does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from iterkd.controller.config import crd_spec_schema

START = "            spec:\n"
END = "            status:\n"


def render_spec(indent: int = 14) -> str:
    body = yaml.safe_dump(crd_spec_schema(), sort_keys=False, width=110)
    return START + "".join(" " * indent + line + "\n" for line in body.splitlines())


def rewrite(text: str) -> str:
    start = text.index(START)
    end = text.index(END, start)
    return text[:start] + render_spec() + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for path in args.files:
        text = path.read_text(encoding="utf-8")
        new = rewrite(text)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if args.check and stale:
        print(f"out of date (run `make k8s`): {', '.join(map(str, stale))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
