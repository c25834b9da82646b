"""Training on the tiny model (CPU): losses move the right way, checkpoints load back, cycles chain."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from iterkd.shared.formats import TrainingExample
from iterkd.shared.stages import stage_prefix
from iterkd.shared.store import LocalStore
from iterkd.trainer.config import TrainerConfig
from iterkd.trainer.job import make_spec, run_training
from iterkd.trainer.trainer import StudentTrainer


def _cfg(base: dict[str, Any], **patch: Any) -> TrainerConfig:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for section, values in patch.items():
        data[section] = {**data.get(section, {}), **values}
    return TrainerConfig.model_validate(data)


def test_sft_loss_falls(fast_cfg: dict[str, Any], train_examples: list[TrainingExample]) -> None:
    cfg = _cfg(fast_cfg, loss={"lambda_": 0.0}, optim={"max_steps": 10})
    t = StudentTrainer(cfg, train_examples)
    before = t.sft_eval(train_examples)
    t.train()
    after = t.sft_eval(train_examples)
    assert after < before - 0.5, (before, after)
    assert all(r.contrastive_loss == 0 for r in t.history)
    assert t.history[-1].loss < t.history[0].loss


def other_kind(name: str) -> TrainingExample:
    """Held-out pairs of another kind than the training pairs (a list comprehension, one argument,
    another statement), sharing only the kind of fault: the wrong operator."""
    return TrainingExample(
        problem_id=name,
        prompt=f"Write a function {name}(xs) that adds 1 to every number in the list xs.",
        chosen=f"def {name}(xs):\n    return [x + 1 for x in xs]\n",
        rejected=[f"def {name}(xs):\n    return [x - 1 for x in xs]\n",
                  f"def {name}(xs):\n    return [x * 1 for x in xs]\n"],
    )


OTHER_KIND = [other_kind(n) for n in ("uniform", "victor", "whiskey", "xray")]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


_SFT_ONLY_GAIN: list[float] = []


def _sft_only_gain(fast_cfg: dict[str, Any], train_examples: list[TrainingExample]) -> float:
    """How much 12 steps of SFT alone raise the held-out margin on the other kind (once per module)."""
    if not _SFT_ONLY_GAIN:
        t = StudentTrainer(_cfg(fast_cfg, loss={"lambda_": 0.0}, optim={"max_steps": 12}), train_examples)
        before = _mean(t.pair_margins(OTHER_KIND))
        t.train()
        _SFT_ONLY_GAIN.append(_mean(t.pair_margins(OTHER_KIND)) - before)
    return _SFT_ONLY_GAIN[0]


@pytest.mark.parametrize("loss_type", ["infonce", "dpo", "margin", "unlikelihood"])
def test_contrastive_training_raises_heldout_margin(
    fast_cfg: dict[str, Any], train_examples: list[TrainingExample], heldout_examples: list[TrainingExample],
    loss_type: str,
) -> None:
    """Each loss, next to SFT, raises the held-out margin well beyond what SFT alone does, on pairs
    of another kind than it trained on. Measured here (12 steps, lambda 1, margin gain on the other
    kind): SFT alone +0.025; infonce +0.064, dpo +0.087, margin +0.080, unlikelihood +0.056
    (+0.025 before its rescaling, the same as SFT alone: its term was 2e-4)."""
    sft_gain = _sft_only_gain(fast_cfg, train_examples)
    cfg = _cfg(fast_cfg, loss={"loss_type": loss_type, "lambda_": 1.0, "fault_weight": 1.0, "beta": 0.5},
               optim={"max_steps": 12})
    t = StudentTrainer(cfg, train_examples)
    before = sum(t.pair_margins(heldout_examples)) / (2 * len(heldout_examples))
    other_before = _mean(t.pair_margins(OTHER_KIND))
    t.train()
    after = sum(t.pair_margins(heldout_examples)) / (2 * len(heldout_examples))
    gain = _mean(t.pair_margins(OTHER_KIND)) - other_before
    assert after > before + 0.02, (loss_type, before, after)
    if loss_type == "dpo":  # LoRA starts as a no-op, so policy == reference at step 1: loss = log 2
        assert t.history[0].contrastive_loss == pytest.approx(math.log(2), abs=1e-4)
    # The contrastive term is not dwarfed by SFT (the old unlikelihood term was 0.003% of it).
    assert t.history[0].contrastive_loss > 0.05 * t.history[0].sft_loss, t.history[0]
    assert 0 < sft_gain < 0.04, sft_gain
    assert gain > sft_gain + 0.02, (loss_type, gain, sft_gain)


def test_dpo_needs_lora(fast_cfg: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="dpo.*lora"):
        _cfg(fast_cfg, loss={"loss_type": "dpo"}, lora={"enabled": False})


def _put_set(store: LocalStore, key: str, examples: list[TrainingExample]) -> str:
    return store.put_jsonl(key, examples).uri


def test_checkpoint_loads_with_peft_with_same_logits_and_cycles_chain(
    fast_cfg: dict[str, Any], store: LocalStore, train_examples: list[TrainingExample],
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = _cfg(fast_cfg, optim={"max_steps": 4})
    uri = _put_set(store, "sets/train.jsonl", train_examples)
    records: list[Any] = []
    manifest = run_training(store, make_spec(store, cfg, "r1", 0, uri), records.append)
    assert [r.state for r in records][:1] == ["loading"] and records[-1].state == "done"
    assert [r.step for r in records if r.state == "training"] == [1, 2, 3, 4]
    prefix = stage_prefix("r1", 0, "train")
    keys = store.list(prefix)
    for name in ("adapter/adapter_model.safetensors", "adapter/adapter_config.json", "adapter/tokenizer.json",
                 "training_config.json", "metrics.json", "_manifest.json"):
        assert f"{prefix}/{name}" in keys
    assert not any("/_state/" in k for k in keys)
    assert manifest.metrics["steps"] == 4

    # Loads back with peft as it is, and gives the logits the trainer's model gives.
    adapter_dir = store.local_path(f"{prefix}/adapter")
    base = AutoModelForCausalLM.from_pretrained(fast_cfg["base_model"])
    loaded = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(adapter_dir))
    ids = tok("def alpha(a, b):\n    return a + b\n", return_tensors="pt")["input_ids"]
    cont = StudentTrainer(cfg, train_examples, init_dir=adapter_dir)  # what cycle 1 starts from
    cont.model.eval()
    with torch.no_grad():
        expected = cont.model(input_ids=ids).logits
        got = loaded(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad(), loaded.disable_adapter():
        assert not torch.allclose(loaded(input_ids=ids).logits, got, atol=1e-4)  # the adapter does something

    # Cycle 1 finds cycle 0's adapter through the layout and starts from it.
    spec1 = make_spec(store, cfg, "r1", 1, uri)
    assert spec1.init_key == f"{prefix}/adapter"
    m1 = run_training(store, spec1, lambda r: None)
    assert m1.extra["init_checkpoint"] == f"{prefix}/adapter"

    # Asking again for a finished (run, cycle) returns the stored result without training.
    again: list[Any] = []
    m_again = run_training(store, make_spec(store, cfg, "r1", 0, uri), again.append)
    assert len(again) == 1 and again[0].cached and again[0].state == "done"
    assert again[0].checkpoint.uri == manifest.outputs["adapter"].uri
    assert m_again.finished_at == manifest.finished_at


def test_full_fine_tuning_saves_a_model(
    fast_cfg: dict[str, Any], store: LocalStore, train_examples: list[TrainingExample]) -> None:
    from transformers import AutoModelForCausalLM

    cfg = _cfg(fast_cfg, lora={"enabled": False}, optim={"max_steps": 2, "lr": 1e-3, "grad_accum": 2})
    uri = _put_set(store, "sets/train.jsonl", train_examples)
    manifest = run_training(store, make_spec(store, cfg, "full", 0, uri), lambda r: None)
    assert "model" in manifest.outputs
    model_dir = store.local_path(manifest.outputs["model"].key)
    assert (Path(model_dir) / "model.safetensors").is_file()
    AutoModelForCausalLM.from_pretrained(str(model_dir))
    assert manifest.metrics["trainable_params"] > 500_000  # every weight, not an adapter
