"""Batched generation with a local transformers model (and an optional PEFT adapter).

The teacher's ``hf`` backend and the trainer's student inference both use :class:`HFGenerator`.
It lives in the ``iterkd-torchkit`` distribution, which only torch-carrying images install; the
torch-free pieces every backend shares (seeds, stop cutting, cancellation, :class:`GenOutput`) are
in :mod:`iterkd.shared.sampling`.

How generation works: every (prompt, sample) pair is one *row*. Rows are sorted by prompt length,
cut into micro-batches of ``micro_batch_size`` and decoded with left padding in a small sampling
loop over the model's KV cache. Each row samples with its own ``torch.Generator`` seeded with the
row's seed, and its positions are computed from its own attention mask, so a row's text does not
depend on which other rows share its micro-batch (up to floating-point noise of batched matmuls,
which can only flip a token when two candidates are within rounding distance).

Seeds: sample ``i`` of prompt ``j`` uses ``derive_seed(params.seed, j, i)``; the same request
gives the same texts on the same machine, model and library versions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iterkd.shared.errors import BadRequest, GenerationCancelled
from iterkd.shared.inference import SamplingParams
from iterkd.shared.sampling import (
    Cancelled,
    GenOutput,
    cut_at_stop,
    derive_seed,
    is_cancelled,
)
from iterkd.torchkit.models import chat_prompt, is_adapter_dir, pick_device, pick_dtype

if TYPE_CHECKING:
    import torch

@dataclass(frozen=True)
class Row:
    """One sample to generate: prompt token ids plus its own sampling settings."""

    key: Any
    input_ids: tuple[int, ...]
    max_new_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int


def _context_length(model: Any, tokenizer: Any) -> int:
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10**7:
        return value
    return 2048


class HFGenerator:
    """A local causal LM that turns prompts into samples, batched, with per-sample seeds.

    Thread-safe: concurrent callers take turns per micro-batch, so a long request does not block
    a short one for its whole duration.
    """

    def __init__(self, model_dir: str | Path, adapter_dir: str | Path | None = None, device: str = "auto",
                 dtype: str = "auto", micro_batch_size: int = 8, stop_check_interval: int = 8) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a transformers model directory (no config.json)")
        dev = pick_device(device)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=pick_dtype(dtype, dev))
        model.to(dev)
        self._setup(model, tokenizer, model_id=str(path), micro_batch_size=micro_batch_size,
                    stop_check_interval=stop_check_interval)
        if adapter_dir:
            self.load_adapter(adapter_dir)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, model_id: str = "", micro_batch_size: int = 8,
                   stop_check_interval: int = 8) -> HFGenerator:
        """Wrap an already-loaded model (e.g. the student the trainer just trained)."""
        self = cls.__new__(cls)
        self._setup(model, tokenizer, model_id=model_id or getattr(model.config, "_name_or_path", "") or "model",
                    micro_batch_size=micro_batch_size, stop_check_interval=stop_check_interval)
        return self

    def _setup(self, model: Any, tokenizer: Any, model_id: str, micro_batch_size: int,
               stop_check_interval: int) -> None:
        if micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {micro_batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.micro_batch_size = micro_batch_size
        self.stop_check_interval = max(1, stop_check_interval)
        self.adapter: str | None = None
        self._lock = threading.Lock()
        self.context_length = _context_length(model, tokenizer)
        eos: set[int] = set()
        for source in (getattr(model, "generation_config", None), tokenizer):
            value = getattr(source, "eos_token_id", None)
            if isinstance(value, int):
                eos.add(value)
            elif isinstance(value, (list, tuple)):
                eos.update(int(v) for v in value)
        self.eos_ids = frozenset(eos)
        import inspect

        # transformers 5.x renamed the forward's ``past_key_values`` to ``cache``.
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (min(eos) if eos else 0))

    # -- model ------------------------------------------------------------------------------
    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def load_adapter(self, adapter_dir: str | Path) -> None:
        """Put a PEFT adapter on the base model (replacing any adapter loaded before)."""
        from peft import PeftModel

        path = Path(adapter_dir)
        if not is_adapter_dir(path):
            raise FileNotFoundError(f"{path}: not a PEFT adapter directory (no adapter_config.json)")
        with self._lock:
            self._drop_adapter()
            model = PeftModel.from_pretrained(self.model, str(path))
            self.model = model.to(self.device).eval()
            self.adapter = str(path)

    def unload_adapter(self) -> None:
        """Back to the base model's weights."""
        with self._lock:
            self._drop_adapter()

    def _drop_adapter(self) -> None:
        # PEFT injects its layers into the base model in place; unload() takes them out again.
        if self.adapter is not None and hasattr(self.model, "unload"):
            self.model = self.model.unload().eval()
        self.adapter = None

    # -- prompts ----------------------------------------------------------------------------
    def render(self, prompt: str, use_chat_template: bool) -> str:
        """The text the model sees (:func:`iterkd.torchkit.models.chat_prompt`)."""
        return chat_prompt(self.tokenizer, prompt, use_chat_template)[0]

    def encode(self, prompts: Sequence[str], use_chat_template: bool = True) -> list[list[int]]:
        if not prompts:
            return []
        rendered = [chat_prompt(self.tokenizer, p, use_chat_template) for p in prompts]
        # A chat template already carries its special tokens.
        batch = self.tokenizer([text for text, _ in rendered], add_special_tokens=rendered[0][1])
        return [list(ids) for ids in batch["input_ids"]]

    def check_lengths(self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int) -> None:
        """BadRequest naming the first prompt that does not fit the context with max_new_tokens."""
        if max_new_tokens >= self.context_length:
            raise BadRequest(f"params.max_new_tokens={max_new_tokens} must be below the context length "
                             f"{self.context_length}")
        for j, ids in enumerate(prompt_ids):
            if len(ids) + max_new_tokens > self.context_length:
                raise BadRequest(
                    f"prompts[{j}] has {len(ids)} tokens; with params.max_new_tokens={max_new_tokens} that is "
                    f"{len(ids) + max_new_tokens}, over the context length {self.context_length}")
            if not ids:
                raise BadRequest(f"prompts[{j}] is empty after tokenization")

    # -- generation -------------------------------------------------------------------------
    def rows_for(self, prompts: Sequence[str], params: SamplingParams) -> list[Row]:
        """Tokenize and validate; one row per (prompt j, sample i), keyed ``(j, i)``."""
        ids = self.encode(prompts, params.use_chat_template)
        self.check_lengths(ids, params.max_new_tokens)
        return [
            Row(key=(j, i), input_ids=tuple(p), max_new_tokens=params.max_new_tokens,
                temperature=float(params.temperature), top_p=float(params.top_p or 1.0),
                stop=tuple(params.stop), seed=derive_seed(params.seed, j, i))
            for j, p in enumerate(ids) for i in range(params.n)
        ]

    def iter_generate(self, prompts: Sequence[str], params: SamplingParams,
                      cancelled: Cancelled = None) -> Iterator[tuple[int, int, GenOutput]]:
        """Yield ``(prompt_index, sample_index, output)`` as each micro-batch finishes."""
        for key, out in self.generate_rows(self.rows_for(prompts, params), cancelled):
            j, i = key
            yield j, i, out

    def generate(self, prompts: Sequence[str], params: SamplingParams,
                 cancelled: Cancelled = None) -> list[list[GenOutput]]:
        """``params.n`` outputs per prompt, in prompt order then sample order."""
        out: list[list[GenOutput | None]] = [[None] * params.n for _ in prompts]
        for j, i, o in self.iter_generate(prompts, params, cancelled):
            out[j][i] = o
        return [[o for o in row if o is not None] for row in out]

    def generate_rows(self, rows: Sequence[Row], cancelled: Cancelled = None) -> Iterator[tuple[Any, GenOutput]]:
        """Generate arbitrary rows (each with its own settings), longest prompts first, one
        micro-batch at a time; yield ``(row.key, output)`` per row as its micro-batch ends."""
        order = sorted(range(len(rows)), key=lambda k: -len(rows[k].input_ids))
        for start in range(0, len(order), self.micro_batch_size):
            if is_cancelled(cancelled):
                raise GenerationCancelled("generation cancelled")
            batch = [rows[k] for k in order[start:start + self.micro_batch_size]]
            with self._lock:
                outs = self._generate_batch(batch, cancelled)
            yield from ((row.key, o) for row, o in zip(batch, outs))

    def _generate_batch(self, rows: Sequence[Row], cancelled: Cancelled) -> list[GenOutput]:
        import torch

        device = self.device
        b = len(rows)
        width = max(len(r.input_ids) for r in rows)
        input_ids = torch.full((b, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((b, width), dtype=torch.long)
        for k, r in enumerate(rows):
            n = len(r.input_ids)
            input_ids[k, width - n:] = torch.tensor(r.input_ids, dtype=torch.long)
            mask[k, width - n:] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)

        temps = torch.tensor([r.temperature for r in rows], dtype=torch.float32, device=device)
        top_ps = torch.tensor([r.top_p for r in rows], dtype=torch.float32, device=device)
        sampling = [r.temperature > 0 for r in rows]
        gen_device = device if device.type != "mps" else torch.device("cpu")
        generators = [torch.Generator(device=gen_device).manual_seed(r.seed) for r in rows]
        limit = max(r.max_new_tokens for r in rows)

        generated: list[list[int]] = [[] for _ in rows]
        finish: list[str | None] = [None] * b
        texts: list[str | None] = [None] * b
        checked = [0] * b
        any_stop = any(r.stop for r in rows)

        past = None
        step_ids, step_mask, step_pos = input_ids, mask, positions
        with torch.inference_mode():
            for step in range(limit):
                if is_cancelled(cancelled):
                    raise GenerationCancelled("generation cancelled")
                out = self.model(input_ids=step_ids, attention_mask=step_mask, position_ids=step_pos,
                                 **{self._cache_arg: past}, use_cache=True)
                past = out.cache if self._cache_arg == "cache" else out.past_key_values
                logits = out.logits[:, -1, :].float()
                next_tokens = self._choose(logits, temps, top_ps, sampling, generators)
                for k in range(b):
                    if finish[k] is not None:
                        next_tokens[k] = self.pad_id
                        continue
                    tok = int(next_tokens[k])
                    generated[k].append(tok)
                    if tok in self.eos_ids:
                        finish[k] = "eos"
                    elif len(generated[k]) >= rows[k].max_new_tokens:
                        finish[k] = "length"
                if any_stop and ((step + 1) % self.stop_check_interval == 0 or all(f is not None for f in finish)
                                 or step + 1 == limit):
                    self._check_stops(rows, generated, finish, texts, checked)
                if all(f is not None for f in finish):
                    break
                step_ids = next_tokens.view(b, 1).to(device)
                step_mask = torch.cat([step_mask, torch.ones((b, 1), dtype=step_mask.dtype, device=device)], dim=1)
                step_pos = step_pos[:, -1:] + 1

        outputs = []
        for k, r in enumerate(rows):
            text = texts[k]
            if text is None:
                text, hit = cut_at_stop(self._decode(generated[k]), r.stop)
                if hit:  # only reachable when the stop check never ran on the final tokens
                    finish[k] = "stop"
            outputs.append(GenOutput(text=text, finish_reason=finish[k] or "length", tokens=len(generated[k]),
                                     seed=r.seed))
        return outputs

    def _decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def _check_stops(self, rows: Sequence[Row], generated: list[list[int]], finish: list[str | None],
                     texts: list[str | None], checked: list[int]) -> None:
        """Find rows whose text now contains a stop sequence; cut them at the first token count
        whose text contains it, so the result does not depend on the check interval."""
        for k, r in enumerate(rows):
            if not r.stop or texts[k] is not None or len(generated[k]) == checked[k]:
                continue
            _, hit = cut_at_stop(self._decode(generated[k]), r.stop)
            if hit:
                for n in range(checked[k] + 1, len(generated[k]) + 1):
                    cut, found = cut_at_stop(self._decode(generated[k][:n]), r.stop)
                    if found:
                        del generated[k][n:]
                        texts[k] = cut
                        finish[k] = "stop"
                        break
            checked[k] = len(generated[k])

    @staticmethod
    def _choose(logits: torch.Tensor, temps: torch.Tensor, top_ps: torch.Tensor, sampling: list[bool],
                generators: list[torch.Generator]) -> torch.Tensor:
        import torch

        choice = logits.argmax(dim=-1)
        if not any(sampling):
            return choice.cpu()
        rows = [k for k, s in enumerate(sampling) if s]
        idx = torch.tensor(rows, device=logits.device)
        scaled = logits[idx] / temps[idx].unsqueeze(1)
        probs = torch.softmax(scaled, dim=-1)
        sorted_probs, sorted_idx = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass strictly before each token
        drop_sorted = before >= top_ps[idx].unsqueeze(1)
        drop = torch.zeros_like(drop_sorted).scatter(1, sorted_idx, drop_sorted)
        # Sample in vocabulary order, not sorted order: near-ties would otherwise let rounding
        # noise reorder the buckets and change which token a given random draw selects.
        probs = probs.masked_fill(drop, 0.0)
        for n, k in enumerate(rows):
            gen = generators[k]
            p = probs[n]
            if p.device != gen.device:
                p = p.to(gen.device)
            choice[k] = torch.multinomial(p, 1, generator=gen)[0].to(choice.device)
        return choice.cpu()
