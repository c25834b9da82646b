"""Solve prompts and code extraction from chatty answers."""

import re

import pytest

from iterkd.shared.formats import Problem
from iterkd.shared.prompts import PromptConfig, extract_code, render_solve_prompt

PROBLEM = Problem(id="q", prompt="Write `twice(x)` returning 2*x.", entry_point="twice", tests="assert twice(2) == 4")


def test_render_uses_problem_fields() -> None:
    text = render_solve_prompt(PROBLEM, "Solve {id} with {entry_point}:\n{prompt}")
    assert text == "Solve q with twice:\nWrite `twice(x)` returning 2*x.\n"
    assert "`twice` defined at the top level" in render_solve_prompt(PROBLEM)


@pytest.mark.parametrize(
    ("template", "message"),
    [("{prompt} {nope}", "unknown field(s) {nope}"), ("no fields", "must contain {prompt}"), ("{prompt", "invalid")],
)
def test_bad_templates_are_refused(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        PromptConfig(solve_template=template)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Sure! Here it is:\n```python\ndef twice(x):\n    return 2 * x\n```\nHope this helps.",
         "def twice(x):\n    return 2 * x\n"),
        ("```\nhelper = 1\n```\n```python\ndef twice(x):\n    return x + x\n```", "def twice(x):\n    return x + x\n"),
        ("```py\nimport math\n\ndef other():\n    pass\n```", "import math\n\ndef other():\n    pass\n"),
        ("def twice(x):\n    return 2 * x\n", "def twice(x):\n    return 2 * x\n"),
        ("```python\ndef twice(x):\n    return 2 * x", "def twice(x):\n    return 2 * x\n"),
        ("", ""),
    ],
)
def test_extract_code(answer: str, expected: str) -> None:
    assert extract_code(answer, "twice") == expected
