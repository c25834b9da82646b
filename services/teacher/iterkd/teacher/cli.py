"""``iterkd models ...`` commands: build tiny local models.

Registered with the ``iterkd`` dispatcher through the ``iterkd.commands`` entry point
(``models = "iterkd.teacher.cli:register_models"``); also runs standalone as
``python -m iterkd.teacher.cli models tiny --out DIR``. Heavy libraries (torch, transformers) are
imported only when a command runs, so registering the commands stays cheap.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from iterkd.shared.cli import run_command
from iterkd.shared.errors import BadRequest
from iterkd.teacher.tiny import METADATA_FILE, PRESETS


def _cmd_tiny(args: argparse.Namespace) -> int:
    """Build a tiny model and print one JSON line; bad input is BadRequest (exit 2, by the dispatcher)."""
    from iterkd.teacher.tiny import build_tiny_model

    if args.preset not in PRESETS:
        raise BadRequest(f"unknown preset {args.preset!r}; choose one of {', '.join(sorted(PRESETS))}")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        out_dir = build_tiny_model(
            args.out,
            preset=args.preset,
            seed=args.seed,
            overwrite=args.overwrite,
            warmup_steps=args.warmup_steps,
        )
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    meta = json.loads((out_dir / METADATA_FILE).read_text(encoding="utf-8"))
    print(
        json.dumps(
            {
                "out_dir": str(out_dir),
                "preset": meta["preset"],
                "seed": meta["seed"],
                "params": meta["params"],
                "vocab_size": meta["vocab_size"],
                "seconds": meta["build_seconds"],
            }
        ),
        flush=True,
    )
    return 0


def register_models(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` command (with sub-command ``tiny``) to an argparse sub-parser set."""
    models = subparsers.add_parser("models", help="build local models", description="Build local models.")
    models.set_defaults(func=lambda _args: _usage(models))
    sub = models.add_subparsers(dest="models_command", metavar="{tiny,miniature,sample}")
    tiny = sub.add_parser(
        "tiny",
        help="build a tiny Llama model + BPE tokenizer trained on the Python stdlib (offline)",
        description=(
            "Build a tiny randomly initialised Llama model and a byte-level BPE tokenizer trained on "
            "the Python standard library's sources, saved so that AutoTokenizer and "
            "AutoModelForCausalLM load it offline. Deterministic for a given preset and seed."
        ),
    )
    tiny.add_argument("--out", required=True, help="output directory (created atomically)")
    tiny.add_argument(
        "--preset",
        default="small",
        help=f"model size: {' | '.join(sorted(PRESETS))} (default: small)",
    )
    tiny.add_argument("--seed", type=int, default=0, help="weight-init seed (default: 0)")
    tiny.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    tiny.add_argument(
        "--warmup-steps",
        type=_non_negative_int,
        default=0,
        help="causal-LM training steps on the stdlib corpus so output looks code-ish (default: 0)",
    )
    tiny.set_defaults(func=_cmd_tiny)
    from iterkd.teacher.miniature_cli import register_miniature

    register_miniature(sub)


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    print("error: a models sub-command is required (tiny)", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m iterkd.teacher.cli models tiny ...``."""
    parser = argparse.ArgumentParser(prog="iterkd-teacher", description="IterKD teacher model tools.")
    subparsers = parser.add_subparsers(dest="command", metavar="{models}")
    register_models(subparsers)
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_usage(sys.stderr)
        return 2
    return run_command(args, prog="iterkd-teacher")


if __name__ == "__main__":
    sys.exit(main())
