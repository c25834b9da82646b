"""New questions through the teacher: prompts per level, and a robust parser of the replies.

The templates ask for a reply with ``### Description``, ``### Signature``, ``### Tests`` and
``### Solution`` sections. :func:`parse_reply` also reads a JSON object with those keys, replies
with chatty preambles or different header styles, and replies without headers whose fenced blocks
can be told apart (asserts only: tests; a ``def`` with an empty body: the signature; a ``def`` with
a body: the solution). A reply it cannot read gives ``None``: it is counted and dropped, never raised.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from iterkd.questions.config import LEVELS, GenerationConfig
from iterkd.shared.formats import Problem
from iterkd.shared.inference import SamplingParams, TextGenerator
from iterkd.shared.prompts import FENCE, render_question_prompt

_HEADER = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*|\*\*[ \t]*)?(?:\d+[.)][ \t]*)?"
    r"(description|problem statement|problem|question|function signature|signature|test cases|tests?|"
    r"reference solution|solution)[ \t]*(?:\*\*)?[ \t]*:?[ \t]*(?:\*\*)?[ \t]*$",
    re.I | re.M,
)
_CHATTY = re.compile(r"^(?:sure|certainly|of course|okay|ok|here(?:'s| is| are)|below is|great|absolutely|i hope|"
                     r"let me|hope this)\b[^:!]*(?:[:!]+|$)\s*", re.I)


@dataclass
class ParsedQuestion:
    """A new question as read from a reply."""

    description: str
    entry_point: str
    signature: str          # "def name(args) -> T:"
    imports: str            # imports the signature needs
    params: list[str]       # positional parameter names
    tests: str              # assert lines (and pytest-style test functions with their calls)
    test_setup: str         # imports and data the tests need
    solution: str | None    # the reply's own solution, if any
    n_tests: int


def _kind(section: str) -> str:
    s = section.lower()
    if "sig" in s:
        return "signature"
    if "test" in s:
        return "tests"
    if "solution" in s:
        return "solution"
    return "description"


def _blocks(text: str) -> list[str]:
    return [body for _, body in FENCE.findall(text)]


def _prose(text: str) -> str:
    """Text minus fenced blocks, chatty lines and markdown emphasis."""
    text = _HEADER.sub("", FENCE.sub("\n", text))
    lines = [_CHATTY.sub("", ln.strip(), count=1).strip() for ln in text.strip().splitlines()]
    lines = [ln for ln in lines if ln]
    return re.sub(r"\*\*|__", "", "\n".join(lines)).strip()


def _parse_module(code: str) -> ast.Module | None:
    code = textwrap.dedent(code)
    for candidate in (code, code.rstrip() + "\n    ...\n"):
        try:
            return ast.parse(candidate)
        except (SyntaxError, ValueError):
            continue
    return None


def _is_stub(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    body = [s for s in fn.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
               for s in body)


def _functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _signature_of(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    copy = ast.FunctionDef(name=fn.name, args=fn.args, body=[ast.Pass()], decorator_list=[], returns=fn.returns,
                           type_comment=None, type_params=[])
    return ast.unparse(ast.fix_missing_locations(copy)).splitlines()[0]


def _imports(tree: ast.Module) -> list[str]:
    return [ast.unparse(n) for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]


def _read_tests(code: str, entry_point: str | None) -> tuple[list[str], list[str], str | None]:
    """(test lines, setup lines, a solution found among them) from a block of test code."""
    tree = _parse_module(code)
    if tree is None:
        # keep the assert lines that parse on their own
        lines = [ln.strip() for ln in code.splitlines() if ln.strip().startswith("assert ")]
        return [ln for ln in lines if _parse_module(ln) is not None], [], None
    tests: list[str] = []
    setup: list[str] = []
    solution = None

    def walk(body: list[ast.stmt]) -> None:
        nonlocal solution
        for node in body:
            if isinstance(node, ast.Assert):
                tests.append(ast.unparse(node))
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names = {a.asname or a.name for a in node.names}
                if entry_point not in names:
                    setup.append(ast.unparse(node))
            elif isinstance(node, ast.If) and "__name__" in ast.unparse(node.test):
                walk(node.body)
            elif isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                tests.append(ast.unparse(node) + f"\n{node.name}()")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry_point:
                solution = ast.unparse(node)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                setup.append(ast.unparse(node))

    walk(tree.body)
    return tests, setup, solution


def _from_parts(description: str, signature_code: str | None, tests_code: str | None,
                solution_code: str | None, min_tests: int, allow_no_tests: bool = False) -> ParsedQuestion | None:
    fn = None
    imports: list[str] = []
    for code in (signature_code, solution_code):
        if not code:
            continue
        tree = _parse_module(code)
        if tree is None:
            continue
        fns = _functions(tree)
        if fns:
            fn = fns[0] if code is signature_code else fns[-1]
            imports = _imports(tree)
            break
    if fn is None or (tests_code is None and not (allow_no_tests and solution_code)):
        return None
    tests, setup, sol_in_tests = _read_tests(tests_code, fn.name) if tests_code is not None else ([], [], None)
    tests = [t for t in tests if re.search(rf"\b{re.escape(fn.name)}\b", t)]
    # a reply with a solution but no tests gets tests made by running it (testgen)
    if (len(tests) < min_tests and not (tests_code is None and allow_no_tests)) or not description:
        return None
    solution = solution_code.strip() + "\n" if solution_code and solution_code.strip() else sol_in_tests
    if solution is not None and _parse_module(solution) is None:
        solution = None
    params = [a.arg for a in [*fn.args.posonlyargs, *fn.args.args]]
    return ParsedQuestion(
        description=description.strip(), entry_point=fn.name, signature=_signature_of(fn),
        imports="\n".join(imports), params=params, tests="\n".join(tests), test_setup="\n".join(setup),
        solution=solution, n_tests=len(tests),
    )


def _from_json(text: str, min_tests: int) -> ParsedQuestion | None:
    candidates = [body for lang, body in FENCE.findall(text) if lang.lower() in ("json", "")]
    if "{" in text:
        candidates.append(text[text.index("{"):text.rindex("}") + 1] if "}" in text else "")
    for raw in candidates:
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, ValueError):
            continue
        if not isinstance(obj, dict):
            continue
        low = {str(k).lower(): v for k, v in obj.items()}
        desc = low.get("description") or low.get("question") or low.get("problem")
        tests = low.get("tests") or low.get("test")
        if isinstance(tests, list):
            tests = "\n".join(str(t) for t in tests)
        sig = low.get("signature")
        sol = low.get("solution")
        if isinstance(desc, str) and isinstance(tests, str):
            return _from_parts(_prose(desc), _unfence(sig), _unfence(tests), _unfence(sol), min_tests)
    return None


def _unfence(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    blocks = _blocks(value)
    return blocks[0] if blocks else value


def parse_reply(text: str, min_tests: int = 1, allow_no_tests: bool = False) -> ParsedQuestion | None:
    """The question in a teacher's reply, or ``None`` when none can be read. Never raises. With
    ``allow_no_tests``, a reply with a solution but no tests section parses with empty tests."""
    try:
        return _parse(text, min_tests, allow_no_tests)
    except (RecursionError, ValueError, TypeError, AttributeError):
        return None


def _parse(text: str, min_tests: int, allow_no_tests: bool = False) -> ParsedQuestion | None:
    if not text or not text.strip():
        return None
    headers = list(_HEADER.finditer(text))
    if headers:
        sections: dict[str, str] = {}
        for i, m in enumerate(headers):
            end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
            sections.setdefault(_kind(m.group(1)), text[m.end():end])
        desc = _prose(sections.get("description", ""))
        sig = _blocks(sections.get("signature", ""))
        tests = _blocks(sections.get("tests", ""))
        sol = _blocks(sections.get("solution", ""))
        sig_code = sig[0] if sig else (sections.get("signature", "").strip() or None)
        tests_code = "\n".join(tests) if tests else (sections.get("tests") or None)
        found = _from_parts(desc, sig_code, tests_code, sol[0] if sol else None, min_tests, allow_no_tests)
        if found is not None:
            return found
    if "{" in text:
        found = _from_json(text, min_tests)
        if found is not None:
            return found
    # no usable headers: tell the fenced blocks apart
    sig_code = tests_code = sol_code = None
    for block in _blocks(text):
        tree = _parse_module(block)
        if tree is None:
            continue
        fns = _functions(tree)
        asserts = [n for n in tree.body if isinstance(n, ast.Assert)]
        if asserts and tests_code is None:
            tests_code = block
            if fns and sol_code is None and not _is_stub(fns[-1]):
                sol_code = "\n".join(ast.unparse(n) for n in tree.body if not isinstance(n, ast.Assert))
        elif fns and _is_stub(fns[0]) and sig_code is None:
            sig_code = block
        elif fns and sol_code is None:
            sol_code = block
    return _from_parts(_prose(text), sig_code, tests_code, sol_code, min_tests, allow_no_tests)


# ---------------------------------------------------------------------------------------------
# New problems


def _example(tests: str) -> str:
    first = tests.splitlines()[0] if tests else ""
    return first.removeprefix("assert ").strip()


def build_prompt(q: ParsedQuestion) -> str:
    """The prompt of a new question: its description, then the signature with a docstring (an
    example taken from the first test) in a ``python`` block."""
    doc = textwrap.fill(q.description.replace('"""', "'''").replace("\\", "\\\\"), width=88,
                        initial_indent="    ", subsequent_indent="    ")
    example = _example(q.tests).replace('"""', "'''").replace("\\", "\\\\")
    body = f'{q.signature}\n    """\n{doc}\n\n    Example: {example}\n    """\n'
    head = f"{q.imports}\n\n" if q.imports else ""
    return f"{q.description.strip()}\n\n```python\n{head}{body}```\n"


