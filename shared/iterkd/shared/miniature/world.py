"""The miniature world: a procedural family of Python tasks built from primitive operations.

Grammar
-------
A *primitive* maps a value of one type to another (``L`` = ``list[int]``, ``I`` = ``int``,
``S`` = ``str``): filter, map, sort, slice, aggregate, digit and character operations. Some take an
integer constant ``k`` (e.g. "add k to every number"). A *composition* is a chain of primitives
whose types line up (``keep_even > sort_desc > sum``); its depth is the number of steps. A *task*
is one instance of a composition: constants drawn, a function name, a description in words (an
opener, a phrase per step and a joining style are all drawn from alternatives, so the wording
varies, not only the content), a signature with type hints, a reference solution (one statement
per step), and tests made by running the reference on typed random inputs.

A composition is *admitted* only when every step matters: on fixed probe inputs, dropping any one
step changes some output (``sort > sum`` is not a composition, sorting cannot change a sum).

Splits
------
Depth-1 tasks (single primitives) form the ``primitives`` split. Every composition of depth >= 2
belongs to exactly one of ``seed`` (70%), ``validation`` (10%) and ``heldout`` (20%), by a hash
of its key with a fixed salt: the assignment never depends on a run's seed, so a held-out
composition is held out for every model, export and run.

Everything is deterministic for a seed (``random.Random`` streams, no global state).
"""

from __future__ import annotations

import hashlib
import itertools
import random
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from iterkd.shared.formats import Problem
from iterkd.shared.miniature.values import is_literal

TYPES = {"L": "list[int]", "I": "int", "S": "str"}
VAR = {"L": "nums", "I": "n", "S": "s"}
NOUN = {"L": "a list of integers", "I": "an integer", "S": "a string"}

SPLITS = ("primitives", "seed", "validation", "heldout")
COMPOSITION_SPLITS = ("seed", "validation", "heldout")
_SPLIT_SALT = "iterkd-miniature-v1"
_SPLIT_BOUNDS = (("seed", 0.70), ("validation", 0.80), ("heldout", 1.0))


@dataclass(frozen=True)
class Primitive:
    name: str
    src: str
    dst: str
    code: str                    # an expression over {v} (the variable) and {k} (the constant)
    phrases: tuple[str, ...]     # wordings of the step, over {k}
    ks: tuple[int, ...] = ()     # the constants it can take; () when it takes none

    def expr(self, var: str, k: int | None) -> str:
        return self.code.format(v=var, k=k)


def _p(name: str, sig: str, code: str, *phrases: str, ks: Sequence[int] = ()) -> Primitive:
    return Primitive(name, sig[0], sig[1], code, tuple(phrases), tuple(ks))


