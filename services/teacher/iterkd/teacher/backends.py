"""Backends behind one interface: ``tgi`` (huggingface_hub.InferenceClient), ``openai`` (any
OpenAI-compatible server, over httpx) and ``hf`` (a local transformers model).

Every backend turns ``(prompts, SamplingParams)`` into ``params.n`` samples per prompt. Sample ``i``
of prompt ``j`` uses ``derive_seed(params.seed, j, i)`` (see :mod:`iterkd.shared.generation`);
remote backends send it as the request's ``seed``, one HTTP request per sample, so n samples
differ and a rerun repeats them where the server honours seeds. Stop sequences are cut from the
text on our side too, so every backend returns text without them.

Remote calls are bounded by ``max_in_flight`` concurrent HTTP requests per backend and retried
(:mod:`iterkd.teacher.retry`) on 429, 5xx, timeouts and dropped connections.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iterkd.shared.errors import BadRequest, GenerationCancelled, Unavailable
from iterkd.shared.generation import (
    Cancelled,
    GenOutput,
    cut_at_stop,
    derive_seed,
    is_cancelled,
)
from iterkd.shared.inference import SamplingParams
from iterkd.teacher.config import TeacherConfig
from iterkd.teacher.retry import Retryable, RetryPolicy, call_with_retry

log = logging.getLogger("iterkd.teacher.backends")

DEFAULT_HF_MODEL = ".iterkd/models/tiny-teacher"
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


def load_api_key(cfg: TeacherConfig) -> Secret | None:
    """The key from the mounted secret file (``api_key_file``) or else the environment variable."""
    import os

    if cfg.api_key_file:
        try:
            value = Path(cfg.api_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise Unavailable(f"teacher.api_key_file: cannot read {cfg.api_key_file}: {exc.strerror}") from None
        return Secret(value) if value else None
    if cfg.api_key_env:
        value = os.environ.get(cfg.api_key_env, "").strip()
        return Secret(value) if value else None
    return None


@dataclass(frozen=True)
class BackendInfo:
    model_id: str
    backend: str
    context_length: int  # 0 when the backend does not say
    has_chat_template: bool
    adapter: str = ""


class Backend(ABC):
    """What the service needs from a model server."""

    name: str

    @abstractmethod
    def info(self) -> BackendInfo: ...

    @abstractmethod
    def iter_generate(self, prompts: Sequence[str], params: SamplingParams, cancelled: Cancelled = None,
                      deadline: float | None = None) -> Iterator[tuple[int, int, GenOutput]]:
        """Yield ``(prompt_index, sample_index, output)`` as samples finish (any order).
        ``deadline`` is absolute, in ``time.monotonic()`` seconds."""

    def generate(self, prompts: Sequence[str], params: SamplingParams, cancelled: Cancelled = None,
                 deadline: float | None = None) -> list[list[GenOutput]]:
        """``params.n`` outputs per prompt, in prompt order then sample order."""
        out: list[list[GenOutput | None]] = [[None] * params.n for _ in prompts]
        for j, i, o in self.iter_generate(prompts, params, cancelled, deadline):
            out[j][i] = o
        return [[o for o in row if o is not None] for row in out]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections, threads and memory."""


# ---------------------------------------------------------------------------------------------
# Error classification shared by the remote backends


def _http_response(exc: BaseException) -> Any:
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
    response = _http_response(exc)
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
    response = _http_response(exc)
    if response is not None:
        code = response.status_code
        message = redact(f"{what}: the backend answered HTTP {code}: {_body_text(response)}".rstrip(": "))
        return BadRequest(message) if code in (400, 413, 422) else Unavailable(message)
    return Unavailable(redact(f"{what}: {type(exc).__name__}: {exc}"))


# ---------------------------------------------------------------------------------------------
# Remote backends


