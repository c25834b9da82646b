"""What every generation path shares, with no heavy imports: per-sample seeds, stop-sequence
cutting, one sample's output and the cancellation flag.

The local engine (:mod:`iterkd.torchkit.hf_generate`) and the remote clients
(:mod:`iterkd.shared.remote`, :mod:`iterkd.shared.tgi`) follow the same rules: sample ``i`` of
prompt ``j`` uses ``derive_seed(params.seed, j, i)``, and text is cut before the earliest stop
sequence. This module imports nothing heavy, so the light images (feedback,
questions) can use it.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from iterkd.shared.errors import GenerationCancelled  # noqa: F401 - the one class, re-exported here

SEED_BITS = 31
"""Derived seeds lie in ``[0, 2**31)``: every backend we talk to (TGI, vLLM, SGLang, OpenAI)
accepts such a seed, and torch does too."""


def derive_seed(base: int, prompt_index: int, sample_index: int) -> int:
    """The seed of sample ``sample_index`` of prompt ``prompt_index`` for a request whose base seed
    is ``base``: the first bytes of ``blake2b(f"{base}:{prompt_index}:{sample_index}")``, reduced
    to :data:`SEED_BITS` bits. Deterministic across processes and machines."""
    digest = hashlib.blake2b(f"{base}:{prompt_index}:{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << SEED_BITS) - 1)


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` cut before the earliest occurrence of any stop sequence; whether one was found."""
    cut = -1
    for stop in stops:
        if stop:
            at = text.find(stop)
            if at >= 0 and (cut < 0 or at < cut):
                cut = at
    return (text[:cut], True) if cut >= 0 else (text, False)


@dataclass(frozen=True)
class GenOutput:
    """One sample: its text (stop sequence cut), why it ended (``stop``, ``length``, ``eos``), how
    many tokens were generated (an EOS token counts) and the seed it used."""

    text: str
    finish_reason: str
    tokens: int
    seed: int


Cancelled = Callable[[], bool] | threading.Event | None


def is_cancelled(cancelled: Cancelled) -> bool:
    """Whether a cancellation flag (a callable, an Event or None) is raised."""
    if cancelled is None:
        return False
    if isinstance(cancelled, threading.Event):
        return cancelled.is_set()
    return bool(cancelled())
