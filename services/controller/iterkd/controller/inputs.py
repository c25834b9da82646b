"""A run's own inputs: the seed pool and the evaluation set, written once when the run starts.

They are the only artifacts the controller writes (``runs/{run}/inputs/``); every other artifact
is a stage's output. A problem set comes from the built-in seed questions, HumanEval, MBPP's test
split, the miniature world, or a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import iterkd.shared
from iterkd.controller.config import ProblemSet
from iterkd.shared.config import ConfigError
from iterkd.shared.formats import Problem, load_humaneval, load_mbpp, read_problems

SEED_FILE = Path(iterkd.shared.__file__).parent / "data" / "seed.jsonl"
SEED_LANGUAGES_FILE = SEED_FILE.with_name("seed-languages.jsonl")
LANGUAGES = ("python", "c", "cpp", "java", "javascript", "go")


def _spread(problems: list[Problem], limit: int | None) -> list[Problem]:
    """The first ``limit`` problems taken evenly across the set (easy to hard in the seed set)."""
    if not limit or limit >= len(problems):
        return problems
    step = len(problems) / limit
    return [problems[int(i * step)] for i in range(limit)]


def load_problem_set(ps: ProblemSet, field: str, base_dir: Path | None = None) -> list[Problem]:
    """The problems a ProblemSet names; ConfigError naming ``field`` when they cannot be had."""
    source = ps.source
    if source == "seed":
        problems = read_problems(SEED_FILE)
    elif source.startswith("seed:"):  # seed:all (every language) or seed:LANGUAGE
        which = source.split(":", 1)[1]
        if which not in ("all", *LANGUAGES):
            raise ConfigError(f"{field}.source: {source!r}: use seed:all or seed:LANGUAGE ({', '.join(LANGUAGES)})")
        problems = [*read_problems(SEED_FILE), *read_problems(SEED_LANGUAGES_FILE)]
        if which != "all":
            problems = [p for p in problems if p.language == which]
    elif source == "humaneval":
        problems = load_humaneval()
    elif source == "mbpp":
        path = os.environ.get("ITERKD_MBPP")
        if not path:
            raise ConfigError(f"{field}.source: mbpp needs ITERKD_MBPP set to mbpp.jsonl or sanitized-mbpp.json")
        problems = load_mbpp(path, split="test")
    elif source.startswith("miniature:"):
        from iterkd.shared.miniature.world import SPLITS, export_split

        _, split, *rest = source.split(":")
        if split not in SPLITS:
            raise ConfigError(f"{field}.source: unknown miniature split {split!r}; splits: {', '.join(SPLITS)}")
        try:
            depths = tuple(int(d) for d in rest[0].split(",")) if rest else (2, 3)
        except ValueError:
            depths = ()
        if len(rest) > 1 or not depths or not all(1 <= d <= 3 for d in depths):
            raise ConfigError(f"{field}.source: {source!r}: expected miniature:SPLIT or miniature:SPLIT:DEPTHS "
                              "with depths in 1..3, such as miniature:heldout:2")
        return export_split(split, ps.limit or 100, seed=ps.seed, depths=depths)
    else:
        path = Path(source).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.exists():
            raise ConfigError(f"{field}.source: no such file {path} (or use seed, seed:all, seed:LANGUAGE, humaneval, "
                              "mbpp, miniature:SPLIT)")
        problems = read_problems(path)
    if not problems:
        raise ConfigError(f"{field}.source: {source} has no problems")
    return _spread(problems, ps.limit)
