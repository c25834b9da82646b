"""Checks on the project's own seed question pool (shared/iterkd/shared/data/seed.jsonl, Python,
and seed-languages.jsonl, C/C++/Java/JavaScript/Go).

1. schema: keys, types, unique ids and entry points, balanced levels;
2. every canonical solution passes its own tests, in the feedback sandbox;
3. trivial answers (pass / return None / return the first argument / return an empty value) fail;
   in the other languages, the reference with its entry function's body replaced by returns of
   zero values, and at least one of those fails in the tests rather than at compile time;
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
LANG_SEED_PATH = SEED_PATH.with_name("seed-languages.jsonl")
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


def load_seed(path: Path = SEED_PATH) -> list[dict]:
    """The raw records, to check the file's exact keys and types."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


SEED = load_seed()
PROBLEMS = read_problems(SEED_PATH)
LANG_SEED = load_seed(LANG_SEED_PATH)
LANG_PROBLEMS = read_problems(LANG_SEED_PATH)
OTHER_LANGUAGES = ("c", "cpp", "java", "javascript", "go")


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
    hits = {p.id: decon.matches(problem_text(p)) for p in PROBLEMS + LANG_PROBLEMS}
    assert not {k: v for k, v in hits.items() if v}, "seed questions overlap HumanEval"


def test_no_overlap_with_mbpp() -> None:
    path = SHARED_DATA / "mbpp.jsonl"
    if not path.exists():
        pytest.skip(f"MBPP data not found at {path} (it is not part of a user's clone)")
    decon = build_decontaminator(humaneval=False, mbpp_path=str(path), mbpp_split="all")
    hits = {p.id: decon.matches(problem_text(p)) for p in PROBLEMS + LANG_PROBLEMS}
    assert not {k: v for k, v in hits.items() if v}, "seed questions overlap MBPP"


# ------------------------------------------- the other five languages


CHECK_CALL = {"c": r"\bassert\(", "cpp": r"\bassert\(", "java": r"\bcheck\(", "javascript": r"\bassert\.",
              "go": r"\bpanic\("}
DEFINITION = {
    "c": r"^[\w \t*]+\b{}\s*\(", "cpp": r"^[\w \t*:<>,&]+\b{}\s*\(", "java": r"^\s*static\s+[\w<>\[\], ]+\b{}\s*\(",
    "javascript": r"^function\s+{}\s*\(", "go": r"^func\s+{}\s*\(",
}


def test_other_languages_schema_and_balance() -> None:
    assert {q["language"] for q in LANG_SEED} == set(OTHER_LANGUAGES)
    for q in LANG_SEED:
        assert set(q) == set(KEYS), (q.get("id"), set(q) ^ set(KEYS))
        for key, kind in KEYS.items():
            assert isinstance(q[key], kind), (q["id"], key)
        assert q["source"] == "seed" and q["harness"] == "mbpp" and q["level"] in LEVELS, q["id"]
        assert re.fullmatch(rf"seed/{q['level']}/{q['language']}_[a-z0-9_]+", q["id"]), q["id"]
        assert re.search(DEFINITION[q["language"]].format(q["entry_point"]), q["canonical_solution"], re.M), q["id"]
        assert f"`{q['entry_point']}" in q["prompt"] or f" {q['entry_point']}(" in q["prompt"], q["id"]
        checks = len(re.findall(CHECK_CALL[q["language"]], q["tests"]))
        assert checks >= (6 if q["level"] == "hard" else 5), (q["id"], checks)
    for lang in OTHER_LANGUAGES:
        levels = [q["level"] for q in LANG_SEED if q["language"] == lang]
        assert len(levels) >= 4 and {"easy", "hard"} <= set(levels), (lang, levels)
    ids = [q["id"] for q in SEED + LANG_SEED]
    assert len(set(ids)) == len(ids)


def test_other_languages_references_pass(pool: SandboxPool) -> None:
    results = pool.run_many([program_for(p, p.canonical_solution or "") for p in LANG_PROBLEMS])
    failed = {p.id: r.result for p, r in zip(LANG_PROBLEMS, results, strict=True) if not r.passed}
    assert not failed, f"reference solutions fail their tests: {failed}"


def _closing(text: str, i: int, open_: str, close: str) -> int:
    """Index of the bracket that closes the one at ``i``, skipping strings, characters and // comments."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c in "\"'`":
            i += 1
            while text[i] != c:
                i += 2 if text[i] == "\\" else 1
        elif text.startswith("//", i):
            i = text.index("\n", i)
        elif c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError("unbalanced")


def _trivial_bodies(p: Problem, head: str) -> list[str]:
    """Bodies returning zero values of the entry function's return type (``head``: its text up to ``{``)."""
    lang = p.language
    if lang == "c":
        return ["return 0;", "return 1;", "return -1;"]
    if lang == "cpp":
        return ["return {};"]
    if lang == "javascript":
        return ["return undefined;", "return null;", "return 0;", "return '';", "return [];", "return {};",
                "return arguments[0];"]
    if lang == "go":
        result = head[head.rindex(")") + 1:].strip()
        return [f"var zero {result}\n\treturn zero"]
    kind = re.search(r"static\s+(.+?)\s+\w+\s*\(", head)
    assert kind, head
    java = kind.group(1)
    if java == "boolean":
        return ["return false;", "return true;"]
    if java in ("int", "long", "double"):
        return ["return 0;", "return -1;"]
    if java == "String":
        return ['return "";', "return null;"]
    return ["return null;"] + ([f"return new {java[:-2]}[0];"] if java.count("[]") == 1 else [])


def _stubbed(p: Problem, body: str) -> tuple[str, str]:
    code = p.canonical_solution or ""
    found = re.search(DEFINITION[p.language].format(p.entry_point), code, re.M)
    assert found, p.id
    params_end = _closing(code, found.end() - 1, "(", ")")
    start = code.index("{", params_end)
    end = _closing(code, start, "{", "}")
    stub = f"{code[:start]}{{\n    {body}\n}}{code[end + 1:]}"
    if p.language == "go":  # an import only the removed body used would not compile: keep it blank
        for path in re.findall(r'^\s*(?:import\s+)?"([\w/]+)"\s*$', stub, re.M):
            if f"{path.rsplit('/', 1)[-1]}." not in stub:
                stub = stub.replace(f'"{path}"', f'_ "{path}"')
    return stub, code[found.start():start]


def test_other_languages_trivial_answers_fail(pool: SandboxPool) -> None:
    cases = []
    for p in LANG_PROBLEMS:
        _, head = _stubbed(p, "")
        for body in _trivial_bodies(p, head):
            cases.append((p.id, body, program_for(p, _stubbed(p, body)[0])))
    results = pool.run_many([program for _, _, program in cases])
    passing = [(pid, body) for (pid, body, _), r in zip(cases, results, strict=True) if r.passed]
    assert not passing, f"trivial answers pass the tests: {passing}"
    ran = {pid for (pid, _, _), r in zip(cases, results, strict=True) if not r.result.startswith("failed: compile")}
    assert ran == {p.id for p in LANG_PROBLEMS}, (
        "every trivial answer of these fails to compile (the tests never ran): "
        f"{sorted({p.id for p in LANG_PROBLEMS} - ran)}")
