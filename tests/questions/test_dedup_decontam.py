"""Decontamination catches renamed HumanEval questions; near-duplicate detection (both methods)."""

import re
from pathlib import Path

import pytest

from iterkd.questions.decontam import Decontaminator, build_decontaminator, problem_text
from iterkd.questions.dedup import NearDuplicateIndex
from iterkd.shared.formats import load_humaneval, load_mbpp

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

ORIGINAL = '''Given a list of meeting intervals as (start, end) pairs, return the minimum number of rooms
needed so that no two overlapping meetings share a room.

```python
def rooms_needed(meetings: list[tuple[int, int]]) -> int:
    """Count rooms for overlapping meetings."""
```
assert rooms_needed([(0, 30), (5, 10), (15, 20)]) == 2
assert rooms_needed([]) == 0
'''


@pytest.fixture(scope="module")
def humaneval():
    return load_humaneval()


@pytest.fixture(scope="module")
def he_index(humaneval):
    d = Decontaminator()
    d.add_problems(humaneval)
    return d


def test_renamed_humaneval_question_is_caught(humaneval, he_index):
    p = humaneval[0]   # has_close_elements(numbers, threshold)
    text = problem_text(p)
    for old, new in [("has_close_elements", "any_pair_near"), ("numbers", "vals"), ("threshold", "eps"),
                     ("idx2", "b"), ("elem2", "y"), ("idx", "a"), ("elem", "x"), ("distance", "gap")]:
        text = re.sub(rf"\b{old}\b", new, text)
    assert "numbers" not in text and "has_close_elements" not in text
    assert he_index.is_contaminated(text)
    assert "HumanEval/0" in he_index.matches(text)
    # the solution alone, renamed, without the docstring: caught by the code n-grams
    code = re.sub(r"\bnumbers\b", "xs", re.sub(r"\bthreshold\b", "t", p.canonical_solution))
    code = "def close_pair(xs, t):\n" + re.sub(r"\bidx\b", "i", re.sub(r"\belem\b", "v", code))
    assert he_index.matches(code) == ["HumanEval/0"]


def test_original_question_is_not_contaminated(he_index):
    assert not he_index.is_contaminated(ORIGINAL)
    assert he_index.matches(ORIGINAL) == []


def test_idioms_shared_by_several_problems_do_not_count():
    shared = "def f(xs):\n    total = 0\n    for i in range(len(xs)):\n        if xs[i] > 0:\n" \
             "            total = total + xs[i] * xs[i] - 1\n    return total\n"
    d = Decontaminator(ngram=13, code_ngram=13, idiom_df=2)
    d.add_texts([("a", shared + "\nassert f([1]) == 0\n"), ("b", shared + "\nassert f([2]) == 3\n")])
    assert not d.is_contaminated(shared.replace("xs", "arr"))
    d1 = Decontaminator(ngram=13, code_ngram=13, idiom_df=0)
    d1.add_texts([("a", shared), ("b", shared)])
    assert d1.matches(shared.replace("xs", "arr")) == ["a", "b"]


def test_mbpp_test_split_from_config():
    if not (DATA / "mbpp.jsonl").is_file():
        pytest.skip(f"MBPP data not present at {DATA}")
    d = build_decontaminator(humaneval=False, mbpp_path=str(DATA / "mbpp.jsonl"))
    by_id = {p.id: p for p in load_mbpp(DATA / "mbpp.jsonl")}
    assert d.matches(problem_text(by_id["11"])) == ["mbpp/11"]      # test split
    assert d.matches(problem_text(by_id["5"])) == []                 # prompting split is not indexed


@pytest.mark.parametrize("method", ["minhash", "jaccard"])
def test_near_duplicates(method, humaneval):
    index = NearDuplicateIndex(threshold=0.8, method=method)
    index.add_many((p.id, problem_text(p)) for p in humaneval[:60])
    p = humaneval[10]
    edited = problem_text(p).replace("Find the shortest palindrome", "Find the shortest  palindrome string")
    found = index.query(edited)
    assert found and found[0][0] == p.id and 0.8 <= found[0][1] < 1.0
    assert index.query(problem_text(humaneval[100])) == []     # a different question
    assert index.query(ORIGINAL) == []
    # dedupe: the second copy inside a batch is a duplicate of the first, not indexed twice
    small_edit = ORIGINAL.replace("share a room.", "share one room.")
    out = index.dedupe([("new1", ORIGINAL), ("new2", small_edit), ("new3", edited)])
    assert out[0] is None and out[1][0] == "new1" and out[2][0] == p.id
    assert "new1" in index.keys and "new2" not in index.keys


def test_near_duplicate_threshold_is_configurable(humaneval):
    a, b = problem_text(humaneval[2]), problem_text(humaneval[3])
    strict = NearDuplicateIndex(threshold=0.99, method="jaccard")
    strict.add("a", a)
    assert strict.query(a.replace("Given", "For")) == []
    loose = NearDuplicateIndex(threshold=0.5, method="jaccard")
    loose.add("a", a)
    assert loose.query(a.replace("Given", "For"))[0][0] == "a"
    assert loose.query(b) == []