class RemoteBackend(Backend):
    """One HTTP request per sample, ``max_in_flight`` at a time, each retried within the budget."""

    def __init__(self, cfg: TeacherConfig, secret: Secret | None = None) -> None:
        self.cfg = cfg
        self.url = cfg.url.rstrip("/")
        self.secret = secret
        self.policy = RetryPolicy(
            max_attempts=cfg.retry.max_attempts, initial_backoff_s=cfg.retry.initial_backoff_s,
            max_backoff_s=cfg.retry.max_backoff_s, total_budget_s=cfg.retry.total_budget_s,
            request_timeout_s=cfg.retry.request_timeout_s,
        )
        self._slots = threading.BoundedSemaphore(cfg.max_in_flight)
        self._pool = futures.ThreadPoolExecutor(max_workers=cfg.max_in_flight, thread_name_prefix=f"{self.name}-http")
        self._info: BackendInfo | None = None
        self._info_lock = threading.Lock()
        self._info_retry_at = 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, model={self.cfg.model!r})"

    @abstractmethod
    def _once(self, prompt: str, params: SamplingParams, seed: int, timeout: float) -> GenOutput:
        """One HTTP request for one sample."""

    @abstractmethod
    def _discover(self, timeout: float) -> BackendInfo:
        """Ask the server for its model and context length."""

    def _fallback_info(self) -> BackendInfo:
        return BackendInfo(self.cfg.model or "", self.name, self.cfg.context_length or 0, self._chat())

    def _chat(self) -> bool:
        return False

    def info(self) -> BackendInfo:
        """What the server reports (asked once, then cached), overridden by the config."""
        with self._info_lock:
            if self._info is not None:
                return self._info
            if time.monotonic() < self._info_retry_at:  # asked recently and failed: don't slow every call
                return self._fallback_info()
            try:
                found = self._discover(min(5.0, self.policy.request_timeout_s))
            except Exception as exc:
                self._info_retry_at = time.monotonic() + 30.0
                redact = self.secret.redact if self.secret else (lambda s: s)
                log.warning("backend info unavailable", extra={"backend": self.name,
                                                               "error": redact(f"{type(exc).__name__}: {exc}")})
                return self._fallback_info()
            self._info = BackendInfo(
                model_id=self.cfg.model or found.model_id, backend=self.name,
                context_length=self.cfg.context_length or found.context_length,
                has_chat_template=found.has_chat_template,
            )
            return self._info

    def _sample(self, prompt: str, params: SamplingParams, seed: int, cancelled: Cancelled,
                deadline: float | None) -> GenOutput:
        def attempt(timeout: float) -> GenOutput:
            with self._slots:
                return self._once(prompt, params, seed, timeout)

        def on_retry(attempt_no: int, reason: str, pause: float) -> None:
            log.info("retrying backend call", extra={"backend": self.name, "attempt": attempt_no,
                                                      "reason": reason, "backoff_s": round(pause, 3)})

        what = f"{self.name} backend at {self.url}"
        try:
            out = call_with_retry(attempt, self.policy, classify, deadline=deadline, cancelled=cancelled,
                                  what=what, on_retry=on_retry)
        except (GenerationCancelled, TimeoutError, Unavailable, BadRequest):
            raise
        except Exception as exc:
            raise translate(exc, self.secret, what) from None
        text, hit = cut_at_stop(out.text, params.stop)
        return GenOutput(text, "stop" if hit else out.finish_reason, out.tokens, seed)

    def iter_generate(self, prompts: Sequence[str], params: SamplingParams, cancelled: Cancelled = None,
                      deadline: float | None = None) -> Iterator[tuple[int, int, GenOutput]]:
        jobs = [(j, i) for j in range(len(prompts)) for i in range(params.n)]
        if len(jobs) == 1:  # the common single-sample call: no thread hop
            yield 0, 0, self._sample(prompts[0], params, derive_seed(params.seed, 0, 0), cancelled, deadline)
            return
        pending = {
            self._pool.submit(self._sample, prompts[j], params, derive_seed(params.seed, j, i), cancelled,
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

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


_DIRECT_ENDPOINTS: set[str] = set()
_SESSION_LOCK = threading.Lock()
_SESSION_INSTALLED = False


def _install_hf_session(url: str, pool_size: int) -> None:
    """Let huggingface_hub's shared HTTP session reach ``url`` even with HF_HUB_OFFLINE=1.

    huggingface_hub's request hook refuses every request in offline mode, including those to a
    TGI server the user configured. We install a session whose hook lets requests to configured
    endpoints through and hands every other request (the Hub) to the stock hook, so offline mode
    still blocks the Hub. The session also gets a connection pool large enough for our
    concurrency (httpx keeps only 20 idle connections by default)."""
    global _SESSION_INSTALLED
    with _SESSION_LOCK:
        _DIRECT_ENDPOINTS.add(url.rstrip("/") + "/")
        if _SESSION_INSTALLED:
            return
        import httpx2
        from huggingface_hub import set_client_factory
        from huggingface_hub.utils._http import hf_request_event_hook

        def hook(request: Any) -> Any:
            target = str(request.url)
            if any(target.startswith(prefix) or target + "/" == prefix for prefix in _DIRECT_ENDPOINTS):
                return None
            return hf_request_event_hook(request)

        limits = httpx2.Limits(max_connections=None, max_keepalive_connections=max(64, pool_size))

        def factory() -> Any:
            return httpx2.Client(event_hooks={"request": [hook]}, follow_redirects=True, timeout=None, limits=limits)

        set_client_factory(factory)
        _SESSION_INSTALLED = True


_TGI_FINISH = {"eos_token": "eos", "stop_sequence": "stop", "length": "length", "stop": "stop"}


class TGIBackend(RemoteBackend):
    """A text-generation-inference server through ``huggingface_hub.InferenceClient``; the
    Messages API (``/v1/chat/completions``) when the request wants a chat template."""

    name = "tgi"

    def __init__(self, cfg: TeacherConfig, secret: Secret | None = None) -> None:
        super().__init__(cfg, secret)
        _install_hf_session(self.url, cfg.max_in_flight)

    def _client(self, timeout: float) -> Any:
        from huggingface_hub import InferenceClient

        token = self.secret.reveal() if self.secret else None
        return InferenceClient(model=self.url, provider="hf-inference", timeout=timeout, token=token)

    def _chat(self) -> bool:
        return self.cfg.tgi_messages_api

    def _discover(self, timeout: float) -> BackendInfo:
        data = self._client(timeout).get_endpoint_info()
        total = data.get("max_total_tokens") or 0
        return BackendInfo(str(data.get("model_id") or ""), self.name, int(total), self._chat())

    def _once(self, prompt: str, params: SamplingParams, seed: int, timeout: float) -> GenOutput:
        client = self._client(timeout)
        stop = [s for s in params.stop if s] or None
        if params.use_chat_template and self.cfg.tgi_messages_api:
            chat = client.chat_completion(
                [{"role": "user", "content": prompt}], max_tokens=params.max_new_tokens, seed=seed, stop=stop,
                temperature=float(params.temperature), top_p=params.top_p if params.top_p < 1 else None,
            )
            choice = chat.choices[0]
            reason = _TGI_FINISH.get(choice.finish_reason or "", "length")
            if reason == "stop" and not stop:
                reason = "eos"
            tokens = chat.usage.completion_tokens if chat.usage is not None else 0
            return GenOutput(choice.message.content or "", reason, int(tokens or 0), seed)
        sampling = params.temperature > 0
        out = client.text_generation(
            prompt, details=True, max_new_tokens=params.max_new_tokens, seed=seed, stop=stop,
            do_sample=sampling, temperature=float(params.temperature) if sampling else None,
            top_p=params.top_p if sampling and params.top_p < 1 else None,
        )
        details = out.details
        reason = _TGI_FINISH.get(str(details.finish_reason) if details else "", "length")
        return GenOutput(out.generated_text, reason, int(details.generated_tokens if details else 0), seed)


class OpenAIBackend(RemoteBackend):
    """Any OpenAI-compatible server (vLLM, SGLang, TGI's Messages API, hosted APIs): chat
    completions, or completions (also used when a request turns the chat template off)."""

    name = "openai"

    def __init__(self, cfg: TeacherConfig, secret: Secret | None = None) -> None:
        super().__init__(cfg, secret)
        from urllib.parse import urlparse

        import httpx

        if urlparse(self.url).path in ("", "/"):
            self.url = self.url.rstrip("/") + "/v1"
        headers = {"authorization": f"Bearer {secret.reveal()}"} if secret else {}
        self._http = httpx.Client(
            headers=headers, timeout=None,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=max(64, cfg.max_in_flight)),
        )
        self._model = cfg.model

    def _chat(self) -> bool:
        return self.cfg.openai_mode == "chat"

    def _discover(self, timeout: float) -> BackendInfo:
        response = self._http.get(f"{self.url}/models", timeout=timeout)
        response.raise_for_status()
        models = response.json().get("data") or []
        first = models[0] if models else {}
        length = first.get("max_model_len") or first.get("context_length") or 0
        return BackendInfo(str(first.get("id") or ""), self.name, int(length), self._chat())

    def _model_name(self) -> str:
        if not self._model:
            try:
                found = self._discover(min(5.0, self.policy.request_timeout_s)).model_id
            except Exception as exc:
                raise translate(exc, self.secret, f"openai backend at {self.url}: listing models") from exc
            if not found:
                raise Unavailable(f"openai backend at {self.url}: set teacher.model (the server lists no model)")
            self._model = found
        return self._model

    def _once(self, prompt: str, params: SamplingParams, seed: int, timeout: float) -> GenOutput:
        chat = self.cfg.openai_mode == "chat" and params.use_chat_template
        body: dict[str, Any] = {
            "model": self._model_name(), "max_tokens": params.max_new_tokens, "temperature": float(params.temperature),
            "top_p": float(params.top_p), "seed": seed, "n": 1,
        }
        stop = [s for s in params.stop if s]
        if stop:
            body["stop"] = stop
        if chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        response = self._http.post(f"{self.url}/{'chat/completions' if chat else 'completions'}", json=body,
                                   timeout=timeout)
        response.raise_for_status()
        data = response.json()
        choice = data["choices"][0]
        text = (choice.get("message") or {}).get("content") if chat else choice.get("text")
        finish = choice.get("finish_reason") or ""
        reason = {"stop": "stop" if stop else "eos", "length": "length"}.get(finish, "length")
        tokens = (data.get("usage") or {}).get("completion_tokens") or 0
        return GenOutput(text or "", reason, int(tokens), seed)

    def close(self) -> None:
        super().close()
        self._http.close()


# ---------------------------------------------------------------------------------------------
# Local model


class HFBackend(Backend):
    """A local transformers model (plus optional PEFT adapter), batched with left padding."""

    name = "hf"

    def __init__(self, cfg: TeacherConfig, generator: Any = None) -> None:
        from iterkd.torchkit.hf_generate import HFGenerator

        self.cfg = cfg
        model = cfg.model or DEFAULT_HF_MODEL
        self.generator = generator or HFGenerator(model, adapter_dir=cfg.adapter, device=cfg.device, dtype=cfg.dtype,
                                                  micro_batch_size=cfg.micro_batch_size)
        if cfg.context_length:  # a configured limit also bounds what the engine accepts
            self.generator.context_length = cfg.context_length

    def info(self) -> BackendInfo:
        g = self.generator
        return BackendInfo(g.model_id, self.name, g.context_length, g.has_chat_template,
                           g.adapter or "")

    def iter_generate(self, prompts: Sequence[str], params: SamplingParams, cancelled: Cancelled = None,
                      deadline: float | None = None) -> Iterator[tuple[int, int, GenOutput]]:
        def stop_now() -> bool:
            return is_cancelled(cancelled) or (deadline is not None and time.monotonic() >= deadline)

        try:
            yield from self.generator.iter_generate(prompts, params, stop_now)
        except GenerationCancelled:
            if deadline is not None and time.monotonic() >= deadline and not is_cancelled(cancelled):
                raise TimeoutError("the deadline passed while generating") from None
            raise

    def close(self) -> None:
        self.generator = None


def make_backend(cfg: TeacherConfig) -> Backend:
    factories: dict[str, Callable[[], Backend]] = {
        "tgi": lambda: TGIBackend(cfg, load_api_key(cfg)),
        "openai": lambda: OpenAIBackend(cfg, load_api_key(cfg)),
        "hf": lambda: HFBackend(cfg),
    }
    return factories[cfg.backend]()
