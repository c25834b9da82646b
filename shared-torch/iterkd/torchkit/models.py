"""Where a model runs and how it is asked: device and dtype choice, "is this folder an adapter",
and the chat wrapping of a prompt. One copy each, for the generation engine, the trainer's
training loop and the trainer's served student, so the student is trained and asked alike.

torch is imported inside the functions that need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from iterkd.shared.config import ConfigError
from iterkd.shared.errors import DeviceUnavailable

if TYPE_CHECKING:
    import torch

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: str | Path) -> bool:
    """A PEFT adapter folder (as opposed to a full model folder)."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def pick_device(name: str, where: str = "device") -> torch.device:
    """``auto``: CUDA when present, else the CPU; ``cuda`` (or ``cuda:N``) on a machine without
    CUDA is :class:`DeviceUnavailable` (a machine problem, FAILED_PRECONDITION), not a bad request."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{where}: unknown device {name!r}; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"{where}: {name!r} requested but this machine has no CUDA device")
    return device


def pick_dtype(dtype: str, device: torch.device, where: str = "dtype") -> torch.dtype:
    """``auto``: bfloat16 on CUDA devices that support it, float32 otherwise; else the named dtype."""
    import torch

    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ConfigError(f"{where}: unknown dtype {dtype!r}; use auto, float32, float16 or bfloat16")
    return value


def chat_prompt(tokenizer: Any, prompt: str, use_chat_template: bool) -> tuple[str, bool]:
    """The text the model sees before its answer (the prompt as a user turn where the tokenizer has
    a chat template and ``use_chat_template`` is set, else the prompt itself), and whether special
    tokens are to be added when tokenising it (not when the chat template already wrote them)."""
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        return str(text), False
    return prompt, True
