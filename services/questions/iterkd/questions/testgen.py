"""Tests for a new question whose reply has a reference solution but no tests.

The inputs are drawn from the signature's type hints (:mod:`iterkd.shared.miniature.values`:
``int``, ``str``, ``list[int]``, ``dict[str, int]``, ...), the reference runs on them in the
feedback sandbox (one program per question, through the same :class:`Executor` as validation),
and each input whose result is a plain literal becomes ``assert f(<args>) == <result>``. Inputs on
which the reference raises are skipped; distinct results are preferred, so the tests tell answers
apart. The tests then go through the usual validation (a teacher answer passes, trivial answers
fail, dedup, decontamination) like any other question's.

A question whose signature lacks a type hint, uses a type without a value generator, or whose
reference yields fewer than ``min_tests`` usable results gets no tests and is dropped ("no tests").
"""

from __future__ import annotations

import ast
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from iterkd.questions.generate import Candidate, ParsedQuestion, build_prompt
from iterkd.questions.validate import Executor
from iterkd.shared.miniature.values import UnsupportedType, is_literal, random_value

MARK = "@@iterkd-testgen@@"


def arg_types(signature: str) -> list[ast.expr] | None:
    """The annotation of each positional parameter of ``def f(...) -> T:``; None when one lacks
    a hint or the signature has ``*args``/``**kwargs``/keyword-only parameters."""
    try:
        tree = ast.parse(signature.rstrip() + "\n    ...\n")
    except SyntaxError:
        return None
    fn = tree.body[0] if tree.body else None
    if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    a = fn.args
    if a.vararg or a.kwarg or a.kwonlyargs:
        return None
    params = [*a.posonlyargs, *a.args]
    if not params or any(p.annotation is None for p in params):
        return None
    return [p.annotation for p in params if p.annotation is not None]


def draw_inputs(types: Sequence[ast.expr], rng: random.Random, n: int) -> list[tuple[Any, ...]]:
    """Up to ``n`` distinct argument tuples (small ones first: sizes grow from 0 to 6)."""
    out: list[tuple[Any, ...]] = []
    seen: set[str] = set()
    for attempt in range(8 * n):
        size = min(6, attempt * 6 // max(1, n))
        args = tuple(random_value(t, rng, size) for t in types)
        key = repr(args)
        if key in seen or not all(is_literal(x) for x in args):
            continue
        seen.add(key)
        out.append(args)
        if len(out) == n:
            break
    return out


def _call(entry: str, args: tuple[Any, ...]) -> str:
    return f"{entry}({', '.join(repr(x) for x in args)})"


def program(q: ParsedQuestion, inputs: Sequence[tuple[Any, ...]], mark: str) -> str:
    """The reference, then one printed ``mark index repr(result)`` line per input."""
    head = f"{q.imports}\n" if q.imports else ""
    calls = "\n".join(f"    ({i}, lambda: {_call(q.entry_point, a)})," for i, a in enumerate(inputs))
    return (f"{head}{q.solution}\n\n"
            f"for _i, _f in [\n{calls}\n]:\n"
            f"    try:\n        _r = repr(_f())\n    except Exception:\n        continue\n"
            f"    print({mark!r}, _i, _r.replace(chr(10), ' '))\n")


def read_results(stdout: str, mark: str, n: int) -> dict[int, Any]:
    """Input index -> result, for well-formed literal results in ``stdout``."""
    out: dict[int, Any] = {}
    for line in stdout.splitlines():
        if not line.startswith(mark + " "):
            continue
        rest = line[len(mark) + 1:]
        index, _, text = rest.partition(" ")
        if not index.isdigit() or not 0 <= int(index) < n:
            continue
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if is_literal(value) and repr(value) == text:
            out[int(index)] = value
    return out


def choose_tests(entry: str, inputs: Sequence[tuple[Any, ...]], results: dict[int, Any], n: int) -> list[str]:
    """Up to ``n`` assert lines, one per distinct result first, then the rest in input order."""
    order = sorted(results)
    first: list[int] = []
    seen: set[str] = set()
    for i in order:
        key = repr(results[i])
        if key not in seen:
            seen.add(key)
            first.append(i)
    chosen = (first + [i for i in order if i not in first])[:n]
    return [f"assert {_call(entry, inputs[i])} == {results[i]!r}" for i in sorted(chosen)]


def fill_tests(candidates: Sequence[Candidate], make_executor: Callable[[], Executor], n_tests: int,
               min_tests: int, timeout_s: float, seed: int = 0) -> tuple[list[Candidate], list[Candidate]]:
    """Give tests to the candidates that have a solution but none; ``(kept, dropped)``: kept are
    the candidates in order (those without tests completed), dropped the ones no tests could be
    made for. Every program runs in one executor batch."""
    todo: list[tuple[int, list[tuple[Any, ...]], str]] = []
    programs: list[str] = []
    for i, c in enumerate(candidates):
        q = c.parsed
        if q.tests or not q.solution:
            continue
        types = arg_types(q.signature)
        inputs: list[tuple[Any, ...]] = []
        if types is not None:
            rng = random.Random(f"{seed}:{c.problem.id}")
            try:
                inputs = draw_inputs(types, rng, 3 * n_tests)
            except UnsupportedType:
                inputs = []
        mark = MARK + hashlib.blake2b(c.problem.id.encode(), digest_size=4).hexdigest()
        todo.append((i, inputs, mark))
        if inputs:
            programs.append(program(q, inputs, mark))
    if not todo:
        return list(candidates), []
    outcomes = []
    if programs:
        executor = make_executor()
        try:
            outcomes = executor.execute(programs, timeout_s)
        finally:
            close = getattr(executor, "close", None)
            if callable(close):
                close()
    completed: dict[int, Candidate | None] = {}
    k = 0
    for i, inputs, mark in todo:
        if not inputs:
            completed[i] = None
            continue
        outcome = outcomes[k]
        k += 1
        stdout = getattr(outcome, "stdout", "") or ""
        results = read_results(stdout, mark, len(inputs)) if outcome.passed else {}
        c = candidates[i]
        tests = choose_tests(c.parsed.entry_point, inputs, results, n_tests)
        if len(tests) < max(1, min_tests):
            completed[i] = None
            continue
        q = replace(c.parsed, tests="\n".join(tests), n_tests=len(tests))
        problem = c.problem.model_copy(update={"tests": q.tests, "prompt": build_prompt(q)})
        completed[i] = replace(c, parsed=q, problem=problem)
    kept: list[Candidate] = []
    dropped: list[Candidate] = []
    for i, c in enumerate(candidates):
        new = completed.get(i, c)
        if new is None:
            dropped.append(c)
        else:
            kept.append(new)
    return kept, dropped