PRIMITIVES: tuple[Primitive, ...] = (
    # list -> list
    _p("keep_even", "LL", "[x for x in {v} if x % 2 == 0]", "keep only the even numbers",
       "drop every odd number", "remove the odd values"),
    _p("keep_odd", "LL", "[x for x in {v} if x % 2 != 0]", "keep only the odd numbers",
       "drop every even number", "remove the even values"),
    _p("keep_pos", "LL", "[x for x in {v} if x > 0]", "keep only the positive numbers",
       "drop every number that is zero or negative", "remove the values that are not positive"),
    _p("keep_gt", "LL", "[x for x in {v} if x > {k}]", "keep only the numbers greater than {k}",
       "drop every number that is not above {k}", "remove the values less than or equal to {k}",
       ks=(-2, -1, 1, 2, 3)),
    _p("add_each", "LL", "[x + {k} for x in {v}]", "add {k} to every number", "increase each element by {k}",
       "raise every value by {k}", ks=(1, 2, 3, 5)),
    _p("mul_each", "LL", "[x * {k} for x in {v}]", "multiply every number by {k}", "scale each element by {k}",
       "replace every value with {k} times itself", ks=(2, 3, 4)),
    _p("square_each", "LL", "[x * x for x in {v}]", "square every number", "replace each element with its square",
       "raise every value to the power of two"),
    _p("negate_each", "LL", "[-x for x in {v}]", "negate every number", "flip the sign of each element",
       "replace every value with its negative"),
    _p("abs_each", "LL", "[abs(x) for x in {v}]", "take the absolute value of every number",
       "replace each element with its absolute value", "make every value non-negative by dropping its sign"),
    _p("sort_asc", "LL", "sorted({v})", "sort the numbers in ascending order",
       "arrange the elements from smallest to largest", "order the values increasingly"),
    _p("sort_desc", "LL", "sorted({v}, reverse=True)", "sort the numbers in descending order",
       "arrange the elements from largest to smallest", "order the values decreasingly"),
    _p("reverse", "LL", "{v}[::-1]", "reverse the order of the numbers", "put the elements in reverse order",
       "turn the list around"),
    _p("take", "LL", "{v}[:{k}]", "keep only the first {k} numbers", "cut the list to its first {k} elements",
       "drop everything after the first {k} values", ks=(2, 3, 4)),
    _p("drop", "LL", "{v}[{k}:]", "remove the first {k} numbers", "skip the first {k} elements",
       "drop the leading {k} values", ks=(1, 2, 3)),
    _p("dedup", "LL", "list(dict.fromkeys({v}))", "remove repeated numbers, keeping the first occurrence of each",
       "drop duplicate elements but keep their first appearance", "keep each distinct value once, in order"),
    # list -> int
    _p("sum", "LI", "sum({v})", "take the sum of the numbers", "add all the elements together",
       "compute the total of the values"),
    _p("length", "LI", "len({v})", "count how many numbers there are", "take the number of elements",
       "compute the length of the list"),
    _p("max0", "LI", "max({v}, default=0)", "take the largest number (0 if there is none)",
       "find the maximum element, or 0 for an empty list", "compute the biggest value (0 when the list is empty)"),
    _p("min0", "LI", "min({v}, default=0)", "take the smallest number (0 if there is none)",
       "find the minimum element, or 0 for an empty list", "compute the least value (0 when the list is empty)"),
    _p("count_even", "LI", "sum(1 for x in {v} if x % 2 == 0)", "count the even numbers",
       "take how many elements are even", "compute the number of even values"),
    # list -> str
    _p("join", "LS", "' '.join(str(x) for x in {v})", "join the numbers into a string separated by single spaces",
       "write the elements as text, one space between them", "turn the values into a space-separated string"),
    # int -> int
    _p("add", "II", "{v} + {k}", "add {k}", "increase the number by {k}", "raise the value by {k}", ks=(1, 2, 3, 7)),
    _p("mul", "II", "{v} * {k}", "multiply by {k}", "scale the number by {k}", "take {k} times the value",
       ks=(2, 3, 5)),
    _p("square", "II", "{v} * {v}", "square it", "multiply the number by itself",
       "raise the value to the power of two"),
    _p("negate", "II", "-{v}", "negate it", "flip the sign of the number", "take the negative of the value"),
    _p("absolute", "II", "abs({v})", "take its absolute value", "drop the sign of the number",
       "make the value non-negative"),
    _p("mod", "II", "{v} % {k}", "take the remainder after division by {k}", "reduce the number modulo {k}",
       "compute the value mod {k}", ks=(2, 3, 5, 10)),
    _p("digit_sum", "II", "sum(int(c) for c in str(abs({v})))", "take the sum of its decimal digits",
       "add up the digits of the number (ignoring the sign)", "compute the digit sum of the value"),
    # int -> list, int -> str
    _p("digits", "IL", "[int(c) for c in str(abs({v}))]", "split it into its decimal digits (ignoring the sign)",
       "turn the number into the list of its digits", "list the digits of the value, most significant first"),
    _p("to_text", "IS", "str({v})", "write it as a decimal string", "convert the number to its text form",
       "turn the value into a string"),
    # str -> str
    _p("upper", "SS", "{v}.upper()", "convert it to upper case", "make every letter a capital",
       "turn the text into uppercase"),
    _p("lower", "SS", "{v}.lower()", "convert it to lower case", "make every letter small",
       "turn the text into lowercase"),
    _p("swapcase", "SS", "{v}.swapcase()", "swap the case of every letter", "turn capitals into small letters and "
       "small letters into capitals", "invert the case of each letter"),
    _p("reverse_text", "SS", "{v}[::-1]", "reverse the string", "write the characters backwards",
       "turn the text around"),
    _p("no_vowels", "SS", "''.join(c for c in {v} if c not in 'aeiouAEIOU')", "remove the vowels",
       "delete every vowel (a, e, i, o, u in either case)", "drop all vowels from the text"),
    _p("no_spaces", "SS", "{v}.replace(' ', '')", "remove the spaces", "delete every space character",
       "drop all blanks from the text"),
    _p("double_chars", "SS", "''.join(c + c for c in {v})", "double every character",
       "write each character twice", "repeat every character once more"),
    _p("head", "SS", "{v}[:{k}]", "keep only the first {k} characters", "cut the text to its first {k} characters",
       "drop everything after the first {k} characters", ks=(2, 3, 5)),
    # str -> int, str -> list
    _p("text_length", "SI", "len({v})", "count its characters", "take the length of the string",
       "compute how many characters the text has"),
    _p("count_vowels", "SI", "sum(1 for c in {v} if c in 'aeiouAEIOU')", "count its vowels",
       "take the number of vowels (a, e, i, o, u in either case)", "compute how many vowels the text has"),
    _p("count_upper", "SI", "sum(1 for c in {v} if c.isupper())", "count its capital letters",
       "take the number of uppercase characters", "compute how many capitals the text has"),
    _p("codes", "SL", "[ord(c) for c in {v}]", "turn it into the list of its character codes",
       "replace every character with its code point", "list the ord value of each character"),
    _p("word_lengths", "SL", "[len(w) for w in {v}.split()]", "list the lengths of its words",
       "split it into words and take the length of each", "compute the length of every space-separated word"),
)
BY_NAME = {p.name: p for p in PRIMITIVES}

