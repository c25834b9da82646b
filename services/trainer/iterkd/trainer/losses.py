"""The trainer's losses, as pure functions on tensors.

Conventions: ``logits`` are ``[B, T, V]`` for inputs ``[B, T]``; ``labels`` are the input ids with
every position that is not a completion token (prompt, padding) set to ``-100``. Position ``t``'s
logits predict token ``t + 1`` (the causal-LM shift is done here, not by the caller).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
LossType = Literal["infonce", "dpo", "margin", "unlikelihood"]


def _shift(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return logits[:, :-1, :], labels[:, 1:]


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log p(label) ``[B, T-1]`` (0 where masked) and the mask of scored tokens."""
    lg, lb = _shift(logits, labels)
    mask = lb != IGNORE_INDEX
    safe = lb.masked_fill(~mask, 0)
    # log_softmax gathered = -cross_entropy; cross_entropy avoids materialising [B, T, V] log-probs twice.
    logp = -F.cross_entropy(lg.float().reshape(-1, lg.size(-1)), safe.reshape(-1), reduction="none")
    logp = logp.view_as(safe) * mask
    return logp, mask


def sft_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over the completion tokens only.

    Without ``weights`` this is the mean over every scored token of the batch (what
    ``LlamaForCausalLM(labels=...)`` computes). With per-example ``weights`` ``[B]``, each token
    counts with its example's weight: ``sum_i w_i sum_t ce_it / sum_i w_i n_i``.
    """
    lg, lb = _shift(logits, labels)
    if weights is None:
        return F.cross_entropy(lg.float().reshape(-1, lg.size(-1)), lb.reshape(-1), ignore_index=IGNORE_INDEX)
    logp, mask = token_logprobs(logits, labels)
    return sft_from_token_logprobs(logp, mask, weights)


def sft_from_token_logprobs(
    logp: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """:func:`sft_loss` from already computed :func:`token_logprobs` (saves a second pass)."""
    w = mask.to(logp.dtype)
    if weights is not None:
        w = w * weights.to(logp.dtype).unsqueeze(1)
    denom = w.sum()
    if denom <= 0:
        return logp.sum() * 0.0
    return -(logp * w).sum() / denom


def sequence_logprobs(
    logits: torch.Tensor, labels: torch.Tensor, token_weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum_t w_t log p_t, sum_t w_t)`` per sequence, over completion tokens.

    ``token_weights`` ``[B, T]`` is aligned with ``labels`` (weight of label position t); without
    it every weight is 1, so the second value is the number of completion tokens.
    """
    logp, mask = token_logprobs(logits, labels)
    w = mask.to(logp.dtype)
    if token_weights is not None:
        w = w * token_weights[:, 1:].to(logp.dtype)
    return (logp * w).sum(-1), w.sum(-1)


def fault_token_weights(
    chosen_ids: Sequence[int], rejected_ids: Sequence[int], upweight: float
) -> tuple[list[float], list[float]]:
    """Weights for the tokens of a chosen and a rejected completion: ``1 + upweight`` where the two
    differ (tokens outside the matching blocks of :class:`difflib.SequenceMatcher`), 1 elsewhere."""
    cw = [1.0] * len(chosen_ids)
    rw = [1.0] * len(rejected_ids)
    if upweight == 0:
        return cw, rw
    matcher = difflib.SequenceMatcher(a=list(chosen_ids), b=list(rejected_ids), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        for i in range(i1, i2):
            cw[i] = 1.0 + upweight
        for j in range(j1, j2):
            rw[j] = 1.0 + upweight
    return cw, rw


def contrastive_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    mask: torch.Tensor,
    loss_type: LossType = "infonce",
    *,
    temperature: float = 1.0,
    beta: float = 0.1,
    margin: float = 1.0,
    ref_chosen: torch.Tensor | None = None,
    ref_rejected: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fault-aware contrastive loss from sequence scores.

    ``chosen`` is ``[B]`` (or ``[B, R]`` when each pair scores the chosen answer differently, as
    fault weighting does); ``rejected`` and ``mask`` are ``[B, R]`` (mask: which rejected slots are
    real). Rows without any rejected answer are left out; the loss is the mean over the rows that
    have one (0 when none has). ``dpo`` needs ``ref_chosen`` / ``ref_rejected`` of the same shapes.
    """
    mask = mask.bool()
    if chosen.dim() == 1:
        chosen = chosen.unsqueeze(1).expand_as(rejected)
    rows = mask.any(dim=1)
    if not bool(rows.any()):
        return (chosen.sum() + rejected.sum()) * 0.0
    m = mask.to(rejected.dtype)
    npairs = m.sum(dim=1).clamp(min=1)

    if loss_type == "infonce":
        # One positive against the rejected set: -log exp(c/T) / (exp(c/T) + sum_j exp(r_j/T)).
        # With a per-pair chosen score, the positive is the mean of the chosen scores.
        pos = (chosen * m).sum(1) / npairs / temperature
        neg = (rejected / temperature).masked_fill(~mask, float("-inf"))
        all_scores = torch.cat([pos.unsqueeze(1), neg], dim=1)
        per_row = torch.logsumexp(all_scores, dim=1) - pos
    elif loss_type == "dpo":
        if ref_chosen is None or ref_rejected is None:
            raise ValueError("dpo needs the reference log-likelihoods (ref_chosen, ref_rejected)")
        if ref_chosen.dim() == 1:
            ref_chosen = ref_chosen.unsqueeze(1).expand_as(rejected)
        logits = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
        per_row = (-F.logsigmoid(logits) * m).sum(1) / npairs
    elif loss_type == "margin":
        per_row = (F.relu(margin - (chosen - rejected)) * m).sum(1) / npairs
    elif loss_type == "unlikelihood":
        # -log(1 - q) with q = p_r / (p_c + p_r), the rejected answer's share of the pair's
        # likelihood (per-token geometric means): q = sigmoid(r - c), so -log(1 - q) = softplus(r - c).
        # The absolute form -log(1 - p_r) has gradient p_r / (1 - p_r): about 1/vocab for an answer
        # the student finds unlikely anyway (2e-4 beside an SFT loss of 8), so it taught nothing.
        per_row = (F.softplus(rejected - chosen) * m).sum(1) / npairs
    else:
        raise ValueError(f"unknown loss_type {loss_type!r}; use infonce, dpo, margin or unlikelihood")
    return per_row[rows].mean()


def pair_margin(chosen: torch.Tensor, rejected: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean chosen-minus-rejected score over the real pairs (nan when there is none)."""
    mask = mask.bool()
    if chosen.dim() == 1:
        chosen = chosen.unsqueeze(1).expand_as(rejected)
    if not bool(mask.any()):
        return torch.tensor(float("nan"))
    return (chosen - rejected)[mask].mean()
