"""The trainer's section of the YAML configuration (``trainer:``), validated by pydantic.

A ``TrainRequest.config_json`` overrides any field of :class:`TrainerConfig` for one training
(:func:`iterkd.shared.config.merge_overrides`), e.g. ``{"loss": {"loss_type": "dpo"}}``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from iterkd.shared.config import FileConfig, Section, ServerConfig
from iterkd.shared.prompts import PromptConfig

DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraConfig(Section):
    """LoRA through peft; ``enabled: false`` means full fine-tuning."""

    enabled: bool = True
    r: int = Field(default=16, ge=1)
    alpha: float = Field(default=32.0, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGET_MODULES), min_length=1)


class LossConfig(Section):
    """Total loss = SFT + ``lambda`` x contrastive.

    ``infonce``: -log softmax of the chosen score among {chosen} + rejected, at ``temperature``;
    ``dpo``: -log sigmoid(beta x ((c - c_ref) - (r - r_ref))), reference = adapter disabled;
    ``margin``: hinge max(0, margin - (c - r));
    ``unlikelihood``: -log(1 - q), q = p_r / (p_c + p_r) the rejected answer's share of the pair's
    likelihood (per-token geometric means), i.e. softplus(r - c); the absolute -log(1 - p_r) had a
    gradient of about p_r, 2e-4 on an answer the student already finds unlikely, and taught nothing.
    Scores are per-token mean log-likelihoods, except for ``dpo`` (sequence sums, as in the paper).
    ``fault_weight`` > 0 multiplies the weight of the tokens where chosen and rejected differ by
    (1 + fault_weight) in those scores.
    """

    loss_type: Literal["infonce", "dpo", "margin", "unlikelihood"] = "infonce"
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    lambda_: float = Field(default=0.5, ge=0, alias="lambda", description="written `lambda` in YAML")
    temperature: float = Field(default=1.0, gt=0)
    beta: float = Field(default=0.1, gt=0)
    margin: float = Field(default=1.0, ge=0)
    fault_weight: float = Field(default=0.0, ge=0)
    max_rejected: int = Field(default=4, ge=0, description="rejected answers used per example (0 = SFT only)")


class OptimConfig(Section):
    lr: float = Field(default=2e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_ratio: float = Field(default=0.03, ge=0, le=1)
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1, description="optimizer steps; overrides epochs")
    batch_size: int = Field(default=4, ge=1, description="examples per micro-batch")
    grad_accum: int = Field(default=1, ge=1)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    seed: int = 0
    bf16: Literal["auto"] | bool = "auto"
    gradient_checkpointing: bool = False
    save_every_steps: int = Field(default=50, ge=1)
    max_length: int = Field(default=1024, ge=8, description="tokens of prompt + completion")


class TrainerConfig(Section):
    server: ServerConfig = ServerConfig(port=50052)
    base_model: str = ".iterkd/models/tiny-student"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    prompts: PromptConfig = Field(default_factory=PromptConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    # Serving limits (Generate / Solve), as the teacher enforces its own.
    max_batch_prompts: int = Field(default=64, ge=1)
    max_new_tokens: int = Field(default=512, ge=1)
    max_n: int = Field(default=16, ge=1)
    generate_micro_batch: int = Field(default=8, ge=1)
    load_on_start: bool = Field(default=False, description="load the served student at start, not on first use")

    @model_validator(mode="after")
    def _check(self) -> TrainerConfig:
        if self.loss.loss_type == "dpo" and not self.lora.enabled and self.loss.lambda_ > 0:
            raise ValueError(
                "loss.loss_type 'dpo' needs lora.enabled: its reference is the base model with the "
                "adapter disabled (no second copy of the model is kept)"
            )
        return self


class TrainerFileConfig(FileConfig):
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)

    def local_paths(self) -> list[tuple[BaseModel, str]]:
        return [*super().local_paths(), (self.trainer, "base_model")]