OPENERS = {
    "L": ("Given a list of integers `{var}`, ", "Take a list of integers `{var}`. ", "The input `{var}` is a list "
          "of integers. ", "Write a function that receives a list of integers `{var}`: "),
    "I": ("Given an integer `{var}`, ", "Take an integer `{var}`. ", "The input `{var}` is an integer. ",
          "Write a function that receives an integer `{var}`: "),
    "S": ("Given a string `{var}`, ", "Take a string `{var}`. ", "The input `{var}` is a string. ",
          "Write a function that receives a string `{var}`: "),
}
FIRST = ("First,", "To begin,", "Step one:")
NEXT = ("Then", "Next,", "After that,")
LAST = ("Finally,", "Lastly,", "At the end,")
NAMES = {
    "L": ("process_numbers", "transform_list", "crunch", "handle_values", "solve", "compute"),
    "I": ("process_number", "transform_int", "crunch", "handle_value", "solve", "compute"),
    "S": ("process_text", "transform_string", "crunch", "handle_text", "solve", "compute"),
}


# ---------------------------------------------------------------------------------------------
# Compositions


Chain = tuple[str, ...]


def chain_types(chain: Chain) -> tuple[str, str] | None:
    """(input type, output type) of a chain, or None when its types do not line up."""
    prims = [BY_NAME[n] for n in chain]
    for a, b in itertools.pairwise(prims):
        if a.dst != b.src:
            return None
    return prims[0].src, prims[-1].dst


def chain_key(chain: Chain) -> str:
    return ">".join(chain)


