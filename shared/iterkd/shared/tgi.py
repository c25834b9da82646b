"""The one client of a text-generation-inference server, through huggingface_hub's
``InferenceClient`` (the maintained TGI client): used by the teacher's ``tgi`` backend and by the
judge's TGI endpoint.

``text_generation`` (TGI's ``POST /``) by default; the Messages API (``/v1/chat/completions``)
when ``messages_api`` is on and the request wants a chat template. Temperature 0 is greedy
(``do_sample: false``, no temperature sent). Seeds, concurrency, retries and stop cutting are
:class:`~iterkd.shared.remote.RemoteGenerator`'s.
"""

from __future__ import annotations

import threading
from typing import Any

from iterkd.shared.inference import SamplingParams
from iterkd.shared.remote import RemoteGenerator, Secret
from iterkd.shared.retry import RetryPolicy
from iterkd.shared.sampling import GenOutput

_DIRECT_ENDPOINTS: set[str] = set()
_SESSION_LOCK = threading.Lock()
_SESSION_INSTALLED = False


def install_hf_session(url: str, pool_size: int) -> None:
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


_FINISH = {"eos_token": "eos", "stop_sequence": "stop", "length": "length", "stop": "stop"}


class TgiClient(RemoteGenerator):
    """A TGI server at ``url`` (its root; a trailing ``/generate`` is dropped)."""

    name = "tgi"

    def __init__(self, url: str, policy: RetryPolicy | None = None, max_in_flight: int = 8,
                 secret: Secret | None = None, messages_api: bool = False) -> None:
        root = url.rstrip("/")
        root = root.removesuffix("/generate")
        super().__init__(root, policy, max_in_flight, secret)
        self.messages_api = messages_api
        install_hf_session(self.url, max_in_flight)

    def _client(self, timeout: float) -> Any:
        from huggingface_hub import InferenceClient

        token = self.secret.reveal() if self.secret else None
        return InferenceClient(model=self.url, provider="hf-inference", timeout=timeout, token=token)

    def endpoint_info(self, timeout: float) -> dict[str, Any]:
        """What the server says about itself (``GET /info``): model_id, max_total_tokens, ..."""
        return dict(self._client(timeout).get_endpoint_info())

    def _once(self, prompt: str, params: SamplingParams, seed: int, timeout: float) -> GenOutput:
        client = self._client(timeout)
        stop = [s for s in params.stop if s] or None
        if params.use_chat_template and self.messages_api:
            chat = client.chat_completion(
                [{"role": "user", "content": prompt}], max_tokens=params.max_new_tokens, seed=seed, stop=stop,
                temperature=float(params.temperature), top_p=params.top_p if params.top_p < 1 else None,
            )
            choice = chat.choices[0]
            reason = _FINISH.get(choice.finish_reason or "", "length")
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
        reason = _FINISH.get(str(details.finish_reason) if details else "", "length")
        return GenOutput(out.generated_text, reason, int(details.generated_tokens if details else 0), seed)
