"""Shared pytest fixtures for the IterKD test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch the network: make huggingface_hub / transformers fail fast instead of downloading.
# Set at import time, before any test module imports transformers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny "small"-preset Llama model + tokenizer (seed 0), built once per test session.

    Loadable offline with ``AutoTokenizer.from_pretrained`` / ``AutoModelForCausalLM.from_pretrained``.
    Treat it as read-only: it is shared by every test that uses it.
    """
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from iterkd.teacher.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "small", preset="small", seed=0)