def split_of(chain: Chain) -> str:
    """The split a composition belongs to (``primitives`` for depth 1); fixed, seed-independent."""
    if len(chain) == 1:
        return "primitives"
    digest = hashlib.blake2b(f"{_SPLIT_SALT}:{chain_key(chain)}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    return next(name for name, bound in _SPLIT_BOUNDS if u < bound)


def reference_code(chain: Chain, ks: Sequence[int | None], name: str) -> str:
    """The reference solution: one statement per step on a variable named after its type."""
    prims = [BY_NAME[n] for n in chain]
    src, dst = prims[0].src, prims[-1].dst
    lines = [f"def {name}({VAR[src]}: {TYPES[src]}) -> {TYPES[dst]}:"]
    var = VAR[src]
    for i, (p, k) in enumerate(zip(prims, ks)):
        expr = p.expr(var, k)
        if i == len(prims) - 1:
            lines.append(f"    return {expr}")
        else:
            var = VAR[p.dst]
            lines.append(f"    {var} = {expr}")
    return "\n".join(lines) + "\n"


def signature(chain: Chain, name: str) -> str:
    src, dst = chain_types(chain) or ("L", "L")
    return f"def {name}({VAR[src]}: {TYPES[src]}) -> {TYPES[dst]}:"


def compile_function(code: str, name: str) -> Any:
    """The function ``name`` defined by ``code`` (the world's own trusted references only)."""
    namespace: dict[str, Any] = {}
    exec(compile(code, f"<miniature {name}>", "exec"), namespace)
    return namespace[name]


def _probe_inputs(src: str) -> list[Any]:
    rng = random.Random(f"{_SPLIT_SALT}:probe:{src}")
    return [_draw(src, rng) for _ in range(40)]


def _draw(t: str, rng: random.Random) -> Any:
    if t == "L":
        return [rng.randint(-9, 9) for _ in range(rng.randint(0, 7))]
    if t == "I":
        return rng.randint(-99, 99) if rng.random() < 0.8 else rng.randint(-9999, 9999)
    n = rng.randint(0, 12)
    return "".join(" " if rng.random() < 0.15 else rng.choice("abcdeghilmnorstuAEIOXYZ") for _ in range(n))


def _default_ks(chain: Chain) -> list[int | None]:
    return [BY_NAME[n].ks[len(BY_NAME[n].ks) // 2] if BY_NAME[n].ks else None for n in chain]


def _outputs(chain: Chain, ks: Sequence[int | None], inputs: Sequence[Any]) -> list[Any]:
    fn = compile_function(reference_code(chain, ks, "f"), "f")
    out = []
    for x in inputs:
        try:
            out.append(fn(x))
        except Exception as exc:
            out.append(("error", type(exc).__name__))
    return out


@lru_cache(maxsize=200_000)
def admitted(chain: Chain) -> bool:
    """Whether ``chain`` is a composition of the world: types line up, no primitive repeats, and
    every step matters (dropping it changes an output on the probe inputs)."""
    if not chain or any(n not in BY_NAME for n in chain) or len(set(chain)) != len(chain):
        return False
    types = chain_types(chain)
    if types is None:
        return False
    if len(chain) == 1:
        return True
    inputs = _probe_inputs(types[0])
    full = _outputs(chain, _default_ks(chain), inputs)
    if any(isinstance(o, tuple) for o in full) or len({repr(o) for o in full}) < 3:
        return False  # fails somewhere, or (nearly) constant: nothing to compute
    for i in range(len(chain)):
        shorter = chain[:i] + chain[i + 1:]
        if chain_types(shorter) != types:
            continue
        if _outputs(shorter, _default_ks(shorter), inputs) == full:
            return False
    return True


def compositions(depth: int, split: str | None = None) -> list[Chain]:
    """Every admitted composition of ``depth`` (in a fixed order), optionally of one split."""
    out: list[Chain] = []

    def grow(prefix: Chain) -> None:
        if len(prefix) == depth:
            if admitted(prefix) and (split is None or split_of(prefix) == split):
                out.append(prefix)
            return
        last = BY_NAME[prefix[-1]] if prefix else None
        for p in PRIMITIVES:
            if last is not None and p.src != last.dst:
                continue
            if p.name in prefix:
                continue
            grow((*prefix, p.name))

    grow(())
    return out


# ---------------------------------------------------------------------------------------------
# Tasks


@dataclass(frozen=True)
class Task:
    """One instance of a composition."""

    chain: Chain
    ks: tuple[int | None, ...]
    name: str
    description: str
    code: str
    tests: tuple[str, ...]

    @property
    def signature(self) -> str:
        return signature(self.chain, self.name)

    @property
    def depth(self) -> int:
        return len(self.chain)


def describe(chain: Chain, ks: Sequence[int | None], rng: random.Random) -> str:
    """The task in words: an opener, one phrase per step, a joining style, all drawn."""
    prims = [BY_NAME[n] for n in chain]
    src = prims[0].src
    var = VAR[src]
    steps = [rng.choice(p.phrases).format(k=k) for p, k in zip(prims, ks)]
    opener = rng.choice(OPENERS[src]).format(var=var)
    style = rng.randrange(3)
    if len(steps) == 1 or style == 0:
        body = ", then ".join(steps)
        text = f"{opener}{body}, and return the result."
    elif style == 1:
        parts = [f"{rng.choice(FIRST)} {steps[0]}."]
        parts += [f"{rng.choice(NEXT)} {s}." for s in steps[1:-1]]
        parts.append(f"{rng.choice(LAST)} {steps[-1]}, and return it.")
        text = opener + " ".join(parts)
    else:
        numbered = " ".join(f"({i}) {s};" for i, s in enumerate(steps, start=1))
        text = f"{opener}apply these steps in order: {numbered.rstrip(';')}. Return the outcome."
    # capitalise sentence starts after ". " and at the beginning
    sentences = text.split(". ")
    return ". ".join(s[:1].upper() + s[1:] for s in sentences)


def _literal_args(value: Any) -> str:
    return repr(value)


def make_tests(code: str, name: str, src: str, rng: random.Random, n: int = 5,
               distinguish: Sequence[str] = ()) -> tuple[str, ...]:
    """``n`` assert lines from running the reference on typed random inputs (including the empty
    input); inputs are redrawn (a bounded number of times) until the tests tell the reference
    apart from each function in ``distinguish`` (near-miss codes defining ``name``)."""
    fn = compile_function(code, name)
    others = [compile_function(c, name) for c in distinguish]
    empty = {"L": [], "I": 0, "S": ""}[src]
    best: tuple[str, ...] = ()
    for _attempt in range(20):
        inputs = [empty]
        for _ in range(10 * n):
            x = _draw(src, rng)
            if x not in inputs:
                inputs.append(x)
            if len(inputs) == n:
                break
        rng.shuffle(inputs)
        outs = [fn(x) for x in inputs]
        if not all(is_literal(o) for o in outs):
            continue
        tests = tuple(f"assert {name}({_literal_args(x)}) == {o!r}" for x, o in zip(inputs, outs))
        told_apart = all(any(_safe(g, x) != o for x, o in zip(inputs, outs)) for g in others)
        trivial_fail = (any(o is not None and o != x for x, o in zip(inputs, outs))
                        and len({repr(o) for o in outs}) > 1)
        if told_apart and trivial_fail:
            return tests
        best = best or tests
    return best


def _safe(fn: Any, x: Any) -> Any:
    try:
        return fn(x)
    except Exception as exc:
        return ("error", type(exc).__name__)


def make_task(chain: Chain, rng: random.Random, n_tests: int = 5) -> Task:
    """An instance of ``chain``: constants, name, wording and tests drawn from ``rng``."""
    if not admitted(chain):
        raise ValueError(f"{chain_key(chain)!r} is not a composition of the miniature world")
    prims = [BY_NAME[n] for n in chain]
    ks = tuple(rng.choice(p.ks) if p.ks else None for p in prims)
    src = prims[0].src
    name = rng.choice(NAMES[src])
    code = reference_code(chain, ks, name)
    near = []
    for i in range(len(chain)):
        shorter = chain[:i] + chain[i + 1:]
        if shorter and chain_types(shorter) == chain_types(chain):
            near.append(reference_code(shorter, ks[:i] + ks[i + 1:], name))
    tests = make_tests(code, name, src, rng, n_tests, near)
    return Task(chain, ks, name, describe(chain, ks, rng), code, tests)


def render_prompt(description: str, sig: str, tests: Sequence[str]) -> str:
    """A task's prompt, laid out as the question service lays out a new question: the
    description, then the signature with a docstring holding the description and an example."""
    doc = textwrap.fill(description.replace('"""', "'''").replace("\\", "\\\\"), width=88,
                        initial_indent="    ", subsequent_indent="    ")
    example = (tests[0].removeprefix("assert ").strip() if tests else "").replace('"""', "'''").replace("\\", "\\\\")
    body = f'{sig}\n    """\n{doc}\n\n    Example: {example}\n    """\n'
    return f"{description.strip()}\n\n```python\n{body}```\n"


def to_problem(task: Task, pid: str, split: str) -> Problem:
    return Problem(
        id=pid, prompt=render_prompt(task.description, task.signature, task.tests), entry_point=task.name,
        tests="\n".join(task.tests), language="python", level=f"depth-{task.depth}", source="miniature",
        canonical_solution=task.code, harness="mbpp",
    )


def chain_of(problem_id: str) -> Chain:
    """The composition of a world problem, read from its id (``mini/<split>/<a>>b>c/<seed>-<i>``)."""
    parts = problem_id.split("/")
    if len(parts) != 4 or parts[0] != "mini":
        raise ValueError(f"{problem_id!r} is not a miniature problem id")
    return tuple(parts[2].split(">"))


def sample_chains(split: str, n: int, rng: random.Random, depths: Sequence[int] = (2, 3)) -> list[Chain]:
    """``n`` compositions of ``split`` (with repetition when the split has fewer), depths cycled."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use {', '.join(SPLITS)}")
    if split == "primitives":
        depths = (1,)
    pools = {d: compositions(d, split) for d in depths}
    pools = {d: c for d, c in pools.items() if c}
    if not pools:
        raise ValueError(f"split {split!r} has no compositions of depth {', '.join(map(str, depths))}")
    order = sorted(pools)
    out: list[Chain] = []
    bags: dict[int, list[Chain]] = {d: [] for d in order}
    for i in range(n):
        d = order[i % len(order)]
        if not bags[d]:  # each composition once before any twice
            bags[d] = list(pools[d])
            rng.shuffle(bags[d])
        out.append(bags[d].pop())
    return out


def export_split(split: str, n: int, seed: int = 0, depths: Sequence[int] = (2, 3),
                 n_tests: int = 5) -> list[Problem]:
    """``n`` problems of ``split``, deterministic for ``seed``; ids ``mini/<split>/<chain>/<seed>-<i>``."""
    rng = random.Random(f"miniature:{split}:{seed}")
    return [to_problem(make_task(chain, rng, n_tests), f"mini/{split}/{chain_key(chain)}/{seed}-{i}", split)
            for i, chain in enumerate(sample_chains(split, n, rng, depths))]


def iter_tasks(split: str, seed: int, depths: Sequence[int] = (1, 2, 3)) -> Iterator[Task]:
    """An endless stream of tasks of ``split`` (training data for the world's models)."""
    rng = random.Random(f"miniature:stream:{split}:{seed}")
    while True:
        for chain in sample_chains(split, 256, rng, depths):
            yield make_task(chain, rng)
