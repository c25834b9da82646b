"""Backends behind one interface: ``tgi`` (huggingface_hub.InferenceClient), ``openai`` (any
OpenAI-compatible server, over httpx) and ``hf`` (a local transformers model).

Every backend turns ``(prompts, SamplingParams)`` into ``params.n`` samples per prompt. Sample ``i``
of prompt ``j`` uses ``derive_seed(params.seed, j, i)`` (see :mod:`iterkd.shared.sampling`);
remote backends send it as the request's ``seed``, one HTTP request per sample, so n samples
differ and a rerun repeats them where the server honours seeds. Stop sequences are cut from the
text on our side too, so every backend returns text without them.

The remote backends are thin: the HTTP clients are shared (:class:`iterkd.shared.tgi.TgiClient`,
also the judge's, and :class:`iterkd.shared.remote.RemoteGenerator` under the OpenAI client), so
concurrency (``max_in_flight``), retries (:mod:`iterkd.shared.retry`) and seeds behave the same
everywhere.

Every backend also watches what it returns: when ``n > 1`` samples asked at temperature > 0 all
come back identical, it logs a warning, once per backend instance (a server that ignores the
temperature, e.g. a model whose generation config says ``do_sample: false``, gives no faulty
answers to contrast).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iterkd.shared.errors import GenerationCancelled, Unavailable
from iterkd.shared.inference import SamplingParams
from iterkd.shared.remote import RemoteGenerator, Secret, translate
from iterkd.shared.retry import RetryPolicy
from iterkd.shared.sampling import Cancelled, GenOutput, is_cancelled
from iterkd.shared.tgi import TgiClient
from iterkd.teacher.config import TeacherConfig

log = logging.getLogger("iterkd.teacher.backends")

DEFAULT_HF_MODEL = ".iterkd/models/tiny-teacher"

__all__ = ["Backend", "BackendInfo", "HFBackend", "OpenAIBackend", "Secret", "TGIBackend", "load_api_key",
           "make_backend"]


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
    """What the service needs from a model server.

    Subclasses implement :meth:`_iter_generate`; :meth:`iter_generate` wraps it and watches for
    samples that should differ and do not (see the module docstring)."""

    name: str
    _warned_identical = False

    @abstractmethod
    def info(self) -> BackendInfo: ...

    @abstractmethod
    def _iter_generate(self, prompts: Sequence[str], params: SamplingParams, cancelled: Cancelled,
                       deadline: float | None) -> Iterator[tuple[int, int, Any]]:
        """Yield ``(prompt_index, sample_index, output)`` as samples finish (any order)."""

    def iter_generate(self, prompts: Sequence[str], params: SamplingParams, cancelled: Cancelled = None,
                      deadline: float | None = None) -> Iterator[tuple[int, int, GenOutput]]:
        """Yield ``(prompt_index, sample_index, output)`` as samples finish (any order).
        ``deadline`` is absolute, in ``time.monotonic()`` seconds."""
        watch = params.n > 1 and params.temperature > 0 and not self._warned_identical
        texts: dict[int, list[str]] = {}
        for j, i, o in self._iter_generate(prompts, params, cancelled, deadline):
            if watch:
                texts.setdefault(j, []).append(o.text)
            yield j, i, o
        if watch:
            self._check_identical(texts, params)

    def _check_identical(self, texts: dict[int, list[str]], params: SamplingParams) -> None:
        full = [t for t in texts.values() if len(t) == params.n]
        if not full or any(len(set(t)) > 1 for t in full) or self._warned_identical:
            return
        self._warned_identical = True
        log.warning(
            f"the {self.name} backend returned {params.n} identical samples for each of {len(full)} prompt(s) at "
            f"temperature {params.temperature:g}: it is not sampling (a server that ignores the temperature, or "
            "a model whose generation config sets do_sample: false?); no faulty answers will come of it",
            extra={"backend": self.name, "n": params.n, "temperature": params.temperature, "prompts": len(full)})

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
# Remote backends


class RemoteBackend(Backend):
    """A backend over a shared HTTP client (:class:`~iterkd.shared.remote.RemoteGenerator`)."""

    def __init__(self, cfg: TeacherConfig, secret: Secret | None = None) -> None:
        self.cfg = cfg
        self.secret = secret
        self.policy = RetryPolicy(
            max_attempts=cfg.retry.max_attempts, initial_backoff_s=cfg.retry.initial_backoff_s,
            max_backoff_s=cfg.retry.max_backoff_s, total_budget_s=cfg.retry.total_budget_s,
            request_timeout_s=cfg.retry.request_timeout_s,
        )
        self.client = self._make_client()
        self.url = self.client.url
        self._info: BackendInfo | None = None
        self._info_lock = threading.Lock()
        self._info_retry_at = 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, model={self.cfg.model!r})"

    @abstractmethod
    def _make_client(self) -> RemoteGenerator: ...

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

    def _iter_generate(self, prompts: Sequence[str], params: SamplingParams, cancelled: Cancelled,
                       deadline: float | None) -> Iterator[tuple[int, int, GenOutput]]:
        yield from self.client.iter_generate(prompts, params, cancelled, deadline)

    def close(self) -> None:
        self.client.close()


class TGIBackend(RemoteBackend):
    """A text-generation-inference server through the shared :class:`~iterkd.shared.tgi.TgiClient`;
    the Messages API (``/v1/chat/completions``) when the request wants a chat template."""

    name = "tgi"

    def _make_client(self) -> RemoteGenerator:
        return TgiClient(self.cfg.url, self.policy, self.cfg.max_in_flight, self.secret,
                         messages_api=self.cfg.tgi_messages_api)

    def _chat(self) -> bool:
        return self.cfg.tgi_messages_api

    def _discover(self, timeout: float) -> BackendInfo:
        assert isinstance(self.client, TgiClient)
        data = self.client.endpoint_info(timeout)
        total = data.get("max_total_tokens") or 0
        return BackendInfo(str(data.get("model_id") or ""), self.name, int(total), self._chat())


class _OpenAIClient(RemoteGenerator):
    """Chat completions or completions on an OpenAI-compatible server, one sample per request."""

    name = "openai"

    def __init__(self, cfg: TeacherConfig, policy: RetryPolicy, secret: Secret | None) -> None:
        from urllib.parse import urlparse

        import httpx

        url = cfg.url.rstrip("/")
        if urlparse(url).path in ("", "/"):
            url += "/v1"
        super().__init__(url, policy, cfg.max_in_flight, secret)
        self.cfg = cfg
        headers = {"authorization": f"Bearer {secret.reveal()}"} if secret else {}
        self._http = httpx.Client(
            headers=headers, timeout=None,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=max(64, cfg.max_in_flight)),
        )
        self._model = cfg.model

    def models(self, timeout: float) -> list[dict[str, Any]]:
        response = self._http.get(f"{self.url}/models", timeout=timeout)
        response.raise_for_status()
        return list(response.json().get("data") or [])

    def _model_name(self) -> str:
        if not self._model:
            try:
                models = self.models(min(5.0, self.policy.request_timeout_s))
            except Exception as exc:
                raise translate(exc, self.secret, f"openai backend at {self.url}: listing models") from exc
            found = str((models[0] if models else {}).get("id") or "")
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


class OpenAIBackend(RemoteBackend):
    """Any OpenAI-compatible server (vLLM, SGLang, TGI's Messages API, hosted APIs): chat
    completions, or completions (also used when a request turns the chat template off)."""

    name = "openai"

    def _make_client(self) -> RemoteGenerator:
        return _OpenAIClient(self.cfg, self.policy, self.secret)

    def _chat(self) -> bool:
        return self.cfg.openai_mode == "chat"

    def _discover(self, timeout: float) -> BackendInfo:
        assert isinstance(self.client, _OpenAIClient)
        models = self.client.models(timeout)
        first = models[0] if models else {}
        length = first.get("max_model_len") or first.get("context_length") or 0
        return BackendInfo(str(first.get("id") or ""), self.name, int(length), self._chat())


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

    def _iter_generate(self, prompts: Sequence[str], params: SamplingParams, cancelled: Cancelled,
                       deadline: float | None) -> Iterator[tuple[int, int, Any]]:
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
