"""Calling a remote model server: one HTTP request per sample, bounded and retried.

:class:`RemoteGenerator` is the common part of every HTTP model client (the teacher's ``tgi`` and
``openai`` backends, the judge's TGI endpoint): sample ``i`` of prompt ``j`` is one request with
seed ``derive_seed(params.seed, j, i)``; at most ``max_in_flight`` requests run at once; each is
retried by :func:`iterkd.shared.retry.call_with_retry` on 408/425/429/5xx, timeouts and dropped
connections (:func:`classify`), within the policy's budget and the caller's deadline; the text is
cut before the earliest stop sequence on our side too. A failure that is not retried becomes
:class:`~iterkd.shared.rpc.BadRequest` (400/413/422: the request was bad) or
:class:`~iterkd.shared.rpc.Unavailable` (:func:`translate`), with any API key scrubbed from it.

Pure Python (no torch): the feedback and question images use it.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from concurrent import futures
from typing import Any

from iterkd.shared.errors import BadRequest, Unavailable
from iterkd.shared.inference import Generation, SamplingParams
from iterkd.shared.retry import Retryable, RetryPolicy, call_with_retry
from iterkd.shared.sampling import Cancelled, GenerationCancelled, GenOutput, cut_at_stop, derive_seed, is_cancelled

log = logging.getLogger("iterkd.shared.remote")

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class Secret:
    """An API key that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        return text.replace(self._value, "***") if self._value else text

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def http_response(exc: BaseException) -> Any:
    """The HTTP response an error carries (on itself or its cause chain), else None."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 5:
        response = getattr(cur, "response", None)
        if response is not None and isinstance(getattr(response, "status_code", None), int):
            return response
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _is_transport_error(exc: BaseException) -> str | None:
    """A timeout or connection failure from httpx, httpx2 or huggingface_hub, named."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"TimeoutException", "InferenceTimeoutError", "TimeoutError"}:
        return "timeout"
    if names & {"TransportError", "ConnectionError", "RemoteProtocolError", "NetworkError"}:
        return f"connection error ({type(exc).__name__})"
    return None


def classify(exc: BaseException) -> Retryable | None:
    """Retry on 408/425/429/5xx, timeouts and dropped connections; nothing else."""
    response = http_response(exc)
    if response is not None:
        code = response.status_code
        if code in RETRY_STATUS or code >= 500:
            return Retryable(f"HTTP {code}", _retry_after(response))
        return None
    kind = _is_transport_error(exc)
    return Retryable(kind) if kind else None


def _body_text(response: Any) -> str:
    try:
        text = response.text
    except Exception:
        return ""
    return " ".join(str(text).split())[:300]


def translate(exc: BaseException, secret: Secret | None, what: str) -> BaseException:
    """A non-retryable backend failure as one of our errors, the key scrubbed from the text.
    400/413/422 mean the request was bad (INVALID_ARGUMENT); anything else UNAVAILABLE."""
    redact = secret.redact if secret is not None else (lambda s: s)
    response = http_response(exc)
    if response is not None:
        code = response.status_code
        message = redact(f"{what}: the backend answered HTTP {code}: {_body_text(response)}".rstrip(": "))
        return BadRequest(message) if code in (400, 413, 422) else Unavailable(message)
    return Unavailable(redact(f"{what}: {type(exc).__name__}: {exc}"))


class RemoteGenerator(ABC):
    """One HTTP request per sample, ``max_in_flight`` at a time, each retried within the budget.

    Also a :class:`~iterkd.shared.inference.TextGenerator` (:meth:`generate`), which is how the
    judge uses it."""

    name = "remote"

    def __init__(self, url: str, policy: RetryPolicy | None = None, max_in_flight: int = 8,
                 secret: Secret | None = None) -> None:
        self.url = url.rstrip("/")
        self.policy = policy or RetryPolicy()
        self.secret = secret
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._pool = futures.ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix=f"{self.name}-http")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r})"

    @property
    def what(self) -> str:
        return f"{self.name} backend at {self.url}"

    @abstractmethod
    def _once(self, prompt: str, params: SamplingParams, seed: int, timeout: float) -> GenOutput:
        """One HTTP request for one sample (no retry, no stop cutting)."""

    def sample(self, prompt: str, params: SamplingParams, seed: int, cancelled: Cancelled = None,
               deadline: float | None = None) -> GenOutput:
        """One sample with retries; its text cut before the earliest stop sequence."""
        def attempt(timeout: float) -> GenOutput:
            with self._slots:
                return self._once(prompt, params, seed, timeout)

        def on_retry(attempt_no: int, reason: str, pause: float) -> None:
            log.info("retrying backend call", extra={"backend": self.name, "attempt": attempt_no,
                                                      "reason": reason, "backoff_s": round(pause, 3)})

        try:
            out = call_with_retry(attempt, self.policy, classify, deadline=deadline, cancelled=cancelled,
                                  what=self.what, on_retry=on_retry)
        except (GenerationCancelled, TimeoutError, Unavailable, BadRequest):
            raise
        except Exception as exc:
            raise translate(exc, self.secret, self.what) from None
        text, hit = cut_at_stop(out.text, params.stop)
        return GenOutput(text, "stop" if hit else out.finish_reason, out.tokens, seed)

    def iter_generate(self, prompts: Sequence[str], params: SamplingParams, cancelled: Cancelled = None,
                      deadline: float | None = None) -> Iterator[tuple[int, int, GenOutput]]:
        """Yield ``(prompt_index, sample_index, output)`` as samples finish (any order)."""
        jobs = [(j, i) for j in range(len(prompts)) for i in range(params.n)]
        if len(jobs) == 1:  # the common single-sample call: no thread hop
            yield 0, 0, self.sample(prompts[0], params, derive_seed(params.seed, 0, 0), cancelled, deadline)
            return
        pending = {
            self._pool.submit(self.sample, prompts[j], params, derive_seed(params.seed, j, i), cancelled,
                              deadline): (j, i)
            for j, i in jobs
        }
        try:
            while pending:
                done, _ = futures.wait(pending, timeout=0.1, return_when=futures.FIRST_COMPLETED)
                if is_cancelled(cancelled):
                    raise GenerationCancelled("generation cancelled")
                for fut in done:
                    j, i = pending.pop(fut)
                    yield j, i, fut.result()
        finally:
            for fut in pending:
                fut.cancel()

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[Generation]:
        """``params.n`` texts per prompt, in order (the :class:`TextGenerator` contract)."""
        rows: list[list[GenOutput | None]] = [[None] * params.n for _ in prompts]
        for j, i, o in self.iter_generate(prompts, params):
            rows[j][i] = o
        return [Generation(texts=[o.text for o in row if o is not None],
                           finish_reasons=[o.finish_reason for o in row if o is not None]) for row in rows]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
