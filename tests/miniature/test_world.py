"""The miniature world: determinism, references pass their own tests in the real sandbox, trivial
answers fail, splits are disjoint by composition, the question service's decontamination flags
copies of held-out problems, and ``iterkd world export``."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import pytest

from iterkd.questions.decontam import build_decontaminator, problem_text
from iterkd.questions.generate import build_prompt, parse_reply
from iterkd.questions.validate import GrpcExecutor
from iterkd.shared.formats import read_problems, write_jsonl
from iterkd.shared.miniature import world
from iterkd.shared.miniature.values import is_literal, random_value

SIZES = {"primitives": 43, "seed": 40, "validation": 20, "heldout": 40}


def test_export_is_deterministic_for_a_seed() -> None:
    a = world.export_split("seed", 25, seed=3)
    b = world.export_split("seed", 25, seed=3)
    c = world.export_split("seed", 25, seed=4)
    assert [p.model_dump() for p in a] == [p.model_dump() for p in b]
    assert [p.prompt for p in a] != [p.prompt for p in c]
    assert len({p.id for p in a}) == 25


def test_problems_are_problem_records_of_the_world() -> None:
    for p in world.export_split("heldout", 10, seed=0):
        assert p.language == "python" and p.source == "miniature" and p.harness == "mbpp"
        assert p.level == f"depth-{len(world.chain_of(p.id))}"
        assert p.canonical_solution and f"def {p.entry_point}(" in p.canonical_solution
        assert re.search(rf"def {p.entry_point}\(\w+: (list\[int\]|int|str)\) -> (list\[int\]|int|str):", p.prompt)
        assert p.tests.count("assert ") >= 4
        assert all(line.startswith(f"assert {p.entry_point}(") for line in p.tests.splitlines())


def test_prompt_layout_is_the_question_services_layout() -> None:
    """World prompts look like the prompts of teacher-written questions (generate.build_prompt)."""
    for p in world.export_split("seed", 8, seed=1):
        sig = p.prompt.split("```python\n")[1].splitlines()[0]
        reply = (f"### Description\n{p.prompt.split(chr(10))[0]}\n\n### Signature\n```python\n{sig}\n```\n\n"
                 f"### Tests\n```python\n{p.tests}\n```\n")
        q = parse_reply(reply)
        assert q is not None
        assert build_prompt(q) == p.prompt


def test_wording_varies_not_only_content() -> None:
    chain = world.compositions(2, "seed")[0]
    rng = random.Random(0)
    texts = {world.make_task(chain, rng).description for _ in range(30)}
    # strip the constants: what is left differs in wording
    skeletons = {re.sub(r"-?\d+", "K", t) for t in texts}
    assert len(skeletons) >= 10


def test_splits_are_disjoint_by_composition() -> None:
    chains = {s: {world.chain_of(p.id) for p in world.export_split(s, 300, seed=0)} for s in world.COMPOSITION_SPLITS}
    assert not chains["seed"] & chains["heldout"]
    assert not chains["seed"] & chains["validation"]
    assert not chains["validation"] & chains["heldout"]
    for split, found in chains.items():
        assert all(world.split_of(c) == split for c in found)
    # the split of a composition does not depend on any seed; every depth-2 one has exactly one
    twos = world.compositions(2)
    assert {world.split_of(c) for c in twos} == set(world.COMPOSITION_SPLITS)
    assert sorted(world.compositions(2, "heldout") + world.compositions(2, "seed") +
                  world.compositions(2, "validation")) == sorted(twos)


def test_every_step_of_a_composition_matters() -> None:
    assert not world.admitted(("sort_asc", "sum"))          # sorting cannot change a sum
    assert not world.admitted(("lower", "count_upper"))     # always 0
    assert not world.admitted(("sum", "keep_even"))         # types do not line up
    assert world.admitted(("keep_even", "sum"))


def _trivial(p) -> list[str]:
    sig = p.prompt.split("```python\n")[1].splitlines()[0]
    arg = re.search(r"\((\w+):", sig).group(1)
    return [f"{sig}\n    pass\n", f"{sig}\n    return None\n", f"{sig}\n    return {arg}\n"]


def test_references_pass_and_trivial_answers_fail_in_the_sandbox(feedback_target: str) -> None:
    problems = [p for split, n in SIZES.items() for p in world.export_split(split, n, seed=7)]
    programs, kinds = [], []
    for p in problems:
        programs.append(f"{p.canonical_solution}\n{p.test_setup}\n{p.tests}\n")
        kinds.append(("reference", p.id))
        for t in _trivial(p):
            programs.append(f"{t}\n{p.test_setup}\n{p.tests}\n")
            kinds.append(("trivial", p.id))
    executor = GrpcExecutor(feedback_target, 300)
    try:
        outcomes = executor.execute(programs, 5.0)
    finally:
        executor.close()
    bad_refs = [pid for (kind, pid), o in zip(kinds, outcomes) if kind == "reference" and not o.passed]
    passing_trivial = [pid for (kind, pid), o in zip(kinds, outcomes) if kind == "trivial" and o.passed]
    assert not bad_refs, bad_refs[:5]
    assert not passing_trivial, passing_trivial[:5]


def test_decontamination_flags_copies_of_heldout_problems(tmp_path) -> None:
    heldout = world.export_split("heldout", 120, seed=0)
    path = tmp_path / "heldout.jsonl"
    write_jsonl(path, heldout)
    d = build_decontaminator(humaneval=False, extra_sets=[str(path)])
    copies = [problem_text(p) for p in heldout[:40]]
    renamed = [problem_text(p).replace(p.entry_point, "my_func") for p in heldout[40:80]]
    assert all(d.contaminated_many(copies))
    assert all(d.contaminated_many(renamed))
    # a copy written as a teacher reply (description, signature, solution; tests made later) too
    replies = [p.prompt.split("\n")[0] + "\n" + (p.canonical_solution or "") for p in heldout[80:120]]
    assert sum(d.contaminated_many(replies)) >= 36


def test_typed_random_values() -> None:
    rng = random.Random(0)
    for ann in ("int", "str", "list[int]", "dict[str, int]", "tuple[int, str]", "list[list[int]]", "set[int]",
                "float", "bool", "int | None", "tuple[int, ...]"):
        for _ in range(20):
            assert is_literal(random_value(ann, rng))
    with pytest.raises(ValueError, match="unsupported"):
        random_value("Callable[[int], int]", rng)


def test_world_export_cli(tmp_path) -> None:
    out = tmp_path / "heldout.jsonl"
    cmd = [sys.executable, "-m", "iterkd.shared.cli", "world", "export"]
    done = subprocess.run([*cmd, "--split", "heldout", "--n", "12", "--seed", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["problems"] == 12
    problems = read_problems(out)
    assert [p.model_dump() for p in problems] == [p.model_dump() for p in world.export_split("heldout", 12, seed=2)]
    bad = subprocess.run([*cmd, "--split", "nope", "--n", "3", "--out", str(tmp_path / "x.jsonl")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--split" in bad.stderr
    bad = subprocess.run([*cmd, "--split", "seed", "--n", "3", "--depth", "9", "--out", str(tmp_path / "x.jsonl")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "depths must lie in 1..3" in bad.stderr
    assert not (tmp_path / "x.jsonl").exists()
