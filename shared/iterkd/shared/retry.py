"""Retries with exponential backoff and full jitter, inside a total time budget.

:func:`call_with_retry` calls ``fn(timeout)`` until it succeeds, a non-retryable error occurs, the
attempts run out, the budget (or the caller's deadline) is spent, or the caller goes away. What is
retryable is decided by a ``classify`` function, so the unit knows nothing about HTTP.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from iterkd.shared.errors import GenerationCancelled, Unavailable
from iterkd.shared.sampling import Cancelled, is_cancelled

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    total_budget_s: float = 120.0
    request_timeout_s: float = 60.0
    multiplier: float = 2.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max_backoff, initial * multiplier**(attempt-1))]."""
        cap = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return rng.uniform(0, cap)


@dataclass(frozen=True)
class Retryable:
    """How ``classify`` marks an error worth retrying; ``retry_after`` is the server's hint."""

    reason: str
    retry_after: float | None = None


class RetriesExhausted(Unavailable):
    """The backend kept failing; UNAVAILABLE, so the caller may try again later."""


class BudgetExceeded(TimeoutError):
    """The time budget or the caller's deadline ran out while retrying (DEADLINE_EXCEEDED)."""


def call_with_retry(fn: Callable[[float], T], policy: RetryPolicy,
                    classify: Callable[[BaseException], Retryable | None], *,
                    deadline: float | None = None, cancelled: Cancelled = None,
                    rng: random.Random | None = None, what: str = "backend call",
                    on_retry: Callable[[int, str, float], None] | None = None) -> T:
    """Call ``fn(timeout_s)`` with retries. ``deadline`` is absolute (``time.monotonic()``).

    Raises the last error unchanged when it is not retryable, :class:`RetriesExhausted` after
    ``max_attempts``, :class:`BudgetExceeded` when no time is left for another attempt, and
    :class:`GenerationCancelled` when ``cancelled`` turns true.
    """
    rng = rng or random.Random()
    start = time.monotonic()
    end = start + policy.total_budget_s
    if deadline is not None:
        end = min(end, deadline)
    waiter = threading.Event()
    last = ""
    for attempt in range(1, policy.max_attempts + 1):
        if is_cancelled(cancelled):
            raise GenerationCancelled(f"{what}: cancelled")
        left = end - time.monotonic()
        if left <= 0:
            raise BudgetExceeded(f"{what}: no time left after {attempt - 1} attempt(s)"
                                 f"{f'; last error: {last}' if last else ''}")
        try:
            return fn(min(policy.request_timeout_s, left))
        except GenerationCancelled:
            raise
        except Exception as exc:
            verdict = classify(exc)
            if verdict is None:
                raise
            last = verdict.reason
            if attempt == policy.max_attempts:
                break
            pause = policy.backoff(attempt, rng)
            if verdict.retry_after is not None:
                pause = max(pause, verdict.retry_after)
            if time.monotonic() + pause >= end:
                raise BudgetExceeded(
                    f"{what}: gave up after {attempt} attempt(s) in {time.monotonic() - start:.1f}s "
                    f"(budget {end - start:.1f}s); last error: {last}") from None
            if on_retry is not None:
                on_retry(attempt, last, pause)
            # Sleep in slices so a caller that goes away is noticed quickly.
            stop_at = time.monotonic() + pause
            while (rest := stop_at - time.monotonic()) > 0:
                if is_cancelled(cancelled):
                    raise GenerationCancelled(f"{what}: cancelled") from None
                waiter.wait(min(rest, 0.05))
    raise RetriesExhausted(f"{what}: failed {policy.max_attempts} time(s); last error: {last}")
