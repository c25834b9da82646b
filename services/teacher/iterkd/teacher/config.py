"""The ``teacher`` section of the configuration file."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from iterkd.shared.config import FileConfig, Section, ServerConfig
from iterkd.shared.prompts import PromptConfig


class RetryConfig(Section):
    """Retries towards a remote backend: on 429, 5xx, timeouts and dropped connections, with
    exponential backoff and full jitter, within ``total_budget_s`` for all attempts of one call."""

    max_attempts: int = Field(default=5, ge=1)
    initial_backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=10.0, ge=0)
    total_budget_s: float = Field(default=120.0, gt=0)
    request_timeout_s: float = Field(default=60.0, gt=0)


class TeacherConfig(Section):
    server: ServerConfig = ServerConfig(port=50051)
    backend: Literal["tgi", "openai", "hf"] = "hf"
    # hf: a model directory (empty: .iterkd/models/tiny-teacher, built by `iterkd models tiny`);
    # tgi/openai: the model name to report (openai: also sent as "model"); empty: ask the server.
    model: str = ""
    adapter: str | None = None
    # tgi: the server's root URL; openai: the API base (".../v1" is added when the path is empty).
    url: str = "http://127.0.0.1:8080"
    api_key_env: str | None = None
    api_key_file: str | None = None  # a mounted secret; wins over api_key_env
    openai_mode: Literal["chat", "completions"] = "chat"
    tgi_messages_api: bool = True  # tgi: use the Messages API when the request asks for a chat template
    context_length: int | None = Field(default=None, ge=2)  # overrides what the backend reports
    device: str = "auto"
    dtype: str = "auto"
    max_batch_prompts: int = Field(default=256, ge=1)
    max_n: int = Field(default=16, ge=1)
    max_new_tokens: int = Field(default=2048, ge=1)
    micro_batch_size: int = Field(default=8, ge=1)
    max_in_flight: int = Field(default=64, ge=1)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    prompts: PromptConfig = Field(default_factory=PromptConfig)

    @model_validator(mode="after")
    def _check(self) -> TeacherConfig:
        if self.backend in ("tgi", "openai") and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must be an http(s) URL for the {self.backend} backend, got {self.url!r}")
        return self


class TeacherFileConfig(FileConfig):
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)

    def local_paths(self) -> list[tuple[BaseModel, str]]:
        """hf: the model and adapter folders (for tgi/openai ``model`` is a name, not a path)."""
        local = [(self.teacher, "model"), (self.teacher, "adapter")] if self.teacher.backend == "hf" else []
        return [*super().local_paths(), *local]
