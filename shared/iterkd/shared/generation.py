"""Generation requests, checked once for every service that generates (teacher and trainer).

:func:`sampling_params` turns the proto's ``GenerationParams`` into :class:`SamplingParams` or
raises :class:`~iterkd.shared.errors.BadRequest` naming the field; :func:`check_generate` does the
same for a whole ``GenerateRequest``. The limits are the serving service's configuration
(:class:`GenerationLimits`), so the same bad request gets the same INVALID_ARGUMENT everywhere.

One behaviour for every field, where proto3 cannot tell "unset" from zero:

* ``n`` and ``max_new_tokens`` must be set (>= 1); zero is refused, never read as a default;
* ``temperature`` must be finite and >= 0; ``top_p`` finite in (0, 1], 0 meaning 1;
* ``use_chat_template`` is the request's flag; a Solve also wraps when its service's configuration
  says so (a bool cannot say "unset", so a request cannot turn a configured wrapping off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from iterkd.shared.errors import require
from iterkd.shared.inference import SamplingParams
from iterkd.v1 import common_pb2


@dataclass(frozen=True)
class GenerationLimits:
    """What one service accepts: its configured limits and the model's context (0: unknown)."""

    max_n: int
    max_new_tokens: int
    max_batch_prompts: int
    context_length: int = 0


def sampling_params(p: common_pb2.GenerationParams, limits: GenerationLimits,
                    use_chat_template: bool | None = None) -> SamplingParams:
    """SamplingParams from the proto, or BadRequest saying which field is wrong."""
    require(p.n >= 1, f"params.n must be >= 1, got {p.n}")
    require(p.n <= limits.max_n, f"params.n={p.n} is over this service's limit max_n={limits.max_n}")
    require(p.max_new_tokens > 0, f"params.max_new_tokens must be > 0, got {p.max_new_tokens}")
    require(p.max_new_tokens <= limits.max_new_tokens,
            f"params.max_new_tokens={p.max_new_tokens} is over this service's limit "
            f"max_new_tokens={limits.max_new_tokens}")
    context = limits.context_length
    require(not context or p.max_new_tokens < context,
            f"params.max_new_tokens={p.max_new_tokens} does not fit the model's context length {context}")
    require(math.isfinite(p.temperature) and p.temperature >= 0,
            f"params.temperature must be >= 0, got {p.temperature:g}")
    top_p = p.top_p or 1.0
    require(math.isfinite(top_p) and 0 < top_p <= 1, f"params.top_p must be in (0, 1], got {p.top_p:g}")
    return SamplingParams(
        # The proto carries float32: round so 0.7 reaches the backend as 0.7, not 0.699999988.
        n=p.n, max_new_tokens=p.max_new_tokens, temperature=round(float(p.temperature), 6),
        top_p=round(float(top_p), 6), stop=tuple(s for s in p.stop if s), seed=int(p.seed),
        use_chat_template=p.use_chat_template if use_chat_template is None else use_chat_template,
    )


def check_generate(request: common_pb2.GenerateRequest,
                   limits: GenerationLimits) -> tuple[list[str], list[str], SamplingParams]:
    """A GenerateRequest's prompt ids (the index where a prompt has none), texts and params."""
    require(len(request.prompts) > 0, "prompts must not be empty")
    require(len(request.prompts) <= limits.max_batch_prompts,
            f"{len(request.prompts)} prompts is over this service's limit max_batch_prompts="
            f"{limits.max_batch_prompts}; split the batch")
    for j, prompt in enumerate(request.prompts):
        require(prompt.text != "", f"prompts[{j}].text is empty")
    require(request.HasField("params"), "params must be set")
    params = sampling_params(request.params, limits)
    ids = [p.id or str(j) for j, p in enumerate(request.prompts)]
    return ids, [p.text for p in request.prompts], params
