"""Command-line training without the gRPC server (the local executor and the crash tests use it).

``python -m iterkd.trainer.train_cli train --config run.yaml --run r1 --cycle 0 --train-set URI``
prints one JSON object per progress record on stdout and exits 0 when the stage is done, 2 on bad
input. ``build-set`` turns problems + teacher samples + verdicts into a training set.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from iterkd.shared.config import ConfigError, load_config, merge_overrides
from iterkd.shared.formats import DataError, read_jsonl, read_problems, read_samples, write_jsonl
from iterkd.shared.log import setup_logging
from iterkd.shared.rpc import BadRequest
from iterkd.shared.store import InvalidKey, open_store
from iterkd.trainer.config import TrainerFileConfig


def _train(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from iterkd.trainer.job import make_spec, run_training

    cfg = load_config(args.config, TrainerFileConfig)
    setup_logging(cfg.logging.level, cfg.logging.format)
    store = open_store(cfg.store)
    tcfg = merge_overrides(cfg.trainer, args.config_json or "")
    spec = make_spec(store, tcfg, args.run, args.cycle, args.train_set, args.output_uri or "",
                     args.base_model or "", args.init_adapter_uri or "")

    def emit(p: object) -> None:
        print(json.dumps(MessageToDict(p, always_print_fields_with_no_presence=True)), flush=True)  # type: ignore[arg-type]

    run_training(store, spec, emit)
    return 0


def _build_set(args: argparse.Namespace) -> int:
    from iterkd.shared.formats import Verdict
    from iterkd.shared.prompts import DEFAULT_SOLVE_TEMPLATE
    from iterkd.trainer.data import build_examples

    cfg = load_config(args.config, TrainerFileConfig) if args.config else None
    template = cfg.trainer.prompts.solve_template if cfg else DEFAULT_SOLVE_TEMPLATE
    examples, counts = build_examples(read_problems(args.problems), read_samples(args.samples),
                                      read_jsonl(Verdict, args.verdicts), template, args.max_chosen)
    write_jsonl(args.out, examples)
    print(json.dumps(counts), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iterkd.trainer.train_cli", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one (run, cycle) and print progress as JSON lines")
    t.add_argument("--config", help="YAML configuration file")
    t.add_argument("--run", required=True)
    t.add_argument("--cycle", type=int, required=True)
    t.add_argument("--train-set", required=True, help="URI or store key of the training examples")
    t.add_argument("--output-uri")
    t.add_argument("--base-model")
    t.add_argument("--init-adapter-uri")
    t.add_argument("--config-json", help="overrides of the trainer section, a JSON object")
    t.set_defaults(func=_train)
    b = sub.add_parser("build-set", help="training examples from problems, teacher samples and verdicts")
    b.add_argument("--config", help="YAML configuration file (for the solve template)")
    b.add_argument("--problems", required=True)
    b.add_argument("--samples", required=True)
    b.add_argument("--verdicts", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--max-chosen", type=int)
    b.set_defaults(func=_build_set)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, DataError, BadRequest, InvalidKey) as exc:
        print(f"train_cli {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
