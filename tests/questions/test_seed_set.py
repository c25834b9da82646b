"""Checks on the project's own seed question pool (shared/iterkd/shared/data/seed.jsonl).

1. schema: keys, types, unique ids and entry points, balanced levels;
2. every canonical solution passes its own tests, in the feedback sandbox;
3. trivial answers (pass / return None / return the first argument / return an empty value) fail;
4. no overlap with HumanEval or MBPP by the question service's decontamination rule.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from iterkd.feedback.harness import program_for
from iterkd.feedback.sandbox import Limits, SandboxPool
from iterkd.questions.decontam import build_decontaminator, problem_text
from iterkd.shared.formats import Problem, read_problems

REPO = Path(__file__).resolve().parents[2]
SEED_PATH = REPO / "shared" / "iterkd" / "shared" / "data" / "seed.jsonl"
SHARED_DATA = REPO.parent / "shared" / "data"

KEYS = {
    "id": str,
    "prompt": str,
    "entry_point": str,
    "tests": str,
    "language": str,
    "level": str,
    "source": str,
    "parent_id": type(None),
    "canonical_solution": str,
    "harness": str,
    "test_setup": str,
}
LEVELS = ("easy", "medium", "hard")


def load_seed() -> list[dict]:
    """The raw records, to check the file's exact keys and types."""
    with SEED_PATH.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


SEED = load_seed()
PROBLEMS = read_problems(SEED_PATH)


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    with SandboxPool(limits=Limits(timeout_s=10)) as sandbox:
        yield sandbox


# ---------------------------------------------------------------- 1. schema


def test_schema_and_balance():
    assert len(SEED) >= 60
    for q in SEED:
        assert set(q) == set(KEYS), (q.get("id"), set(q) ^ set(KEYS))
        for key, kind in KEYS.items():
            assert isinstance(q[key], kind), (q["id"], key)
        assert q["language"] == "python" and q["source"] == "seed" and q["harness"] == "mbpp", q["id"]
        assert q["level"] in LEVELS, q["id"]
        assert re.fullmatch(rf"seed/{q['level']}/[a-z0-9_]+", q["id"]), q["id"]
        assert f"def {q['entry_point']}(" in q["canonical_solution"], q["id"]
        assert f"def {q['entry_point']}(" in q["prompt"], q["id"]
        assert ">>> " in q["prompt"], q["id"]
        asserts = len(re.findall(r"^assert ", q["tests"], re.M))
        assert asserts >= (7 if q["level"] == "hard" else 5), (q["id"], asserts)
    ids = [q["id"] for q in SEED]
    entries = [q["entry_point"] for q in SEED]
    assert len(set(ids)) == len(ids)
    assert len(set(entries)) == len(entries)
    for level in LEVELS:
        assert sum(q["level"] == level for q in SEED) >= 20, level


# ------------------------------------------------- 2. references pass tests


def test_canonical_solutions_pass(pool: SandboxPool) -> None:
    results = pool.run_many([program_for(p, p.canonical_solution or "") for p in PROBLEMS])
    failed = {p.id: r.result for p, r in zip(PROBLEMS, results, strict=True) if not r.passed}
    assert not failed, f"reference solutions fail their tests: {failed}"


# --------------------------------------------------- 3. trivial answers fail


def _signature(question: Problem) -> tuple[str, list[str]]:
    """The `name(args) -> ret` text of the entry point and its parameter names."""
    tree = ast.parse(question.canonical_solution)
    fn = next(
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == question.entry_point
    )
    line = question.canonical_solution.splitlines()[fn.lineno - 1]
    header = line[len("def "):].rstrip().removesuffix(":")
    return header, [arg.arg for arg in fn.args.args]


TRIVIAL_BODIES = ["pass", "return None", "return 0", 'return ""', "return []", "return {}"]


def test_trivial_answers_fail(pool: SandboxPool) -> None:
    cases = []
    for p in PROBLEMS:
        header, params = _signature(p)
        for body in TRIVIAL_BODIES + ([f"return {params[0]}"] if params else []):
            cases.append((f"{p.id} :: {body}", program_for(p, f"def {header}:\n    {body}\n")))
    results = pool.run_many([program for _, program in cases])
    passing = [name for (name, _), r in zip(cases, results, strict=True) if r.passed]
    assert not passing, f"trivial answers pass the tests: {passing}"


# ------------------------------------------------------ 4. decontamination


def test_no_overlap_with_humaneval() -> None:
    decon = build_decontaminator(humaneval=True)
    hits = {p.id: decon.matches(problem_text(p)) for p in PROBLEMS}
    assert not {k: v for k, v in hits.items() if v}, "seed questions overlap HumanEval"


def test_no_overlap_with_mbpp() -> None:
    path = SHARED_DATA / "mbpp.jsonl"
    if not path.exists():
        pytest.skip(f"MBPP data not found at {path} (it is not part of a user's clone)")
    decon = build_decontaminator(humaneval=False, mbpp_path=str(path), mbpp_split="all")
    hits = {p.id: decon.matches(problem_text(p)) for p in PROBLEMS}
    assert not {k: v for k, v in hits.items() if v}, "seed questions overlap MBPP"
