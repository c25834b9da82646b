"""Prompt templates for solving a problem, shared by the teacher and the trainer so the student is
trained and asked with the same prompts, and the extraction of code from a chatty answer.

Templates are ``str.format`` strings over the fields of a :class:`~iterkd.shared.formats.Problem`
(``{prompt}``, ``{entry_point}``, ``{id}``); they are configurable in each service's section.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, field_validator

from iterkd.shared.formats import Problem

DEFAULT_SOLVE_TEMPLATE = (
    "Solve the following Python programming problem. Answer with code only: one complete, "
    "self-contained Python program in a single ```python code block, with every import it needs "
    "and the function `{entry_point}` defined at the top level. No explanation, no tests, no "
    "example usage.\n\n{prompt}"
)

# For completion (non-chat) models on HumanEval-style prompts: the prompt itself, to be continued.
COMPLETION_TEMPLATE = "{prompt}"

SOLVE_FIELDS = ("prompt", "entry_point", "id")

# The question service's per-level requests for a new question (keys: the parent's level). They
# live here, beside the solve template, so a teacher can be trained on exactly the prompts the
# question service sends (see iterkd.teacher.miniature).
_REPLY_FORMAT = """
Answer in exactly this format and nothing else:

### Description
<the new question, as a short self-contained problem statement>

### Signature
```python
<any imports the signature needs>
def <function_name>(<parameters>) -> <return type>:
```

### Tests
```python
assert <function_name>(...) == ...
<at least 3 asserts, one per line, covering edge cases>
```

### Solution
```python
<a complete, correct reference solution>
```
"""

DEFAULT_QUESTION_TEMPLATES: dict[str, str] = {
    "mastered": (
        "You are writing programming exercises for a student model that has mastered this question:\n\n"
        "{prompt}\n\nWrite ONE new, harder variant of it. Make it harder in one way: add a constraint, "
        "require extra reasoning steps, add a rarer requirement, or impose a complexity bound. It must "
        "be a different function from `{entry_point}`, self-contained and testable with asserts.\n"
        + _REPLY_FORMAT
    ),
    "learning": (
        "You are writing programming exercises for a student model that is learning the skill this "
        "question exercises:\n\n{prompt}\n\nWrite ONE new question that practises the same skill in a "
        "different setting, of similar difficulty. It must not be a rewording of the original.\n"
        + _REPLY_FORMAT
    ),
    "struggling": (
        "You are writing programming exercises for a student model that fails this question:\n\n"
        "{prompt}\n\nWrite ONE simpler stepping-stone question: a smaller sub-problem or an easier "
        "version that builds towards solving it.\n" + _REPLY_FORMAT
    ),
}


def render_question_prompt(problem: Problem, level: str, template: str) -> str:
    """The request for a new question from ``problem`` (whose level is ``level``)."""
    return template.format(prompt=problem.prompt.strip(), entry_point=problem.entry_point or "solution",
                           tests=problem.tests.strip(), id=problem.id, level=level)


def check_template(template: str, where: str = "template", fields: Iterable[str] = SOLVE_FIELDS,
                   required: str = "prompt") -> str:
    """Reject a ``str.format`` template with unknown fields, broken braces or without its
    ``required`` field, naming the problem; every configurable template goes through this."""
    allowed = sorted(fields)
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"{where}: invalid template: {exc}") from None
    unknown = sorted(n for n in names if n not in allowed)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join('{' + n + '}' for n in unknown)}; "
                         f"use {', '.join('{' + n + '}' for n in allowed)}")
    if required not in names:
        raise ValueError(f"{where}: the template must contain {{{required}}}")
    return template


class PromptConfig(BaseModel):
    """How a problem becomes a model prompt; one section shared by teacher and trainer configs."""

    model_config = ConfigDict(extra="forbid")

    solve_template: str = DEFAULT_SOLVE_TEMPLATE
    use_chat_template: bool = True

    @field_validator("solve_template")
    @classmethod
    def _valid(cls, value: str) -> str:
        return check_template(value, "solve_template")


def render_solve_prompt(problem: Problem, template: str = DEFAULT_SOLVE_TEMPLATE) -> str:
    return template.format(prompt=problem.prompt.rstrip() + "\n", entry_point=problem.entry_point or "solution",
                           id=problem.id)


# A fenced block: its language tag and its body; an unclosed fence runs to the end of the text.
FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The code of an answer: the fenced block that defines ``entry_point`` (else the first Python
    block, else the first block); an answer without fences is returned as it is, minus any
    trailing prose after the code. Never raises."""
    blocks = [(lang.lower(), body) for lang, body in FENCE.findall(text)]
    if blocks:
        if entry_point:
            for _, body in blocks:
                if re.search(rf"^\s*(async\s+)?def\s+{re.escape(entry_point)}\s*\(", body, re.M):
                    return body.rstrip() + "\n"
        for lang, body in blocks:
            if lang in ("python", "py", "python3"):
                return body.rstrip() + "\n"
        return blocks[0][1].rstrip() + "\n"
    return text.rstrip() + "\n" if text.strip() else ""
