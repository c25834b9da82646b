"""Random values of a type written as a Python annotation (``list[int]``, ``dict[str, int]``, ...).

Used by the miniature world to make test inputs for its tasks, and by the question service to
make test inputs for a new question from its signature's type hints. Values are small (short
lists, small integers, short strings) so that tests stay readable and programs fast.

Supported: ``int``, ``float``, ``bool``, ``str``, ``None``, ``list[T]``, ``set[T]``,
``tuple[T, ...]``, ``tuple[A, B]``, ``dict[K, V]``, ``Optional[T]`` / ``T | None`` (and the
``typing.List``/``Dict``/``Tuple``/``Set`` spellings). Anything else raises :class:`UnsupportedType`.
"""

from __future__ import annotations

import ast
import random
from typing import Any

LETTERS = "abcdeghilmnorstuAEIOXYZ"
"""Characters drawn for strings: vowels and consonants in both cases, plus spaces (added below)."""


class UnsupportedType(ValueError):
    """An annotation this module cannot make values for."""


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):  # typing.List
        return node.attr
    if isinstance(node, ast.Constant) and node.value is None:
        return "None"
    raise UnsupportedType(f"unsupported type annotation {ast.unparse(node)!r}")


def parse_annotation(text: str) -> ast.expr:
    """The annotation's expression; :class:`UnsupportedType` if it is not one."""
    try:
        return ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise UnsupportedType(f"not a type annotation: {text!r}") from None


def check_supported(node: ast.expr | str) -> None:
    """Raise :class:`UnsupportedType` unless values of ``node`` can be drawn."""
    random_value(node, random.Random(0))


def random_value(node: ast.expr | str, rng: random.Random, size: int = 6) -> Any:
    """A random value of the annotation ``node`` (an expression or its source text).

    ``size`` bounds container lengths (0..size) and integers (-3*size..3*size, now and then a
    larger one)."""
    if isinstance(node, str):
        node = parse_annotation(node)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # T | None
        options = [node.left, node.right]
        return random_value(rng.choice(options), rng, size)
    if isinstance(node, ast.Subscript):
        outer = _name(node.value).lower()
        args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if outer in ("list", "set", "frozenset", "sequence", "iterable") and len(args) == 1:
            items = [random_value(args[0], rng, size) for _ in range(rng.randint(0, size))]
            if outer in ("set", "frozenset"):
                return set(items) if outer == "set" else frozenset(items)
            return items
        if outer == "tuple":
            if len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is Ellipsis:
                return tuple(random_value(args[0], rng, size) for _ in range(rng.randint(0, size)))
            return tuple(random_value(a, rng, size) for a in args)
        if outer == "dict" and len(args) == 2:
            return {random_value(args[0], rng, size): random_value(args[1], rng, size)
                    for _ in range(rng.randint(0, size))}
        if outer == "optional" and len(args) == 1:
            return None if rng.random() < 0.2 else random_value(args[0], rng, size)
        raise UnsupportedType(f"unsupported type annotation {ast.unparse(node)!r}")
    name = _name(node)
    if name == "int":
        if rng.random() < 0.1:
            return rng.randint(-10 * size * size, 10 * size * size)
        return rng.randint(-3 * size, 3 * size)
    if name == "float":
        return round(rng.uniform(-3 * size, 3 * size), 2)
    if name == "bool":
        return rng.random() < 0.5
    if name == "str":
        n = rng.randint(0, 2 * size)
        return "".join(" " if rng.random() < 0.15 else rng.choice(LETTERS) for _ in range(n))
    if name == "None":
        return None
    raise UnsupportedType(f"unsupported type annotation {ast.unparse(node)!r}")


def is_literal(value: Any) -> bool:
    """Whether ``repr(value)`` reads back as an equal value with :func:`ast.literal_eval` (so it
    can stand in an ``assert`` line)."""
    try:
        return bool(ast.literal_eval(repr(value)) == value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