def new_problem(q: ParsedQuestion, parent: Problem, level: str, cycle: int, k: int) -> Problem:
    """A pool problem from a parsed question. The id is a content hash (deterministic); ``level``
    records the parent's level, i.e. which operation made it (harder / same skill / simpler)."""
    digest = hashlib.sha256(f"{parent.id}\0{level}\0{k}\0{q.signature}\0{q.tests}".encode()).hexdigest()[:12]
    setup = "\n".join(x for x in (q.imports, q.test_setup) if x)
    return Problem(
        id=f"c{cycle}-{level[0]}-{digest}", prompt=build_prompt(q), entry_point=q.entry_point, tests=q.tests,
        language="python", level=level, source="teacher", parent_id=parent.id, canonical_solution=None,
        harness="mbpp", test_setup=setup, cycle=cycle,
    )


def render_generation_prompt(problem: Problem, level: str, template: str) -> str:
    return render_question_prompt(problem, level, template)


@dataclass
class Candidate:
    """A parsed new question waiting for validation."""

    problem: Problem
    parsed: ParsedQuestion
    parent_id: str
    level: str


def ask_teacher(generator: TextGenerator, parents: Sequence[tuple[Problem, str]], cfg: GenerationConfig,
                cycle: int, min_tests: int = 1) -> tuple[list[Candidate], Counter[str], Counter[str]]:
    """Ask for ``per_question[level]`` new questions per parent; parse the replies.

    Returns the candidates and, per level, how many were asked and how many parsed."""
    asked: Counter[str] = Counter()
    parsed: Counter[str] = Counter()
    candidates: list[Candidate] = []
    for li, level in enumerate(LEVELS):
        n = cfg.per_question.get(level, 0)
        group = [p for p, lv in parents if lv == level]
        if n <= 0 or not group:
            continue
        params = SamplingParams(n=n, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                top_p=cfg.top_p, seed=cfg.seed + 1_000_003 * cycle + 7919 * li,
                                use_chat_template=cfg.use_chat_template)
        for start in range(0, len(group), cfg.batch_prompts):
            batch = group[start:start + cfg.batch_prompts]
            prompts = [render_generation_prompt(p, level, cfg.templates[level]) for p in batch]
            replies = generator.generate(prompts, params)
            for parent, gen in zip(batch, replies):
                asked[level] += n
                for k, text in enumerate(gen.texts[:n]):
                    q = parse_reply(text, min_tests, allow_no_tests=cfg.generated_tests > 0)
                    if q is None:
                        continue
                    parsed[level] += 1
                    candidates.append(Candidate(new_problem(q, parent, level, cycle, k), q, parent.id, level))
    return candidates, asked, parsed
