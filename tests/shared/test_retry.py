"""The retry unit: backoff with full jitter, Retry-After, attempts, budget, deadline, cancellation."""

from __future__ import annotations

import random
import threading
import time

import pytest

from iterkd.shared.errors import GenerationCancelled
from iterkd.shared.retry import BudgetExceeded, RetriesExhausted, Retryable, RetryPolicy, call_with_retry


class Flaky(Exception):
    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("flaky")
        self.retry_after = retry_after


def classify(exc: BaseException) -> Retryable | None:
    return Retryable("flaky", exc.retry_after) if isinstance(exc, Flaky) else None


def fails(times: int, retry_after: float | None = None):
    calls: list[float] = []

    def fn(timeout: float) -> str:
        calls.append(timeout)
        if len(calls) <= times:
            raise Flaky(retry_after)
        return "ok"

    return fn, calls


FAST = RetryPolicy(max_attempts=5, initial_backoff_s=0.001, max_backoff_s=0.01, total_budget_s=5, request_timeout_s=2)


def test_succeeds_after_transient_failures() -> None:
    fn, calls = fails(3)
    assert call_with_retry(fn, FAST, classify) == "ok"
    assert len(calls) == 4


def test_non_retryable_error_is_raised_at_once() -> None:
    calls = []

    def fn(timeout: float) -> str:
        calls.append(timeout)
        raise KeyError("nope")

    with pytest.raises(KeyError):
        call_with_retry(fn, FAST, classify)
    assert len(calls) == 1


def test_attempts_run_out() -> None:
    fn, calls = fails(100)
    with pytest.raises(RetriesExhausted, match="failed 5 time"):
        call_with_retry(fn, FAST, classify)
    assert len(calls) == 5


def test_backoff_is_full_jitter_and_capped() -> None:
    policy = RetryPolicy(initial_backoff_s=1.0, max_backoff_s=4.0)
    rng = random.Random(0)
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        draws = [policy.backoff(attempt, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in draws)
        assert max(draws) > cap * 0.8 and min(draws) < cap * 0.2  # spread over the whole range


def test_retry_after_is_honoured() -> None:
    fn, _ = fails(1, retry_after=0.3)
    t0 = time.monotonic()
    assert call_with_retry(fn, FAST, classify) == "ok"
    assert time.monotonic() - t0 >= 0.3


def test_budget_is_respected() -> None:
    # Without the budget these attempts would back off for about 100 s (1000 x 0.1 s on average);
    # with it the call gives up within the 1 s budget. The bounds leave seconds of slack for a
    # loaded machine and still tell the two apart: it stops neither early (it keeps trying until
    # the next pause would cross the budget, so at least budget - max_backoff) nor late.
    policy = RetryPolicy(max_attempts=1000, initial_backoff_s=0.2, max_backoff_s=0.2, total_budget_s=1.0)
    fn, calls = fails(10_000)
    t0 = time.monotonic()
    with pytest.raises(BudgetExceeded, match=r"budget 1.0s\); last error: flaky"):
        call_with_retry(fn, policy, classify, rng=random.Random(0))
    elapsed = time.monotonic() - t0
    assert 0.8 <= elapsed < 4.0, elapsed
    assert 3 <= len(calls) < 1000


def test_retry_after_beyond_budget_gives_up_without_sleeping() -> None:
    fn, calls = fails(1, retry_after=30)
    t0 = time.monotonic()
    with pytest.raises(BudgetExceeded):
        call_with_retry(fn, FAST, classify)
    assert time.monotonic() - t0 < 1 and len(calls) == 1


def test_timeout_per_attempt_shrinks_to_the_deadline() -> None:
    fn, calls = fails(0)
    call_with_retry(fn, FAST, classify, deadline=time.monotonic() + 0.5)
    assert calls[0] <= 0.5


def test_deadline_already_passed() -> None:
    fn, calls = fails(0)
    with pytest.raises(BudgetExceeded):
        call_with_retry(fn, FAST, classify, deadline=time.monotonic() - 1)
    assert calls == []


def test_cancellation_interrupts_backoff() -> None:
    policy = RetryPolicy(max_attempts=5, initial_backoff_s=10, max_backoff_s=10, total_budget_s=60)
    fn, _ = fails(10, retry_after=10)
    gone = threading.Event()
    threading.Timer(0.2, gone.set).start()
    t0 = time.monotonic()
    with pytest.raises(GenerationCancelled):
        call_with_retry(fn, policy, classify, cancelled=gone)
    assert time.monotonic() - t0 < 2
