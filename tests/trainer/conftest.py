"""Fixtures for the trainer tests: a local store, small synthetic training sets, a fast config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from iterkd.shared.formats import TrainingExample
from iterkd.shared.store import LocalStore

NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo",
         "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango"]


def pair(name: str) -> TrainingExample:
    """A question whose right answer adds and whose near-miss answers subtract or multiply."""
    return TrainingExample(
        problem_id=name,
        prompt=f"Write a function {name}(a, b) that returns the sum of a and b.",
        chosen=f"def {name}(a, b):\n    return a + b\n",
        rejected=[f"def {name}(a, b):\n    return a - b\n", f"def {name}(a, b):\n    return a * b\n"],
    )


@pytest.fixture
def train_examples() -> list[TrainingExample]:
    return [pair(n) for n in NAMES[:16]]


@pytest.fixture
def heldout_examples() -> list[TrainingExample]:
    return [pair(n) for n in NAMES[16:]]


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def fast_cfg(tiny_model_dir: Path) -> dict[str, Any]:
    """A trainer section that trains the tiny model in a second or two."""
    return {
        "base_model": str(tiny_model_dir),
        "device": "cpu",
        "prompts": {"use_chat_template": True},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "optim": {"max_steps": 8, "lr": 3e-3, "batch_size": 4, "grad_accum": 1, "warmup_ratio": 0.1,
                  "save_every_steps": 4, "max_length": 256},
        "loss": {"loss_type": "infonce", "lambda_": 1.0},
    }
