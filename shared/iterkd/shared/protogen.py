"""Generate the Python stubs of protos/iterkd/v1/*.proto into shared/iterkd/v1 (``make protos``).

The stubs are committed; ``tests/shared/test_protos.py`` regenerates them into a temporary folder
and checks that nothing changes, so a proto edit without ``make protos`` fails the tests.
Needs grpcio-tools (a development tool, not a runtime dependency).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PROTO_ROOT = REPO / "protos"
OUT_ROOT = REPO / "shared"


def proto_files(root: Path = PROTO_ROOT) -> list[Path]:
    return sorted((root / "iterkd" / "v1").glob("*.proto"))


def generate(out_root: Path = OUT_ROOT, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc; return the files written under ``out_root/iterkd/v1``."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    out_dir = out_root / "iterkd" / "v1"
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [str(p.relative_to(proto_root)) for p in proto_files(proto_root)]
    args = [
        "protoc",
        f"-I{proto_root}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {files}")
    init = out_dir / "__init__.py"
    init.write_text('"""Generated gRPC stubs of protos/iterkd/v1 (make protos). Do not edit."""\n')
    return sorted(p for p in out_dir.iterdir() if p.suffix in {".py", ".pyi"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_ROOT, help="output root (default: shared/)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
