"""Levels on constructed feedback; parsing of well-formed, chatty and broken teacher replies."""

import pytest

from iterkd.questions.config import LevelsConfig, QuestionsConfig
from iterkd.questions.generate import build_prompt, parse_reply
from iterkd.questions.levels import assign_level, assign_levels, quality_of
from iterkd.shared.config import ConfigError, merge_overrides, parse_config
from iterkd.shared.formats import Feedback


def fb(pass_rate, static=None, judge=None, quality=0.0, pid="p"):
    return Feedback(problem_id=pid, pass_rate=pass_rate, static=static, judge=judge, quality=quality)


@pytest.mark.parametrize(("row", "level"), [
    (fb(1.0, 0.9, 0.9), "mastered"),
    (fb(1.0, 0.2, 0.3), "learning"),        # every answer passes, quality low
    (fb(0.5, 0.9, 0.9), "learning"),
    (fb(0.0, 0.9, 0.9), "struggling"),
    (fb(1.0, None, None, quality=0.8), "mastered"),  # no weighted view: the row's quality
    (fb(1.0, None, None, quality=0.1), "learning"),
])
def test_default_levels(row, level):
    assert assign_level(row, LevelsConfig()) == level


def test_thresholds_and_weights_come_from_config():
    cfg = LevelsConfig(mastered_min_pass=0.75, struggling_max_pass=0.25, mastered_quality=0.5,
                       weights={"pass_rate": 0.0, "static": 1.0, "judge": 0.0})
    assert quality_of(fb(1.0, 0.6, 0.0), cfg) == pytest.approx(0.6)
    rows = assign_levels([fb(0.8, 0.6, 0.0, pid="a"), fb(0.2, pid="b"), fb(0.5, 0.9, 0.9, pid="c")], cfg)
    assert [r.level for r in rows] == ["mastered", "struggling", "learning"]


def test_random_levels_ignore_the_feedback_and_are_reproducible():
    """The ablation of the feedback-based update: a level says nothing about how the student did."""
    rows = [fb(1.0, 0.9, 0.9, pid=f"q{i}") for i in range(60)]  # all mastered by the feedback
    cfg = LevelsConfig(assign="random", random_seed=7)
    levels = [r.level for r in assign_levels(rows, cfg)]
    assert {"mastered", "learning", "struggling"} == set(levels)
    assert 10 <= levels.count("mastered") <= 30  # about a third each
    assert levels == [r.level for r in assign_levels(rows, cfg)]  # the same seed, the same levels
    assert levels != [r.level for r in assign_levels(rows, LevelsConfig(assign="random", random_seed=8))]
    merged = merge_overrides(QuestionsConfig(), '{"levels": {"assign": "random"}}', allowed=("levels",))
    assert merged.levels.assign == "random"  # a run's evolve stage may ask for it per request


def test_bad_level_config_is_an_error():
    with pytest.raises(ConfigError, match="struggling_max_pass"):
        parse_config({"levels": {"struggling_max_pass": 1.0}}, QuestionsConfig)
    with pytest.raises(ConfigError, match="unknown field"):
        merge_overrides(QuestionsConfig(), '{"generation": {"templates": {"mastered": "{nope} {prompt}"}}}')
    with pytest.raises(ConfigError, match="unknown level"):
        parse_config({"generation": {"per_question": {"expert": 1}}}, QuestionsConfig)


WELL_FORMED = '''### Description
Return the sum of the squares of the even numbers in a list.

### Signature
```python
from typing import List
def sum_even_squares(nums: List[int]) -> int:
```

### Tests
```python
assert sum_even_squares([1, 2, 3, 4]) == 20
assert sum_even_squares([]) == 0
assert sum_even_squares([-2]) == 4
```

### Solution
```python
def sum_even_squares(nums):
    return sum(x * x for x in nums if x % 2 == 0)
```
'''

CHATTY = '''Sure! Here's a harder variant of the question.

**Description:**
Given a string, return the longest palindromic substring; ties go to the leftmost one.

**Function signature:**
```python
def longest_pal(s: str) -> str:
    ...
```
**Tests:**
```python
import sys
assert longest_pal("babad") == "bab"
assert longest_pal("cbbd") == "bb"
print("all good")
```
I hope this helps!'''

NO_HEADERS = '''Here is a new question: write a function that counts the vowels in a string.
```python
def count_vowels(s):
    return sum(c in "aeiou" for c in s.lower())
```
```python
assert count_vowels("Hello") == 2
assert count_vowels("") == 0
```'''

JSON_FORM = '''```json
{"description": "Reverse the order of the words.", "signature": "def rev_words(s: str) -> str:",
 "tests": ["assert rev_words('a b') == 'b a'", "assert rev_words('x') == 'x'"]}
```'''


@pytest.mark.parametrize(("reply", "entry", "n_tests", "has_solution", "desc_start"), [
    (WELL_FORMED, "sum_even_squares", 3, True, "Return the sum"),
    (CHATTY, "longest_pal", 2, False, "Given a string"),
    (NO_HEADERS, "count_vowels", 2, True, "write a function that counts"),
    (JSON_FORM, "rev_words", 2, False, "Reverse the order"),
])
def test_parses_good_replies(reply, entry, n_tests, has_solution, desc_start):
    q = parse_reply(reply)
    assert q is not None
    assert q.entry_point == entry
    assert q.n_tests == n_tests and all(t.startswith("assert") for t in q.tests.splitlines())
    assert (q.solution is not None) == has_solution
    assert q.description.startswith(desc_start)
    assert "Sure" not in q.description and "hope" not in q.description
    prompt = build_prompt(q)
    assert q.signature in prompt and "```python" in prompt


def test_well_formed_details():
    q = parse_reply(WELL_FORMED)
    assert q.signature == "def sum_even_squares(nums: List[int]) -> int:"
    assert q.imports == "from typing import List"
    assert q.params == ["nums"]
    chatty = parse_reply(CHATTY)
    assert chatty.test_setup == "import sys" and "print" not in chatty.tests


@pytest.mark.parametrize("reply", [
    "",
    "I'm sorry, I cannot help with that.",
    "### Description\nAdd numbers.\n### Tests\n```python\nassert add(1, 2) == \n```",   # no signature, broken test
    "### Description\nAdd.\n### Signature\n```python\ndef add(a, b:\n```\n"
    "### Tests\n```python\nassert add(1,2)==3\n```",
    "### Description\nAdd.\n### Signature\n```python\ndef add(a, b):\n```\n### Tests\n```python\nprint(add(1, 2))\n```",
    "### Signature\n```python\ndef add(a, b):\n```\n### Tests\n```python\nassert add(1, 2) == 3\n```",  # no description
    '{"description": 3, "tests": null}',
    "```python\n" + "(" * 500 + "\n```",
])
def test_broken_replies_are_none(reply):
    assert parse_reply(reply) is None
