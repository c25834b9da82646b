"""The ``questions`` section of the configuration file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from iterkd.shared.config import FileConfig, Section, ServerConfig
from iterkd.shared.prompts import DEFAULT_QUESTION_TEMPLATES as DEFAULT_TEMPLATES
from iterkd.shared.prompts import DEFAULT_SOLVE_TEMPLATE, check_template

LEVELS = ("mastered", "learning", "struggling")


TEMPLATE_FIELDS = frozenset({"prompt", "entry_point", "tests", "id", "level"})


def check_generation_template(template: str, where: str) -> str:
    return check_template(template, where, TEMPLATE_FIELDS, required="prompt")


class LevelWeights(Section):
    """Weights of the views in the quality score (each view is 0..1; absent views are skipped)."""

    pass_rate: float = Field(default=0.0, ge=0)
    static: float = Field(default=0.4, ge=0)
    judge: float = Field(default=0.6, ge=0)


class LevelsConfig(Section):
    """``mastered``: pass rate >= mastered_min_pass and quality >= mastered_quality;
    ``struggling``: pass rate <= struggling_max_pass; ``learning``: the rest.

    Quality is the weighted mean of the views present in a feedback row; when no weighted view is
    present, the feedback row's own ``quality``.

    ``assign: random`` ignores the feedback and draws each question's level from a hash of
    (``random_seed``, question id): the ablation of the feedback-based update, where new questions
    are asked at levels that say nothing about the student."""

    assign: Literal["feedback", "random"] = "feedback"
    random_seed: int = 0
    mastered_min_pass: float = Field(default=1.0, ge=0, le=1)
    mastered_quality: float = Field(default=0.6, ge=0, le=1)
    struggling_max_pass: float = Field(default=0.0, ge=0, le=1)
    weights: LevelWeights = Field(default_factory=LevelWeights)

    @model_validator(mode="after")
    def _order(self) -> LevelsConfig:
        if self.struggling_max_pass >= self.mastered_min_pass:
            raise ValueError("struggling_max_pass must be below mastered_min_pass")
        return self


class GenerationConfig(Section):
    per_question: dict[str, int] = Field(default_factory=lambda: {"mastered": 2, "learning": 2, "struggling": 2})
    templates: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    max_new_tokens: int = Field(default=1024, ge=1)
    temperature: float = Field(default=0.8, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    seed: int = 0
    use_chat_template: bool = True
    batch_prompts: int = Field(default=32, ge=1)
    # Validation answers: fresh teacher solutions of each new question.
    samples_per_question: int = Field(default=2, ge=0)
    solve_template: str = DEFAULT_SOLVE_TEMPLATE
    solve_max_new_tokens: int = Field(default=768, ge=1)
    solve_temperature: float = Field(default=0.2, ge=0)
    use_reply_solution: bool = True  # the solution written with the question counts as a teacher answer
    # A reply with a solution but no tests gets this many tests made by running the solution on
    # inputs drawn from its signature's type hints (iterkd.questions.testgen); 0: such replies are dropped.
    generated_tests: int = Field(default=6, ge=0)
    teacher_timeout_s: float = Field(default=600.0, gt=0)

    @field_validator("per_question")
    @classmethod
    def _per_question(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(LEVELS))
        if unknown:
            raise ValueError(f"unknown level(s) {', '.join(unknown)}; levels are {', '.join(LEVELS)}")
        if any(v < 0 for v in value.values()):
            raise ValueError("counts must be >= 0")
        return {level: value.get(level, 0) for level in LEVELS}

    @field_validator("templates")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(LEVELS))
        if unknown:
            raise ValueError(f"unknown level(s) {', '.join(unknown)}; levels are {', '.join(LEVELS)}")
        merged = {**DEFAULT_TEMPLATES, **value}
        for level, template in merged.items():
            check_generation_template(template, f"templates.{level}")
        return merged

    @field_validator("solve_template")
    @classmethod
    def _solve(cls, value: str) -> str:
        return check_template(value, "solve_template")


class ValidationConfig(Section):
    timeout_s: float = Field(default=5.0, gt=0)  # per program; tests must finish within it
    trivial_answers: list[str] = Field(default_factory=lambda: ["pass", "return_none", "first_arg"])
    min_tests: int = Field(default=1, ge=1)
    max_batch: int = Field(default=256, ge=1)  # programs per ExecuteBatch call
    rpc_timeout_s: float = Field(default=600.0, gt=0)

    @field_validator("trivial_answers")
    @classmethod
    def _trivial(cls, value: list[str]) -> list[str]:
        known = ("pass", "return_none", "first_arg")
        unknown = [v for v in value if v not in known]
        if unknown:
            raise ValueError(f"unknown trivial answer(s) {', '.join(unknown)}; use {', '.join(known)}")
        return value


class DedupConfig(Section):
    method: str = Field(default="minhash", pattern="^(minhash|jaccard)$")
    threshold: float = Field(default=0.8, gt=0, le=1)
    shingle: int = Field(default=5, ge=1)
    num_perm: int = Field(default=128, ge=8)
    seed: int = 0


class DecontaminationConfig(Section):
    ngram: int = Field(default=13, ge=2)        # prose words
    code_ngram: int = Field(default=25, ge=2)   # code tokens (finer than words)
    idiom_df: int = Field(default=2, ge=0)     # n-grams shared by this many eval problems are idioms; 0: off
    humaneval: bool = True
    mbpp_path: str | None = None               # mbpp.jsonl or sanitized-mbpp.json; else env ITERKD_MBPP
    mbpp_split: str = "test"
    extra_sets: list[str] = Field(default_factory=list)


class PoolConfig(Section):
    max_size: int = Field(default=0, ge=0)     # 0: no cap
    keep_unmastered: bool = True
    min_new_fraction: float = Field(default=0.5, ge=0, le=1)  # of max_size, reserved for new questions


class QuestionsConfig(Section):
    server: ServerConfig = Field(default_factory=lambda: ServerConfig(port=50054))
    teacher_target: str = "127.0.0.1:50051"
    feedback_target: str = "127.0.0.1:50053"
    levels: LevelsConfig = Field(default_factory=LevelsConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    decontamination: DecontaminationConfig = Field(default_factory=DecontaminationConfig)
    pool: PoolConfig = Field(default_factory=PoolConfig)


class QuestionsFileConfig(FileConfig):
    questions: QuestionsConfig = Field(default_factory=QuestionsConfig)
