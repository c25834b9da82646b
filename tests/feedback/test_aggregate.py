"""Per-problem aggregation with hand-computed numbers."""

from __future__ import annotations

import pytest

from iterkd.feedback.aggregate import Weights, aggregate, quality, summarize
from iterkd.shared.formats import JudgeResult, StaticResult, Verdict


def v(sid: str, pid: str, passed: bool) -> Verdict:
    return Verdict(sample_id=sid, problem_id=pid, passed=passed, result="passed" if passed else "failed: x")


VERDICTS = [
    v("a0", "A", True), v("a1", "A", True), v("a2", "A", False), v("a3", "A", True),  # 3/4
    v("b0", "B", False), v("b1", "B", False),  # 0/2
]
STATIC = [
    StaticResult(sample_id="a0", pylint_score=10.0), StaticResult(sample_id="a1", pylint_score=8.0),
    StaticResult(sample_id="a2", pylint_score=6.0), StaticResult(sample_id="a3", pylint_score=0.0),
    StaticResult(sample_id="b0", pylint_score=5.0), StaticResult(sample_id="b1", pylint_score=5.0),
]
JUDGE = [
    JudgeResult(sample_id="a0", score=6.0, max_score=6.0), JudgeResult(sample_id="a1", score=3.0, max_score=6.0),
    JudgeResult(sample_id="a2", score=None, max_score=6.0),  # unparsed: left out of the mean
    JudgeResult(sample_id="a3", score=0.0, max_score=6.0),
    JudgeResult(sample_id="b0", score=None, max_score=6.0), JudgeResult(sample_id="b1", score=None, max_score=6.0),
]


def test_all_views_hand_computed() -> None:
    rows = aggregate(VERDICTS, STATIC, JUDGE, Weights(0.6, 0.1, 0.3), problem_order=["B", "A"])
    assert [r.problem_id for r in rows] == ["B", "A"]
    b, a = rows
    assert a.pass_rate == 0.75
    assert a.static == pytest.approx(0.6)  # (10 + 8 + 6 + 0) / 4 / 10
    assert a.judge == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3, the unparsed one left out
    assert a.quality == pytest.approx(0.6 * 0.75 + 0.1 * 0.6 + 0.3 * 0.5)  # 0.66
    assert a.level is None
    # B: the judge scored nothing -> judge view absent, weights renormalised over pass + static
    assert b.pass_rate == 0.0 and b.static == pytest.approx(0.5) and b.judge is None
    assert b.quality == pytest.approx((0.6 * 0.0 + 0.1 * 0.5) / 0.7)


def test_views_not_run_are_left_out_not_zero() -> None:
    only_exec = aggregate(VERDICTS, None, None, Weights(0.6, 0.1, 0.3))
    assert [(r.problem_id, r.pass_rate, r.static, r.judge, r.quality) for r in only_exec] == [
        ("A", 0.75, None, None, 0.75), ("B", 0.0, None, None, 0.0)]
    with_judge = aggregate(VERDICTS, None, JUDGE, Weights(0.6, 0.1, 0.3))
    assert with_judge[0].quality == pytest.approx((0.6 * 0.75 + 0.3 * 0.5) / 0.9)


def test_quality_weights() -> None:
    assert quality(1.0, 0.0, 0.0, Weights(1, 1, 2)) == pytest.approx(0.25)
    assert quality(0.5, None, 1.0, Weights(0, 1, 1)) == 1.0  # pass weight 0: judge alone
    assert quality(0.5, 1.0, None, Weights(0, 0, 1)) == 0.5  # present views weigh 0: the pass rate
    with pytest.raises(ValueError, match="non-negative"):
        Weights(-1, 0, 0)


def test_rows_for_unknown_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown sample 'zz'"):
        aggregate(VERDICTS, [StaticResult(sample_id="zz", pylint_score=1.0)])


def test_summary_metrics() -> None:
    rows = aggregate(VERDICTS, STATIC, JUDGE)
    m = summarize(VERDICTS, rows, [1, 2, 3], STATIC, JUDGE, problems_total=3)
    # pass@1: mean of 3/4 and 0/2; pass@2: A = 1 - C(1,2)/C(4,2) = 1, B = 0
    assert m["pass@1"] == pytest.approx(0.375)
    assert m["pass@2"] == pytest.approx(0.5)
    assert "pass@3" not in m  # B has only 2 samples
    assert m["samples"] == 6 and m["passed"] == 3 and m["pass_rate"] == 0.5
    assert m["problems"] == 2 and m["problems_without_samples"] == 1
    assert m["static_mean"] == pytest.approx(34 / 6)
    assert m["judge_mean"] == pytest.approx(3.0) and m["judge_parsed"] == pytest.approx(0.5)
    assert m["quality_mean"] == pytest.approx((rows[0].quality + rows[1].quality) / 2)
