"""Training data: examples from teacher samples and verdicts, tokenisation and batching.

Where prompts are rendered: :func:`build_examples` renders each problem once with the solve
template (:func:`iterkd.shared.prompts.render_solve_prompt`, the prompt the teacher answered), so a
:class:`TrainingExample`'s ``prompt`` is final text and the trainer never re-renders it (pairwise
data from elsewhere is used with its instruction as it is). The only transformation at training
time is the chat wrapping (:func:`iterkd.torchkit.models.chat_prompt`), applied exactly as the student's Generate
applies it, so training and serving see the same token sequence.

Truncation policy: an example whose prompt alone leaves no room for one completion token within
``max_length`` is an error naming its problem (:class:`DataError`); a completion that does not fit
is cut on the right and counted (``truncated``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from iterkd.shared.formats import DataError, Problem, Sample, TrainingExample, Verdict, read_pairs
from iterkd.shared.prompts import DEFAULT_SOLVE_TEMPLATE, render_solve_prompt
from iterkd.shared.store import ArtifactStore
from iterkd.torchkit.models import chat_prompt
from iterkd.trainer.losses import IGNORE_INDEX, fault_token_weights


def build_examples(
    problems: Iterable[Problem],
    samples: Iterable[Sample],
    verdicts: Iterable[Verdict],
    template: str = DEFAULT_SOLVE_TEMPLATE,
    max_chosen: int | None = None,
) -> tuple[list[TrainingExample], dict[str, int]]:
    """One example per distinct passing answer of a problem (at most ``max_chosen``), each with
    every distinct failing answer of that problem as its rejected set.

    A problem with no passing answer gives no example (``no_pass``); one with no failing answer
    gives SFT-only examples (``no_fail``). Samples without a verdict, or for a problem not in
    ``problems``, are left out and counted. Counts: problems, with_pass, sft_examples,
    contrastive_pairs (chosen x rejected), no_pass, no_fail, unverified, unknown_problem.
    """
    plist = list(problems)
    by_id = {p.id: p for p in plist}
    verdict_of = {(v.problem_id, v.sample_id): v.passed for v in verdicts}
    passing: dict[str, list[str]] = {p.id: [] for p in plist}
    failing: dict[str, list[str]] = {p.id: [] for p in plist}
    counts = dict.fromkeys(
        ("problems", "with_pass", "sft_examples", "contrastive_pairs", "no_pass", "no_fail", "unverified",
         "unknown_problem"), 0)
    counts["problems"] = len(plist)
    for s in samples:
        if s.problem_id not in by_id:
            counts["unknown_problem"] += 1
            continue
        passed = verdict_of.get((s.problem_id, s.sample_id))
        if passed is None:
            counts["unverified"] += 1
            continue
        bucket = passing if passed else failing
        if s.completion not in bucket[s.problem_id]:
            bucket[s.problem_id].append(s.completion)
    examples: list[TrainingExample] = []
    for p in plist:
        good, bad = passing[p.id], failing[p.id]
        if not good:
            counts["no_pass"] += 1
            continue
        counts["with_pass"] += 1
        if not bad:
            counts["no_fail"] += 1
        prompt = render_solve_prompt(p, template)
        for chosen in good[:max_chosen] if max_chosen else good:
            examples.append(TrainingExample(problem_id=p.id, prompt=prompt, chosen=chosen, rejected=list(bad)))
            counts["sft_examples"] += 1
            counts["contrastive_pairs"] += len(bad)
    return examples, counts


def load_train_set(store: ArtifactStore, key: str) -> list[TrainingExample]:
    """Read a training set (our examples, or [correct, faulty] pairs) from the store and check it:
    empty sets and examples without a chosen answer are :class:`DataError`."""
    uri = store.uri(key)
    data = store.get_bytes(key)
    with tempfile.TemporaryDirectory(prefix="iterkd-trainset-") as tmp:
        path = Path(tmp) / Path(key).name
        path.write_bytes(data)
        try:
            examples = read_pairs(path)
        except DataError as exc:  # name the store URI, not the temporary file
            raise DataError(uri, exc.line, exc.message, exc.record) from None
    return check_examples(examples, uri)


def check_examples(examples: Sequence[TrainingExample], source: str) -> list[TrainingExample]:
    if not examples:
        raise DataError(source, None, "training set is empty: no examples to train on")
    for i, ex in enumerate(examples):
        if not ex.prompt.strip():
            raise DataError(source, None, f"example {i} (problem {ex.problem_id!r}): empty prompt")
        if ex.chosen is None or not ex.chosen.strip():
            raise DataError(source, None, f"example {i} (problem {ex.problem_id!r}): no chosen (passing) answer")
        if ex.weight < 0:
            raise DataError(source, None, f"example {i} (problem {ex.problem_id!r}): negative weight {ex.weight}")
    return list(examples)


# ---------------------------------------------------------------------------------------------
# Tokenisation


@dataclass
class Encoded:
    problem_id: str
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[list[int]]
    weight: float
    truncated: int = 0

    @property
    def tokens(self) -> int:
        n = len(self.prompt_ids)
        return n + len(self.chosen_ids) + sum(n + len(r) for r in self.rejected_ids)


@dataclass
class EncodeStats:
    examples: int = 0
    truncated: int = 0
    with_rejected: int = 0
    rejected_used: int = 0
    rejected_dropped: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def encode_examples(
    tokenizer: Any,
    examples: Sequence[TrainingExample],
    max_length: int,
    use_chat_template: bool,
    max_rejected: int,
    source: str = "training set",
) -> tuple[list[Encoded], EncodeStats]:
    """Tokenise prompt and completions separately (so the prompt mask is exact), append EOS to
    every completion, apply the truncation policy (see the module docstring)."""
    eos = tokenizer.eos_token_id
    stats = EncodeStats()
    out: list[Encoded] = []
    for i, ex in enumerate(examples):
        text, special = chat_prompt(tokenizer, ex.prompt, use_chat_template)
        prompt_ids = list(tokenizer(text, add_special_tokens=special)["input_ids"])
        room = max_length - len(prompt_ids)
        if room < 1:
            raise DataError(
                source, None,
                f"example {i} (problem {ex.problem_id!r}): the prompt is {len(prompt_ids)} tokens, longer than "
                f"the context allows (max_length {max_length}, with room for at least one answer token)",
            )
        truncated = 0

        def completion(t: str, room: int = room) -> list[int]:
            nonlocal truncated
            ids = list(tokenizer(t, add_special_tokens=False)["input_ids"])
            if eos is not None:
                ids.append(eos)
            if len(ids) > room:
                truncated += 1
                ids = ids[:room]
            return ids

        chosen = completion(ex.chosen or "")
        rejected_texts = ex.rejected[:max_rejected]
        stats.rejected_dropped += len(ex.rejected) - len(rejected_texts)
        rejected = [completion(r) for r in rejected_texts]
        stats.examples += 1
        stats.truncated += truncated
        stats.with_rejected += bool(rejected)
        stats.rejected_used += len(rejected)
        out.append(Encoded(ex.problem_id, prompt_ids, chosen, rejected, float(ex.weight), truncated))
    return out, stats


@dataclass
class Batch:
    """One micro-batch: the chosen sequences (rows ``0..B-1``) then every rejected sequence, in one
    right-padded tensor so a single forward pass scores them all."""

    input_ids: torch.Tensor          # [N, T]
    attention_mask: torch.Tensor     # [N, T]
    labels: torch.Tensor             # [N, T], -100 on prompt and padding
    weights: torch.Tensor            # [B] per-example SFT weight
    n_chosen: int
    rej_rows: torch.Tensor           # [B, R] row of each rejected answer in the batch (0 where absent)
    rej_mask: torch.Tensor           # [B, R]
    token_weights: torch.Tensor | None       # [N, T] fault weights of the rejected rows (1 elsewhere)
    chosen_pair_weights: torch.Tensor | None  # [B, R, T] fault weights of each chosen row per pair
    tokens: int                      # real (non-pad) tokens

    @property
    def has_pairs(self) -> bool:
        return bool(self.rej_mask.any())

    def to(self, device: torch.device | str) -> Batch:
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(mv(self.input_ids), mv(self.attention_mask), mv(self.labels), mv(self.weights),  # type: ignore[arg-type]
                     self.n_chosen, mv(self.rej_rows), mv(self.rej_mask), mv(self.token_weights),  # type: ignore[arg-type]
                     mv(self.chosen_pair_weights), self.tokens)


def collate(items: Sequence[Encoded], pad_id: int, fault_weight: float = 0.0, with_rejected: bool = True) -> Batch:
    """Right-padded batch of chosen + rejected sequences (see :class:`Batch`)."""
    seqs: list[tuple[list[int], int]] = [(e.prompt_ids + e.chosen_ids, len(e.prompt_ids)) for e in items]
    b = len(items)
    r_max = max((len(e.rejected_ids) for e in items), default=0) if with_rejected else 0
    rej_rows = torch.zeros((b, r_max), dtype=torch.long)
    rej_mask = torch.zeros((b, r_max), dtype=torch.bool)
    if with_rejected:
        for i, e in enumerate(items):
            for j, r in enumerate(e.rejected_ids):
                rej_rows[i, j] = len(seqs)
                rej_mask[i, j] = True
                seqs.append((e.prompt_ids + r, len(e.prompt_ids)))
    n, t = len(seqs), max(len(s) for s, _ in seqs)
    input_ids = torch.full((n, t), pad_id, dtype=torch.long)
    attention = torch.zeros((n, t), dtype=torch.long)
    labels = torch.full((n, t), IGNORE_INDEX, dtype=torch.long)
    for row, (ids, plen) in enumerate(seqs):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        labels[row, plen: len(ids)] = torch.tensor(ids[plen:])
    token_weights = chosen_pair_weights = None
    if fault_weight > 0 and r_max > 0:
        token_weights = torch.ones((n, t))
        chosen_pair_weights = torch.ones((b, r_max, t))
        for i, e in enumerate(items):
            plen = len(e.prompt_ids)
            for j, r in enumerate(e.rejected_ids):
                cw, rw = fault_token_weights(e.chosen_ids, r, fault_weight)
                chosen_pair_weights[i, j, plen: plen + len(cw)] = torch.tensor(cw)
                token_weights[int(rej_rows[i, j]), plen: plen + len(rw)] = torch.tensor(rw)
    weights = torch.tensor([e.weight for e in items], dtype=torch.float32)
    return Batch(input_ids, attention, labels, weights, b, rej_rows, rej_mask, token_weights, chosen_pair_weights,
                 int(attention.sum()))
