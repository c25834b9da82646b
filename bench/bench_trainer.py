"""Trainer throughput: our training step against a minimal hand-written torch loop.

Same model, same batches (built by our collate), same optimizer (AdamW). Cases:

* ``hand-full``  plain forward with ``labels=``, backward, AdamW step (full fine-tuning);
* ``ours-full``  our step, SFT only, full fine-tuning (the like-for-like comparison; target >= 0.9x);
* ``hand-lora`` / ``ours-lora``  the same with a peft LoRA adapter;
* ``ours-lora+con``  SFT + InfoNCE contrastive with 2 rejected answers per example (3x the sequences
  per batch): its cost is reported separately, per token processed.

Each case runs in a fresh process (peak RSS is per process; ``torch.cuda.max_memory_allocated`` on
GPU). Tokens/s counts real (non-pad) tokens through the training forward pass; the best of
``--rounds`` interleaved rounds is kept, which damps noise from other load on the machine.

``--device cuda --preset 1b`` builds a randomly initialised ~1.1B-parameter Llama and adds model
FLOPs utilisation: 6 x N x tokens/s / peak FLOP/s (``--peak-tflops``, default 989 = H100 bf16 dense).
Prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CASES = ["hand-full", "ours-full", "hand-lora", "ours-lora", "ours-lora+con"]
PRESET_1B = {"vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 20,
             "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 2048}


def build_model(preset: str, root: Path) -> Path:
    from iterkd.teacher.tiny import build_tiny_model

    tiny = build_tiny_model(root / "tiny", preset="small", seed=0)
    if preset == "tiny":
        return tiny
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**PRESET_1B, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    with torch.device("cpu"):
        model = LlamaForCausalLM(cfg)
    out = root / "llama-1b"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(out)  # ids < 4096 fit the larger vocabulary
    return out


def examples(n: int, seq_len: int) -> list[Any]:
    from iterkd.shared.formats import TrainingExample

    body = "".join(f"    x{i} = a + {i}\n" for i in range(seq_len))
    out = []
    for k in range(n):
        chosen = f"def f{k}(a, b):\n{body}    return a + b\n"
        out.append(TrainingExample(problem_id=f"p{k}", prompt=f"Write f{k}(a, b) returning a + b.", chosen=chosen,
                                   rejected=[chosen.replace("a + b", "a - b"), chosen.replace("a + b", "a * b")]))
    return out


def trainer_cfg(model_dir: Path, a: argparse.Namespace, lora: bool, contrastive: bool) -> Any:
    from iterkd.trainer.config import TrainerConfig

    return TrainerConfig.model_validate({
        "base_model": str(model_dir), "device": a.device, "prompts": {"use_chat_template": False},
        "lora": {"enabled": lora, "r": 16, "alpha": 32, "dropout": 0.0},
        "loss": {"lambda_": 1.0 if contrastive else 0.0, "loss_type": "infonce", "max_rejected": 2},
        "optim": {"max_steps": a.steps + a.warmup, "batch_size": a.batch_size, "lr": 1e-4, "warmup_ratio": 0.0,
                  "max_grad_norm": None, "max_length": a.seq_len, "bf16": "auto",
                  "gradient_checkpointing": a.gradient_checkpointing},
    })


def run_case(case: str, model_dir: str, a: argparse.Namespace) -> dict[str, Any]:
    import torch

    from iterkd.trainer.data import collate
    from iterkd.trainer.trainer import StudentTrainer

    torch.manual_seed(0)
    lora = "lora" in case
    t = StudentTrainer(trainer_cfg(Path(model_dir), a, lora, contrastive=case.endswith("+con")),
                       examples(a.batch_size * (a.steps + a.warmup), a.seq_len // 2))
    dev = t.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    n_params = sum(p.numel() for p in t.model.parameters())
    times, tokens = [], []
    if case.startswith("ours"):
        for _ in range(a.warmup + a.steps):
            rec = t.train_step()
            times.append(rec.step_time_s)
            tokens.append(rec.tokens)
    else:  # the hand-written loop on the very same model object and batches
        model, opt = t.model, t.optimizer
        model.train()
        for step in range(a.warmup + a.steps):
            batch = collate([t.encoded[i] for i in t.micro_batch(step)], t.pad_id, with_rejected=False).to(dev)
            t0 = time.perf_counter()
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=t.bf16):
                loss = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            tokens.append(batch.tokens)
    tt, tk = sum(times[a.warmup:]), sum(tokens[a.warmup:])
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"case": case, "tokens_per_s": tk / tt, "step_s": tt / a.steps, "tokens_per_step": tk / a.steps,
            "peak_mem_mb": peak / 2**20, "peak_kind": "cuda_max_allocated" if dev.type == "cuda" else "rss",
            "params": n_params, "device": str(dev), "bf16": t.bf16}


def _child(case: str, model_dir: str, a: argparse.Namespace, q: Any) -> None:
    q.put(run_case(case, model_dir, a))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--preset", default="tiny", choices=["tiny", "1b"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256, help="max_length; completions fill about half of it")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="device peak for MFU (H100 bf16 dense: 989)")
    p.add_argument("--quick", action="store_true", help="few steps, one round")
    a = p.parse_args()
    if a.quick:
        a.steps, a.warmup, a.rounds = 6, 2, 1
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        model_dir = str(build_model(a.preset, Path(tmp)))
        best: dict[str, dict[str, Any]] = {}
        for _ in range(a.rounds):
            for case in CASES:
                q = ctx.Queue()
                proc = ctx.Process(target=_child, args=(case, model_dir, a, q))
                proc.start()
                res = q.get()
                proc.join()
                if case not in best or res["tokens_per_s"] > best[case]["tokens_per_s"]:
                    best[case] = res
    rows = [best[c] for c in CASES]
    ratio_full = best["ours-full"]["tokens_per_s"] / best["hand-full"]["tokens_per_s"]
    ratio_lora = best["ours-lora"]["tokens_per_s"] / best["hand-lora"]["tokens_per_s"]
    # contrastive: tokens/s counts chosen + rejected sequences; its step costs more per *example*
    con_step_ratio = best["ours-lora+con"]["step_s"] / best["ours-lora"]["step_s"]
    print(f"device={rows[0]['device']} preset={a.preset} params={rows[0]['params']:,} batch={a.batch_size} "
          f"max_len={a.seq_len} steps={a.steps} bf16={rows[0]['bf16']}")
    print(f"{'case':<16}{'tokens/s':>12}{'step s':>10}{'tok/step':>10}{'peak MB':>10}")
    for r in rows:
        print(f"{r['case']:<16}{r['tokens_per_s']:>12.0f}{r['step_s']:>10.4f}{r['tokens_per_step']:>10.0f}"
              f"{r['peak_mem_mb']:>10.0f}")
    print(f"ours/hand tokens/s: full {ratio_full:.3f}, lora {ratio_lora:.3f} (target >= 0.90); "
          f"SFT+contrastive step time = {con_step_ratio:.2f}x SFT-only (3x the sequences)")
    out: dict[str, Any] = {"bench": "trainer", "device": rows[0]["device"], "preset": a.preset,
                           "params": rows[0]["params"], "ratio_full": ratio_full, "ratio_lora": ratio_lora,
                           "contrastive_step_ratio": con_step_ratio, "cases": rows}
    if rows[0]["device"].startswith("cuda"):
        n = rows[0]["params"]
        out["mfu"] = {r["case"]: 6 * n * r["tokens_per_s"] / (a.peak_tflops * 1e12) for r in rows}
        print("MFU (6*N*tokens/s / peak):", json.dumps({k: round(v, 4) for k, v in out["mfu"].items()}))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
