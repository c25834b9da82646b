"""``iterkd world export``: write a split of the miniature world as problem JSON Lines.

Registered with the ``iterkd`` dispatcher through the ``iterkd.commands`` entry point of
``iterkd-shared``, so every image has it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from iterkd.shared.cli import positive_int
from iterkd.shared.formats import write_jsonl


def _depths(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated depths such as 2,3, got {text!r}") from None
    if not values or any(not 1 <= v <= 3 for v in values):  # depth 4 exists, but enumerating it is slow
        raise argparse.ArgumentTypeError(f"depths must lie in 1..3, got {text!r}")
    return values


def _cmd_export(args: argparse.Namespace) -> int:
    from iterkd.shared.miniature.world import export_split

    try:
        problems = export_split(args.split, args.n, seed=args.seed, depths=args.depth, n_tests=args.tests)
    except ValueError as exc:
        print(f"iterkd world export: {exc}", file=sys.stderr)
        return 2
    try:
        write_jsonl(args.out, problems)
    except OSError as exc:
        print(f"iterkd world export: {args.out}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return 2
    depths = Counter(p.level for p in problems)
    print(json.dumps({"out": args.out, "split": args.split, "problems": len(problems),
                      "compositions": len({p.id.split("/")[2] for p in problems}),
                      "levels": dict(sorted(depths.items()))}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    world = subparsers.add_parser("world", help="the miniature world of procedural Python tasks",
                                  description="The miniature world of procedural Python tasks.")
    world.set_defaults(func=lambda _a: (world.print_usage(sys.stderr),
                                        print("error: a world sub-command is required (export)", file=sys.stderr),
                                        2)[-1])
    sub = world.add_subparsers(dest="world_command", metavar="{export}")
    export = sub.add_parser(
        "export", help="write a split as problem JSON Lines",
        description="Write N problems of a split (primitives: single operations; seed, validation, heldout: "
                    "compositions, disjoint by composition) as problem JSON Lines. Deterministic for --seed.")
    export.add_argument("--split", required=True, choices=["primitives", "seed", "validation", "heldout"])
    export.add_argument("--n", type=positive_int, required=True, help="number of problems")
    export.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    export.add_argument("--depth", type=_depths, default=[2, 3],
                        help="composition depths, comma-separated (default 2,3; primitives are depth 1)")
    export.add_argument("--tests", type=positive_int, default=5, help="asserts per problem (default 5)")
    export.add_argument("--out", required=True, help="output file (written atomically)")
    export.set_defaults(func=_cmd_export)
