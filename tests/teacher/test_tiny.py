"""Tests for iterkd.teacher.tiny (tiny offline models) and the ``models tiny`` CLI."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from iterkd.teacher.tiny import METADATA_FILE, PRESETS, build_tiny_model  # noqa: E402

SNIPPET = (
    "def fizz(n: int) -> str:\n"
    '    """Return “fizz” for multiples of 3."""\n'
    "    if n % 3 == 0:\n"
    "\treturn 'fizz'  # tab-indented, odd on purpose\n"
    "    return str(n)\n\n\n"
    "print([fizz(i) for i in range(1, 16)])  # ünïcödé ✓\n"
)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def test_small_model_loads_and_generates(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.eval()

    n_params = sum(p.numel() for p in model.parameters())
    assert 500_000 <= n_params <= 1_500_000
    meta = json.loads((tiny_model_dir / METADATA_FILE).read_text())
    assert meta["preset"] == "small" and meta["seed"] == 0
    assert meta["params"] == n_params
    assert meta["vocab_size"] == len(tok) == model.config.vocab_size
    assert model.config.max_position_embeddings == PRESETS["small"].max_position_embeddings

    assert tok.padding_side == "left"
    assert tok.eos_token == tok.pad_token == "<|endoftext|>"
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert model.generation_config.eos_token_id == tok.eos_token_id

    batch = tok(["def add(a, b):", "import os\nclass Foo:\n    def run(self):"], return_tensors="pt", padding=True)
    lengths = batch["attention_mask"].sum(dim=1)
    assert lengths[0] < lengths[1]
    assert batch["attention_mask"][0, 0] == 0  # left padding
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=5, do_sample=False)
    prompt_len = batch["input_ids"].shape[1]
    assert out.shape[0] == 2
    assert prompt_len < out.shape[1] <= prompt_len + 5
    assert torch.equal(out[:, :prompt_len], batch["input_ids"])


def test_tokenizer_round_trip_and_chat_template(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tok(SNIPPET, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == SNIPPET
    assert len(ids) < len(SNIPPET.encode())  # BPE actually merges something

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write add()."}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|system|>\nBe brief.<|endoftext|>\n<|user|>\nWrite add().<|endoftext|>\n<|assistant|>\n"
    chat_ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.convert_tokens_to_ids("<|assistant|>") in chat_ids
    assert chat_ids.count(tok.eos_token_id) == 2


def test_deterministic_for_seed(tiny_model_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_model(tmp_path / "again", preset="small", seed=0)
    other = build_tiny_model(tmp_path / "other", preset="small", seed=1)
    for name in ("model.safetensors", "tokenizer.json"):
        assert _sha(again / name) == _sha(tiny_model_dir / name), name
    assert _sha(other / "model.safetensors") != _sha(tiny_model_dir / "model.safetensors")
    assert _sha(other / "tokenizer.json") == _sha(tiny_model_dir / "tokenizer.json")


def test_existing_dir_and_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        build_tiny_model(out)
    assert (out / "keep.txt").read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temp dirs left behind

    build_tiny_model(out, overwrite=True)
    assert not (out / "keep.txt").exists()
    assert (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_empty_existing_dir_is_fine_and_bad_args(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        build_tiny_model(tmp_path / "x", preset="huge")
    with pytest.raises(ValueError, match="warmup_steps"):
        build_tiny_model(tmp_path / "x", warmup_steps=-1)
    assert not (tmp_path / "x").exists()


def test_warmup_is_deterministic_and_lowers_loss(tmp_path: Path) -> None:
    a = build_tiny_model(tmp_path / "a", warmup_steps=3)
    b = build_tiny_model(tmp_path / "b", warmup_steps=3)
    assert _sha(a / "model.safetensors") == _sha(b / "model.safetensors")
    meta = json.loads((a / METADATA_FILE).read_text())
    assert meta["warmup_steps"] == 3
    # The first step's loss is the untrained model's: chance level, ln(vocab) = ln(4096) = 8.32.
    # Three steps bring it to about 7.65 here; a warm-up that learns nothing stays near 8.32.
    chance = math.log(meta["vocab_size"])
    assert abs(meta["warmup_first_loss"] - chance) < 0.15, meta
    assert meta["warmup_final_loss"] < chance - 0.4, meta
    assert meta["warmup_final_loss"] < meta["warmup_first_loss"] - 0.4, meta


def test_written_models_sample_at_the_requested_temperature(tiny_model_dir: Path) -> None:
    """A server that honours the generation config (transformers serve does) must sample when a
    request asks temperature > 0: the config says do_sample, and transformers' own generate with
    the saved config gives distinct samples at temperature 1."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    saved = GenerationConfig.from_pretrained(tiny_model_dir)
    assert saved.do_sample is True and saved.temperature == 1.0 and saved.top_p == 1.0 and not saved.top_k
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    batch = tok(["def add(a, b):\n"], return_tensors="pt")
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**batch, generation_config=saved, max_new_tokens=8, num_return_sequences=6,
                             temperature=1.0)
    texts = tok.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert len(set(texts)) == 6, texts


def test_cli_builds_and_prints_json(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "iterkd.teacher.cli", "models", "tiny", "--out", str(out), "--seed", "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    info = json.loads(lines[0])
    assert Path(info["out_dir"]) == out.absolute()
    assert info["vocab_size"] == PRESETS["small"].vocab_size
    assert info["params"] > 0 and info["seconds"] >= 0
    assert (out / "model.safetensors").is_file()

    again = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=120)
    assert again.returncode == 2
    assert "already exists" in again.stderr and again.stdout == ""


def test_cli_bad_preset_exits_2(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "iterkd.teacher.cli", "models", "tiny", "--out", str(tmp_path / "x")]
    proc = subprocess.run([*cmd, "--preset", "huge"], capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 2
    assert "unknown preset" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_register_models_with_foreign_parser(tmp_path: Path) -> None:
    import argparse

    from iterkd.teacher.cli import register_models

    parser = argparse.ArgumentParser(prog="iterkd")
    register_models(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", "tiny", "--out", str(tmp_path / "m"), "--preset", "base", "--seed", "7"])
    assert (args.preset, args.seed, args.overwrite, args.warmup_steps) == ("base", 7, False, 0)
    assert callable(args.func)
    assert parser.parse_args(["models"]).func(None) == 2
