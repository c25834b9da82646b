"""The ``feedback`` section of the configuration file.

.. code-block:: yaml

    feedback:
      server: {port: 50053}
      sandbox: {workers: 4, timeout_s: 3.0, max_timeout_s: 60.0, memory_mb: 1024, disk_mb: 64,
                compile_timeout_s: 10.0, compile_memory_mb: 2048, disabled_languages: []}
      static: {enabled: true, batch_size: 64, disable: [missing-module-docstring], ruff: false}
      judge:
        enabled: true
        endpoint: {kind: teacher, target: "127.0.0.1:50051"}   # or {kind: tgi, url: "http://..."}
        max_new_tokens: 512
        temperature: 0.0
      weights: {pass_rate: 0.6, static: 0.1, judge: 0.3}
      peers: ["iterkd-feedback-headless:50053"]   # replicas that share Evaluate's executions
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from iterkd.feedback.judge import DEFAULT_RUBRIC, DEFAULT_TEMPLATE, check_judge_template, rubric_max_score
from iterkd.feedback.sandbox_worker.languages import LANGUAGES
from iterkd.feedback.shards import split_target
from iterkd.feedback.static import DEFAULT_DISABLE
from iterkd.shared.config import FileConfig, Section, ServerConfig


class SandboxConfig(Section):
    """Execution limits; see :class:`iterkd.feedback.sandbox.Limits`."""

    workers: int | None = Field(default=None, ge=1)  # None = one per CPU
    timeout_s: float = Field(default=3.0, gt=0)  # per answer, when a request gives none
    max_timeout_s: float = Field(default=60.0, gt=0)  # the most a request may ask for
    memory_mb: int = Field(default=1024, ge=16)
    file_size_mb: int = Field(default=16, ge=1)
    max_procs: int = Field(default=64, ge=1)
    output_bytes: int = Field(default=8192, ge=0)
    max_program_kb: int = Field(default=1024, ge=1)  # larger programs are refused (INVALID_ARGUMENT)
    max_batch: int = Field(default=1000, ge=1)  # items per ExecuteBatch
    disk_mb: int = Field(default=64, ge=1)  # one private tmpfs per answer (its directory, /tmp, /dev/shm)
    compile_timeout_s: float = Field(default=10.0, gt=0)  # wall clock per compile step
    compile_memory_mb: int = Field(default=2048, ge=64)  # RLIMIT_AS of a compile step
    disabled_languages: list[str] = Field(default_factory=list)  # answers in these fail: no toolchain

    @field_validator("disabled_languages")
    @classmethod
    def _languages(cls, value: list[str]) -> list[str]:
        unknown = [x for x in value if x not in LANGUAGES or x == "python"]
        if unknown:
            raise ValueError(f"{unknown}: only these languages can be disabled: {', '.join(LANGUAGES[1:])}")
        return value

    @model_validator(mode="after")
    def _check(self) -> SandboxConfig:
        if self.timeout_s > self.max_timeout_s:
            raise ValueError(f"timeout_s ({self.timeout_s:g}) is above max_timeout_s ({self.max_timeout_s:g})")
        return self


class StaticConfig(Section):
    enabled: bool = True
    batch_size: int = Field(default=64, ge=1)  # answers per pylint run (a child of the warm pylint process)
    disable: list[str] = Field(default_factory=lambda: list(DEFAULT_DISABLE))  # pylint checks off
    ruff: bool = False  # also run ruff (when a ruff binary is found) in Evaluate
    max_codes: int = Field(default=1000, ge=1)  # per Static call


class EndpointConfig(Section):
    """Where the judge model lives: the teacher service (gRPC) or a TGI server (HTTP)."""

    kind: Literal["teacher", "tgi"] = "teacher"
    target: str = "127.0.0.1:50051"  # teacher: host:port
    url: str = ""  # tgi: http://host:port
    timeout_s: float = Field(default=300.0, gt=0)
    retries: int = Field(default=2, ge=0)  # tgi: extra attempts on 429/5xx/connection errors
    concurrency: int = Field(default=4, ge=1)  # tgi: requests in flight

    @model_validator(mode="after")
    def _check(self) -> EndpointConfig:
        if self.kind == "tgi" and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must be an http:// or https:// URL for kind: tgi")
        if self.kind == "teacher" and not self.target:
            raise ValueError("target must be host:port for kind: teacher")
        return self


class JudgeConfig(Section):
    enabled: bool = False
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)
    rubric: str = DEFAULT_RUBRIC
    template: str = DEFAULT_TEMPLATE
    max_score: float | None = Field(default=None, gt=0)  # None = read from the rubric ("Maximum: 6")
    max_new_tokens: int = Field(default=512, ge=1)
    temperature: float = Field(default=0.0, ge=0)
    seed: int = 0
    batch_size: int = Field(default=16, ge=1)  # prompts per generate call

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_judge_template(value, "template")

    @model_validator(mode="after")
    def _check(self) -> JudgeConfig:
        if self.max_score is None and rubric_max_score(self.rubric) is None:
            raise ValueError("max_score: the rubric states no maximum (e.g. 'Maximum: 6 points'); set max_score")
        return self

    @property
    def resolved_max_score(self) -> float:
        return self.max_score if self.max_score is not None else float(rubric_max_score(self.rubric) or 0)


class WeightsConfig(Section):
    """Weights of the views in a problem's quality; renormalised over the views that ran."""

    pass_rate: float = Field(default=0.6, ge=0)
    static: float = Field(default=0.1, ge=0)
    judge: float = Field(default=0.3, ge=0)

    @model_validator(mode="after")
    def _check(self) -> WeightsConfig:
        if self.pass_rate + self.static + self.judge <= 0:
            raise ValueError("at least one weight must be positive")
        return self


class FeedbackConfig(Section):
    server: ServerConfig = Field(default_factory=lambda: ServerConfig(port=50053))
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    static: StaticConfig = Field(default_factory=StaticConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    weights: WeightsConfig = Field(default_factory=WeightsConfig)
    default_k: list[int] = Field(default_factory=lambda: [1])
    # Other replicas that take shares of Evaluate's executions: host:port each; a DNS name that
    # resolves to every replica (a headless Service) may stand for all of them.
    peers: list[str] = Field(default_factory=list)
    peer_timeout_s: float = Field(default=600.0, gt=0)  # per ExecuteBatch call to a peer

    @field_validator("peers")
    @classmethod
    def _peers(cls, value: list[str]) -> list[str]:
        for entry in value:
            split_target(entry)  # ValueError names the entry
        return value

    @field_validator("default_k")
    @classmethod
    def _ks(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 for k in value):
            raise ValueError("every k must be a positive integer")
        return value


class FeedbackFileConfig(FileConfig):
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
