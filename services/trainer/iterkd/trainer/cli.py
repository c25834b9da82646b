"""``iterkd train`` and ``iterkd train-set``: training without the gRPC server (the local executor
and the crash tests use it), registered through the ``iterkd.commands`` entry point.

``iterkd train --config run.yaml --run r1 --cycle 0 --train-set URI`` prints one JSON object per
progress record on stdout and exits 0 when the stage is done. ``iterkd train-set`` turns problems +
teacher samples + verdicts into a training set. Errors exit through the dispatcher
(:func:`iterkd.shared.cli.run_command`): a message naming the culprit, status 2 for bad input.
Heavy libraries are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def _train(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from iterkd.shared.config import load_config, merge_overrides
    from iterkd.shared.log import setup_logging
    from iterkd.shared.store import open_store
    from iterkd.trainer.config import TrainerFileConfig
    from iterkd.trainer.job import make_spec, run_training

    cfg = load_config(args.config, TrainerFileConfig)
    setup_logging(cfg.logging.level, cfg.logging.format)
    store = open_store(cfg.store)
    tcfg = merge_overrides(cfg.trainer, args.config_json or "")
    spec = make_spec(store, tcfg, args.run, args.cycle, args.train_set, args.output_uri or "",
                     args.base_model or "", args.init_adapter_uri or "", replay_uri=args.replay or "")

    def emit(p: object) -> None:
        print(json.dumps(MessageToDict(p, always_print_fields_with_no_presence=True)), flush=True)  # type: ignore[arg-type]

    run_training(store, spec, emit)
    return 0


def _build_set(args: argparse.Namespace) -> int:
    from iterkd.shared.config import load_config
    from iterkd.shared.formats import Verdict, read_jsonl, read_problems, read_samples, write_jsonl
    from iterkd.shared.prompts import DEFAULT_SOLVE_TEMPLATE
    from iterkd.trainer.config import TrainerFileConfig
    from iterkd.trainer.data import build_examples

    cfg = load_config(args.config, TrainerFileConfig) if args.config else None
    template = cfg.trainer.prompts.solve_template if cfg else DEFAULT_SOLVE_TEMPLATE
    examples, counts = build_examples(read_problems(args.problems), read_samples(args.samples),
                                      read_jsonl(Verdict, args.verdicts), template, args.max_chosen)
    write_jsonl(args.out, examples)
    print(json.dumps(counts), flush=True)
    return 0


def register_train(subparsers: Any) -> None:
    t = subparsers.add_parser("train", help="train one (run, cycle) and print progress as JSON lines",
                              description=__doc__)
    t.add_argument("--config", help="YAML configuration file")
    t.add_argument("--run", required=True)
    t.add_argument("--cycle", type=int, required=True)
    t.add_argument("--train-set", required=True, help="URI or store key of the training examples")
    t.add_argument("--output-uri")
    t.add_argument("--base-model")
    t.add_argument("--init-adapter-uri")
    t.add_argument("--replay", help="URI or store key of an earlier training set whose examples join this one")
    t.add_argument("--config-json", help="overrides of the trainer section, a JSON object")
    t.set_defaults(func=_train)


def register_train_set(subparsers: Any) -> None:
    b = subparsers.add_parser("train-set", help="training examples from problems, teacher samples and verdicts")
    b.add_argument("--config", help="YAML configuration file (for the solve template)")
    b.add_argument("--problems", required=True)
    b.add_argument("--samples", required=True)
    b.add_argument("--verdicts", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--max-chosen", type=int)
    b.set_defaults(func=_build_set)
