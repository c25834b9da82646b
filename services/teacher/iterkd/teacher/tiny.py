"""Tiny local code models built offline from the Python standard library.

``build_tiny_model`` trains a byte-level BPE tokenizer on the stdlib's own ``*.py`` sources,
builds a small randomly initialised ``LlamaForCausalLM`` on top of it (optionally warmed up for a
few causal-LM steps on the same corpus) and saves both with ``save_pretrained`` so that
``AutoTokenizer.from_pretrained`` and ``AutoModelForCausalLM.from_pretrained`` load the directory
without network access. These models know nothing useful; they exist so the whole IterKD loop
(teacher, student, trainer, judge) can run end to end on a laptop CPU and in tests.

A build is deterministic for a given ``(preset, seed, warmup_steps)`` on the same machine and
library versions: ``model.safetensors`` and ``tokenizer.json`` come out byte-identical.

torch, transformers and tokenizers (the ``hf`` extra) are imported lazily, so importing this
module (e.g. for :data:`PRESETS` in the CLI) stays cheap.
"""

from __future__ import annotations

import json
import os
import shutil
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

__all__ = [
    "CHAT_TEMPLATE",
    "EOS_TOKEN",
    "METADATA_FILE",
    "PRESETS",
    "ROLE_TOKENS",
    "TinyPreset",
    "build_tiny_model",
    "stdlib_corpus_files",
]

EOS_TOKEN = "<|endoftext|>"
"""Single special token used as bos, eos, pad and unk."""

ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
"""Special tokens that open a chat turn; a turn ends with :data:`EOS_TOKEN`."""

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|endoftext|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
"""Minimal Jinja chat template: ``<|role|>\\ncontent<|endoftext|>\\n`` per message."""

METADATA_FILE = "iterkd_tiny.json"
"""Build record written next to the model (preset, seed, parameter count, timings)."""

_SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})


