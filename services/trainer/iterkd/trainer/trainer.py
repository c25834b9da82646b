"""The training loop: correctness-aware SFT + fault-aware contrastive learning on one student.

Our own loop (no ``transformers.Trainer``): LoRA through peft (or full fine-tuning), AdamW, cosine
schedule with warm-up, gradient accumulation and clipping, bf16 autocast where the device supports
it, optional gradient checkpointing, seeds. One optimizer *step* consumes ``grad_accum``
micro-batches of ``batch_size`` examples; each micro-batch puts the chosen and the rejected answers
in one tensor, so one forward pass scores them all (plus one no-grad pass with the adapter
disabled for the DPO reference).

The data order is a function of (seed, epoch) only, so a resumed run sees the same batches as an
uninterrupted one; :meth:`StudentTrainer.save_state` / :meth:`load_state` carry the trainable
weights, optimizer, scheduler, RNG and step.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from iterkd.shared.config import ConfigError
from iterkd.shared.formats import TrainingExample
from iterkd.torchkit.models import is_adapter_dir, pick_device
from iterkd.trainer.config import TrainerConfig
from iterkd.trainer.data import Batch, Encoded, EncodeStats, collate, encode_examples
from iterkd.trainer.losses import (
    contrastive_loss,
    sft_from_token_logprobs,
    sft_loss,
    token_logprobs,
)


@dataclass
class StepRecord:
    """What one optimizer step reports (the fields of TrainProgress)."""

    step: int
    total_steps: int
    sft_loss: float
    contrastive_loss: float
    loss: float
    margin: float
    tokens_per_second: float
    eta_s: float
    learning_rate: float
    tokens: int
    grad_norm: float
    step_time_s: float


def use_bf16(setting: str | bool, device: torch.device) -> bool:
    """``auto``: bf16 autocast on CUDA devices that support bf16, off on CPU."""
    if setting == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    if setting and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("trainer.optim.bf16: this CUDA device does not support bf16")
    return bool(setting)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def load_student(base_model: str, adapter: str | Path | None, device: torch.device, dtype: torch.dtype | None = None,
                 trainable: bool = False) -> tuple[Any, Any]:
    """The tokenizer and model for ``base_model`` with ``adapter`` applied (a peft adapter folder,
    or a full model folder that replaces the base). Raises ConfigError when nothing loads."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(adapter) if adapter is not None and not is_adapter_dir(adapter) else base_model
    tok_source = str(adapter) if adapter is not None and (Path(adapter) / "tokenizer_config.json").is_file() \
        else source
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the student model from {source!r}: {exc}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if adapter is not None and is_adapter_dir(adapter):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    model.to(device)
    return tokenizer, model


