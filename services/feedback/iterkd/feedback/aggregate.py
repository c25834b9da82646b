"""Per-problem aggregation of the views, and the summary metrics of an evaluation.

For each problem with samples:

* ``pass_rate`` = passed samples / samples;
* ``static`` = mean pylint score / 10 over its samples (0..1), None when the static view did not run;
* ``judge`` = mean of score / max_score over its samples the judge could score (0..1), None when
  the judge did not run or scored none of them;
* ``quality`` = the weighted mean of the views present: weights are renormalised over the views
  that have a value, so a view that did not run is left out rather than counted as zero. When the
  present views all have weight 0, quality is the pass rate.

``level`` is left None: the question service assigns levels. Problems without samples get no row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from iterkd.feedback.passk import count_results, mean_pass_at_k
from iterkd.shared.formats import Feedback, JudgeResult, StaticResult, Verdict


@dataclass(frozen=True)
class Weights:
    pass_rate: float = 0.6
    static: float = 0.1
    judge: float = 0.3

    def __post_init__(self) -> None:
        if min(self.pass_rate, self.static, self.judge) < 0:
            raise ValueError(f"weights must be non-negative, got {self}")


def quality(pass_rate: float, static: float | None, judge: float | None, weights: Weights = Weights()) -> float:
    """The weighted mean of the views present (see the module docstring)."""
    parts = [(weights.pass_rate, pass_rate)]
    if static is not None:
        parts.append((weights.static, static))
    if judge is not None:
        parts.append((weights.judge, judge))
    total = sum(w for w, _ in parts)
    if total <= 0:
        return pass_rate
    return sum(w * v for w, v in parts) / total


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate(verdicts: Sequence[Verdict], static: Iterable[StaticResult] | None = None,
              judge: Iterable[JudgeResult] | None = None, weights: Weights = Weights(),
              problem_order: Sequence[str] | None = None) -> list[Feedback]:
    """One :class:`Feedback` per problem that has verdicts, in ``problem_order`` (then first seen).

    Static and judge rows are matched to problems through the verdicts' sample ids; rows for
    unknown sample ids are an error (they would silently skew a mean otherwise).
    """
    problem_of: dict[str, str] = {}
    by_problem: dict[str, list[Verdict]] = {}
    for v in verdicts:
        problem_of[v.sample_id] = v.problem_id
        by_problem.setdefault(v.problem_id, []).append(v)

    def grouped(rows: Iterable[StaticResult] | Iterable[JudgeResult] | None, what: str) -> dict[str, list] | None:
        if rows is None:
            return None
        out: dict[str, list] = {}
        for row in rows:
            pid = problem_of.get(row.sample_id)
            if pid is None:
                raise ValueError(f"{what} row for unknown sample {row.sample_id!r}")
            out.setdefault(pid, []).append(row)
        return out

    static_by = grouped(static, "static")
    judge_by = grouped(judge, "judge")
    order = list(dict.fromkeys([*(problem_order or []), *by_problem]))
    rows = []
    for pid in order:
        vs = by_problem.get(pid)
        if not vs:
            continue
        pass_rate = sum(v.passed for v in vs) / len(vs)
        s_val = None
        if static_by is not None:
            s_val = _mean([r.pylint_score / 10.0 for r in static_by.get(pid, [])])
        j_val = None
        if judge_by is not None:
            j_val = _mean([r.score / r.max_score for r in judge_by.get(pid, [])
                           if r.score is not None and r.max_score > 0])
        rows.append(Feedback(problem_id=pid, pass_rate=pass_rate, static=s_val, judge=j_val,
                             quality=quality(pass_rate, s_val, j_val, weights), level=None))
    return rows


def summarize(verdicts: Sequence[Verdict], feedback: Sequence[Feedback], ks: Sequence[int],
              static: Sequence[StaticResult] | None = None, judge: Sequence[JudgeResult] | None = None,
              problems_total: int | None = None) -> dict[str, float]:
    """The metrics of an evaluation:

    ``pass@k`` (unbiased estimator, averaged over problems with samples; a k is left out when some
    problem has fewer than k samples), ``samples``, ``passed``, ``pass_rate`` (over samples),
    ``problems`` (with samples), ``problems_without_samples``, ``static_mean`` (mean pylint score,
    0..10), ``judge_mean`` (mean judge score), ``judge_max_score``, ``judge_parsed`` (fraction of
    replies with a score), ``quality_mean`` (mean over problems).
    """
    metrics: dict[str, float] = {}
    if verdicts:
        pk, _ = mean_pass_at_k(count_results((v.problem_id, v.passed) for v in verdicts), list(ks))
        metrics.update(pk)
    passed = sum(v.passed for v in verdicts)
    metrics["samples"] = float(len(verdicts))
    metrics["passed"] = float(passed)
    metrics["pass_rate"] = passed / len(verdicts) if verdicts else 0.0
    metrics["problems"] = float(len(feedback))
    if problems_total is not None:
        metrics["problems_without_samples"] = float(problems_total - len(feedback))
    if static is not None:
        metrics["static_mean"] = _mean([r.pylint_score for r in static]) or 0.0
    if judge is not None:
        scored = [r for r in judge if r.score is not None]
        metrics["judge_mean"] = _mean([r.score for r in scored if r.score is not None]) or 0.0
        metrics["judge_parsed"] = len(scored) / len(judge) if judge else 0.0
        if judge:
            metrics["judge_max_score"] = float(judge[0].max_score)
    metrics["quality_mean"] = _mean([f.quality for f in feedback]) or 0.0
    return metrics


def weights_from(mapping: Mapping[str, float]) -> Weights:
    return Weights(**{k: float(v) for k, v in mapping.items()})