@dataclass(frozen=True)
class TinyPreset:
    """Shape of a tiny Llama model and the size of its tokenizer corpus."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    corpus_bytes: int
    """Cap on the stdlib source bytes used to train the tokenizer (and for warmup)."""


PRESETS: dict[str, TinyPreset] = {
    # ~0.85M parameters, most of them in the (tied) embedding.
    "small": TinyPreset(
        vocab_size=4096,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        corpus_bytes=3_000_000,
    ),
    # ~6.5M parameters.
    "base": TinyPreset(
        vocab_size=8192,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        corpus_bytes=6_000_000,
    ),
}


def stdlib_corpus_files(max_bytes: int, stdlib_dir: str | Path | None = None) -> list[Path]:
    """Return stdlib ``*.py`` files, sorted by relative path, until ``max_bytes`` is reached.

    Test directories, ``site-packages`` and files that are not valid UTF-8 are skipped, and so
    are empty files. The order depends only on the paths, so the result is reproducible for a
    given Python installation.
    """
    root = Path(stdlib_dir if stdlib_dir is not None else sysconfig.get_paths()["stdlib"])
    candidates = sorted(
        (p for p in root.rglob("*.py") if not _SKIP_DIRS.intersection(p.relative_to(root).parts[:-1])),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    chosen: list[Path] = []
    total = 0
    for path in candidates:
        if total >= max_bytes:
            break
        if path.name.startswith("test_") or not path.is_file():
            continue
        try:
            data = path.read_bytes()
            data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not data.strip():
            continue
        chosen.append(path)
        total += len(data)
    if not chosen:
        raise RuntimeError(f"no usable Python sources found under {root}")
    return chosen


def _read_texts(files: list[Path]) -> Iterator[str]:
    for path in files:
        yield path.read_text(encoding="utf-8")


def _train_tokenizer(files: list[Path], vocab_size: int) -> Tokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=[EOS_TOKEN, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_read_texts(files), trainer=trainer, length=len(files))
    return tok


def _wrap_tokenizer(tok: Tokenizer, max_length: int) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        additional_special_tokens=list(ROLE_TOKENS),
        model_input_names=["input_ids", "attention_mask"],
        padding_side="left",
        truncation_side="left",
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE,
    )


def _build_model(preset: TinyPreset, vocab_size: int, eos_id: int, seed: int) -> LlamaForCausalLM:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_hidden_layers=preset.num_hidden_layers,
        num_attention_heads=preset.num_attention_heads,
        num_key_value_heads=preset.num_key_value_heads,
        max_position_embeddings=preset.max_position_embeddings,
        hidden_act="silu",
        initializer_range=0.02,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        attention_bias=False,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        use_cache=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        # max_new_tokens rather than max_length: a max_length default makes every
        # generate(max_new_tokens=...) call log a "both were set" warning.
        max_new_tokens=preset.max_position_embeddings // 2,
        # Sample by default, at the request's temperature. A server that honours the generation
        # config (transformers serve, TGI, vLLM's defaults) would otherwise answer greedily
        # whatever temperature a request asks, and n samples would all be the same. top_k=0: no
        # hidden top-k cut, so temperature and top_p are the only knobs, as in our own engine.
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
    )
    return model


def _warmup(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    files: list[Path],
    steps: int,
    seed: int,
    seq_len: int,
    batch_size: int = 8,
    lr: float = 3e-3,
) -> tuple[float, float]:
    """Run ``steps`` AdamW steps of causal-LM training on stdlib text; return the first step's loss
    (before any update: chance level, ln(vocab)) and the last one."""
    import torch

    needed = steps * batch_size * (seq_len + 1)
    eos_id = tokenizer.eos_token_id
    backend = tokenizer.backend_tokenizer  # raw encode: no "longer than max length" warnings
    ids: list[int] = []
    for text in _read_texts(files):
        ids.extend(backend.encode(text, add_special_tokens=False).ids)
        ids.append(eos_id)
        if len(ids) >= needed:
            break
    n_windows = len(ids) // (seq_len + 1)
    if n_windows == 0:
        raise RuntimeError("warmup corpus is shorter than one training window")
    data = torch.tensor(ids[: n_windows * (seq_len + 1)], dtype=torch.long).view(n_windows, seq_len + 1)

    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n_windows, generator=gen)
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    first_loss = loss_value = float("nan")
    for step in range(steps):
        idx = order[(torch.arange(batch_size) + step * batch_size) % n_windows]
        batch = data[idx]
        out = model(input_ids=batch[:, :-1], labels=batch[:, :-1].clone())
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
        loss_value = float(out.loss.detach())
        if step == 0:
            first_loss = loss_value
    model.eval()
    return first_loss, loss_value


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_dir() and not out_dir.is_symlink() and not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"{out_dir} already exists and is not empty; pass overwrite=True (--overwrite) to replace it"
        )


def _install(tmp_dir: Path, out_dir: Path) -> None:
    """Move the finished ``tmp_dir`` to ``out_dir``, replacing whatever was there."""
    old: Path | None = None
    if out_dir.exists() or out_dir.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        old.rmdir()
        os.replace(out_dir, old)
    try:
        os.replace(tmp_dir, out_dir)
    except BaseException:
        if old is not None:
            os.replace(old, out_dir)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def build_tiny_model(
    out_dir: str | Path,
    preset: str = "small",
    seed: int = 0,
    overwrite: bool = False,
    warmup_steps: int = 0,
) -> Path:
    """Build a tiny Llama model plus tokenizer into ``out_dir`` and return its resolved path.

    The directory is assembled in a temporary sibling and renamed into place at the end, so a
    crash never leaves a half-written model. Raises ``ValueError`` for an unknown preset or a
    negative ``warmup_steps``, and ``FileExistsError`` if ``out_dir`` exists, is not an empty
    directory, and ``overwrite`` is false. The global torch RNG state is left untouched.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    spec = PRESETS[preset]
    out_dir = Path(out_dir).expanduser().absolute()
    _check_target(out_dir, overwrite)

    import torch

    started = time.perf_counter()
    files = stdlib_corpus_files(spec.corpus_bytes)
    tokenizer = _wrap_tokenizer(_train_tokenizer(files, spec.vocab_size), spec.max_position_embeddings)
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    vocab_size = len(tokenizer)

    with torch.random.fork_rng(devices=[]):
        model = _build_model(spec, vocab_size, eos_id, seed)
        first_loss, final_loss = (
            _warmup(model, tokenizer, files, warmup_steps, seed, min(256, spec.max_position_embeddings))
            if warmup_steps
            else (None, None)
        )
    n_params = sum(p.numel() for p in model.parameters())

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp_dir, safe_serialization=True)
        tokenizer.save_pretrained(tmp_dir)
        meta: dict[str, Any] = {
            "preset": preset,
            "seed": seed,
            "params": n_params,
            "vocab_size": vocab_size,
            "warmup_steps": warmup_steps,
            "warmup_first_loss": first_loss,
            "warmup_final_loss": final_loss,
            "corpus_files": len(files),
            "corpus_bytes": sum(p.stat().st_size for p in files),
            "build_seconds": round(time.perf_counter() - started, 3),
            "config": asdict(spec),
        }
        (tmp_dir / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        # mkdtemp creates 0700 and some writers use 0600; make the result readable like a normal
        # directory so other users/containers sharing the volume can load it.
        tmp_dir.chmod(0o755)
        for path in tmp_dir.iterdir():
            path.chmod(0o644)
        _check_target(out_dir, overwrite)  # re-check: something may have appeared meanwhile
        _install(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return out_dir