class StudentTrainer:
    """Trains one student on a list of examples; see the module docstring."""

    def __init__(self, cfg: TrainerConfig, examples: Sequence[TrainingExample], base_model: str | None = None,
                 init_dir: str | Path | None = None, source: str = "training set") -> None:
        self.cfg = cfg
        self.device = pick_device(cfg.device, "trainer.device")
        self.bf16 = use_bf16(cfg.optim.bf16, self.device)
        self.base_model = base_model or cfg.base_model
        self.init_dir = str(init_dir) if init_dir is not None else None
        seed_everything(cfg.optim.seed)

        # Base weights in bf16 under LoRA on a bf16 device (the adapter stays fp32); fp32 otherwise.
        dtype = torch.bfloat16 if (self.bf16 and cfg.lora.enabled and self.device.type == "cuda") else torch.float32
        continue_adapter = self.init_dir is not None and is_adapter_dir(self.init_dir)
        if continue_adapter and not cfg.lora.enabled:
            raise ConfigError("trainer.lora.enabled is false but the starting checkpoint is a LoRA adapter; "
                              "full fine-tuning continues from a full model")
        self.tokenizer, model = load_student(self.base_model, self.init_dir, self.device, dtype,
                                             trainable=continue_adapter)
        model.config.use_cache = False
        if cfg.lora.enabled and not continue_adapter:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(
                r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM",
            ))
        if cfg.optim.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model = model
        self.model.train()

        n_ctx = getattr(self.model.config, "max_position_embeddings", None) or cfg.optim.max_length
        self.max_length = min(cfg.optim.max_length, int(n_ctx))
        use_rejected = cfg.loss.lambda_ > 0 and cfg.loss.max_rejected > 0
        self.encoded: list[Encoded]
        self.stats: EncodeStats
        self.encoded, self.stats = encode_examples(
            self.tokenizer, examples, self.max_length, cfg.prompts.use_chat_template,
            cfg.loss.max_rejected if use_rejected else 0, source,
        )
        self.pad_id = int(self.tokenizer.pad_token_id)
        o = cfg.optim
        self.batches_per_epoch = math.ceil(len(self.encoded) / o.batch_size)
        self.total_steps = o.max_steps or max(1, math.ceil(o.epochs * self.batches_per_epoch / o.grad_accum))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise ConfigError("the student has no trainable parameters (check trainer.lora.target_modules)")
        self.optimizer = torch.optim.AdamW(self.params, lr=o.lr, weight_decay=o.weight_decay)
        from transformers import get_cosine_schedule_with_warmup

        self.warmup_steps = math.ceil(o.warmup_ratio * self.total_steps)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, self.warmup_steps, self.total_steps)
        self.step = 0
        self.history: list[StepRecord] = []
        self._perms: dict[int, list[int]] = {}
        self._time_spent = 0.0

    # -- data order -----------------------------------------------------------------------------
    def epoch_order(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.cfg.optim.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(len(self.encoded), generator=g).tolist()}
        return self._perms[epoch]

    def micro_batch(self, index: int) -> list[int]:
        """Example indices of global micro-batch ``index`` (epochs repeat with a fresh order)."""
        epoch, pos = divmod(index, self.batches_per_epoch)
        bs = self.cfg.optim.batch_size
        return self.epoch_order(epoch)[pos * bs: (pos + 1) * bs]

    # -- one step -------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _scores(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """Token log-probs of every row, the SFT loss of the chosen rows, and the chosen/rejected
        scores of each pair ([B, R]) as the loss type wants them."""
        logp, mask = token_logprobs(logits, batch.labels)
        nb = batch.n_chosen
        w = mask.to(logp.dtype)
        plain_sum, plain_n = (logp * w).sum(-1), w.sum(-1).clamp(min=1)
        plain_mean = plain_sum / plain_n
        out = {
            "logp": logp, "mask": mask,
            "margin_c": plain_mean[:nb], "margin_r": plain_mean[batch.rej_rows],
        }
        if batch.token_weights is not None and batch.chosen_pair_weights is not None:
            rw = w * batch.token_weights[:, 1:]
            r_sum, r_n = (logp * rw).sum(-1)[batch.rej_rows], rw.sum(-1)[batch.rej_rows]
            cw = batch.chosen_pair_weights[:, :, 1:] * w[:nb].unsqueeze(1)
            c_sum, c_n = (logp[:nb].unsqueeze(1) * cw).sum(-1), cw.sum(-1)
        else:
            r_sum, r_n = plain_sum[batch.rej_rows], plain_n[batch.rej_rows]
            c_sum, c_n = plain_sum[:nb], plain_n[:nb]
        if self.cfg.loss.loss_type == "dpo":
            out["chosen"], out["rejected"] = c_sum, r_sum
        else:
            out["chosen"], out["rejected"] = c_sum / c_n.clamp(min=1e-6), r_sum / r_n.clamp(min=1e-6)
        return out

    def _micro_losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(sft, contrastive, margin) of one micro-batch."""
        lc = self.cfg.loss
        nb = batch.n_chosen
        weights = None if bool((batch.weights == 1).all()) else batch.weights
        contrast = lc.lambda_ > 0 and batch.has_pairs
        if not contrast:
            with self._autocast():
                logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            sft = sft_loss(logits, batch.labels, weights)
            return sft, sft.new_zeros(()), float("nan")
        with self._autocast():
            logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        s = self._scores(logits, batch)
        sft = sft_from_token_logprobs(s["logp"][:nb], s["mask"][:nb], weights)
        ref_c = ref_r = None
        if lc.loss_type == "dpo":
            with torch.no_grad(), self.model.disable_adapter(), self._autocast():
                ref_logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            ref = self._scores(ref_logits, batch)
            ref_c, ref_r = ref["chosen"], ref["rejected"]
        con = contrastive_loss(s["chosen"], s["rejected"], batch.rej_mask, lc.loss_type,
                               temperature=lc.temperature, beta=lc.beta, margin=lc.margin,
                               ref_chosen=ref_c, ref_rejected=ref_r)
        with torch.no_grad():
            diff = (s["margin_c"].unsqueeze(1) - s["margin_r"])[batch.rej_mask.bool()]
            margin = float(diff.mean())
        return sft, con, margin

    def train_step(self) -> StepRecord:
        """One optimizer step (``grad_accum`` micro-batches); returns its record."""
        o = self.cfg.optim
        t0 = time.perf_counter()
        self.model.train()
        sfts, cons, margins, tokens = [], [], [], 0
        for k in range(o.grad_accum):
            idx = self.micro_batch(self.step * o.grad_accum + k)
            batch = collate([self.encoded[i] for i in idx], self.pad_id, self.cfg.loss.fault_weight,
                            with_rejected=self.cfg.loss.lambda_ > 0).to(self.device)
            sft, con, margin = self._micro_losses(batch)
            loss = sft + self.cfg.loss.lambda_ * con
            (loss / o.grad_accum).backward()
            sfts.append(float(sft.detach()))
            cons.append(float(con.detach()))
            if not math.isnan(margin):
                margins.append(margin)
            tokens += batch.tokens
        if o.max_grad_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, o.max_grad_norm))
        else:
            grad_norm = float("nan")
        lr = float(self.scheduler.get_last_lr()[0])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        self._time_spent += dt
        self.step += 1
        done_here = len(self.history) + 1
        eta = (self._time_spent / done_here) * (self.total_steps - self.step)
        sft_m, con_m = sum(sfts) / len(sfts), sum(cons) / len(cons)
        rec = StepRecord(
            step=self.step, total_steps=self.total_steps, sft_loss=sft_m, contrastive_loss=con_m,
            loss=sft_m + self.cfg.loss.lambda_ * con_m,
            margin=sum(margins) / len(margins) if margins else float("nan"),
            tokens_per_second=tokens / dt if dt > 0 else 0.0, eta_s=eta, learning_rate=lr, tokens=tokens,
            grad_norm=grad_norm, step_time_s=dt,
        )
        self.history.append(rec)
        return rec

    def train(self, on_step: Callable[[StepRecord], None] | None = None,
              on_checkpoint: Callable[[int], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> list[StepRecord]:
        """Run from the current step to the end; ``on_checkpoint(step)`` every ``save_every_steps``."""
        while self.step < self.total_steps:
            if should_stop is not None and should_stop():
                raise InterruptedError("training cancelled")
            rec = self.train_step()
            if on_step is not None:
                on_step(rec)
            if (on_checkpoint is not None and self.step % self.cfg.optim.save_every_steps == 0
                    and self.step < self.total_steps):
                on_checkpoint(self.step)
        return self.history

    # -- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def pair_margins(self, examples: Sequence[TrainingExample], batch_size: int = 8) -> list[float]:
        """Per-token mean log-likelihood of the chosen minus each rejected answer, for every pair of
        ``examples`` (held-out data: tokenised here with the same policy)."""
        self.model.eval()
        enc, _ = encode_examples(self.tokenizer, examples, self.max_length, self.cfg.prompts.use_chat_template,
                                 max(len(e.rejected) for e in examples), "held-out set")
        out: list[float] = []
        for i in range(0, len(enc), batch_size):
            batch = collate(enc[i: i + batch_size], self.pad_id).to(self.device)
            if not batch.has_pairs:
                continue
            with self._autocast():
                logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            s = self._scores(logits, batch)
            out.extend((s["margin_c"].unsqueeze(1) - s["margin_r"])[batch.rej_mask].tolist())
        self.model.train()
        return out

    @torch.no_grad()
    def sft_eval(self, examples: Sequence[TrainingExample], batch_size: int = 8) -> float:
        """Mean completion-token cross-entropy of the chosen answers of ``examples``."""
        self.model.eval()
        enc, _ = encode_examples(self.tokenizer, examples, self.max_length, self.cfg.prompts.use_chat_template,
                                 0, "eval set")
        total, count = 0.0, 0
        for i in range(0, len(enc), batch_size):
            batch = collate(enc[i: i + batch_size], self.pad_id, with_rejected=False).to(self.device)
            with self._autocast():
                logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            logp, mask = token_logprobs(logits, batch.labels)
            total += float(-logp.sum())
            count += int(mask.sum())
        self.model.train()
        return total / max(count, 1)

    # -- state ----------------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().to("cpu").contiguous().clone() for n, p in self.model.named_parameters()
                if p.requires_grad}

    def save_state(self, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Everything needed to continue after a crash, as files in ``folder``."""
        from safetensors.torch import save_file

        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        save_file(self.trainable_state(), str(d / "trainable.safetensors"))
        torch.save(self.optimizer.state_dict(), d / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), d / "scheduler.pt")
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, d / "rng.pt")
        state = {"step": self.step, "total_steps": self.total_steps, "seed": self.cfg.optim.seed,
                 "time_spent_s": self._time_spent, "history": [asdict(r) for r in self.history],
                 "order": {str(e): self.epoch_order(e) for e in self._perms}, **(extra or {})}
        (d / "state.json").write_text(json.dumps(state))
        return d

    def load_state(self, folder: str | Path) -> dict[str, Any]:
        from safetensors.torch import load_file

        d = Path(folder)
        state = json.loads((d / "state.json").read_text())
        if state["total_steps"] != self.total_steps:
            raise ValueError(f"saved state has {state['total_steps']} total steps, this training {self.total_steps}")
        tensors = load_file(str(d / "trainable.safetensors"))
        named = dict(self.model.named_parameters())
        missing = [n for n, p in named.items() if p.requires_grad and n not in tensors]
        if missing:
            raise ValueError(f"saved state lacks {len(missing)} trainable tensors (e.g. {missing[0]})")
        with torch.no_grad():
            for name, value in tensors.items():
                named[name].copy_(value.to(named[name].device, named[name].dtype))
        self.optimizer.load_state_dict(torch.load(d / "optimizer.pt", map_location=self.device, weights_only=True))
        self.scheduler.load_state_dict(torch.load(d / "scheduler.pt", weights_only=True))
        rng = torch.load(d / "rng.pt", weights_only=True)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.step = int(state["step"])
        self._time_spent = float(state.get("time_spent_s", 0.0))
        self.history = [StepRecord(**r) for r in state.get("history", [])]
        return state

    def save_pretrained(self, folder: str | Path) -> Path:
        """The checkpoint as transformers/peft load it: the adapter (or the full model) + tokenizer."""
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        model = self.model
        if self.cfg.optim.gradient_checkpointing:
            model.gradient_checkpointing_disable()
        model.config.use_cache = True
        model.save_pretrained(str(d), safe_serialization=True)
        self.tokenizer.save_pretrained(str(d))
        model.config.use_cache = False
        _sort_adapter_config(d / "adapter_config.json")
        return d

    def summary(self) -> dict[str, float]:
        """Metrics of the whole training (means over the last quarter of the steps for losses)."""
        h = self.history
        tail = h[-max(1, len(h) // 4):] if h else []
        margins = [r.margin for r in tail if not math.isnan(r.margin)]
        tokens = sum(r.tokens for r in h)
        time_s = sum(r.step_time_s for r in h)
        return {
            "steps": float(self.step), "total_steps": float(self.total_steps),
            "examples": float(self.stats.examples), "pairs": float(self.stats.rejected_used),
            "truncated": float(self.stats.truncated), "rejected_dropped": float(self.stats.rejected_dropped),
            "first_loss": h[0].loss if h else float("nan"),
            "sft_loss": sum(r.sft_loss for r in tail) / len(tail) if tail else float("nan"),
            "contrastive_loss": sum(r.contrastive_loss for r in tail) / len(tail) if tail else float("nan"),
            "loss": sum(r.loss for r in tail) / len(tail) if tail else float("nan"),
            "margin": sum(margins) / len(margins) if margins else float("nan"),
            "tokens": float(tokens), "train_time_s": time_s,
            "tokens_per_second": tokens / time_s if time_s > 0 else 0.0,
            "trainable_params": float(sum(p.numel() for p in self.params)),
        }


def _sort_adapter_config(path: Path) -> None:
    """peft writes ``target_modules`` from a set, so its order follows the process's hash seed; sort
    it so the same training writes the same bytes (a checkpoint's sha256 then means its content)."""
    if not path.is_file():
        return
    import json

    data = json.loads(path.read_text())
    if isinstance(data.get("target_modules"), list):
        data["target_modules"] = sorted(data["target_modules"])
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
