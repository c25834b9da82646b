"""Difficulty levels from the multi-view feedback of each question."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from iterkd.questions.config import LEVELS, LevelsConfig
from iterkd.shared.formats import Feedback

_EPS = 1e-9


def quality_of(feedback: Feedback, cfg: LevelsConfig) -> float:
    """The weighted mean of the views present (pass rate, static, judge; each 0..1); the row's
    own ``quality`` when no weighted view is present."""
    w = cfg.weights
    parts = [(w.pass_rate, feedback.pass_rate), (w.static, feedback.static), (w.judge, feedback.judge)]
    present = [(wt, v) for wt, v in parts if v is not None and wt > 0]
    total = sum(wt for wt, _ in present)
    if total <= 0:
        return feedback.quality
    return sum(wt * v for wt, v in present) / total


def assign_level(feedback: Feedback, cfg: LevelsConfig) -> str:
    """``mastered``, ``learning`` or ``struggling`` (see :class:`LevelsConfig`)."""
    if feedback.pass_rate <= cfg.struggling_max_pass + _EPS:
        return "struggling"
    if feedback.pass_rate >= cfg.mastered_min_pass - _EPS and quality_of(feedback, cfg) >= cfg.mastered_quality - _EPS:
        return "mastered"
    return "learning"


def random_level(problem_id: str, seed: int) -> str:
    """A level drawn from a hash of (seed, id): deterministic, independent of the feedback."""
    digest = hashlib.blake2b(f"{seed}:{problem_id}".encode(), digest_size=8).digest()
    return LEVELS[int.from_bytes(digest, "big") % len(LEVELS)]


def assign_levels(rows: Iterable[Feedback], cfg: LevelsConfig) -> list[Feedback]:
    """The rows with ``level`` set: from the feedback, or at random (``cfg.assign``)."""
    if cfg.assign == "random":
        return [row.model_copy(update={"level": random_level(row.problem_id, cfg.random_seed)}) for row in rows]
    return [row.model_copy(update={"level": assign_level(row, cfg)}) for row in rows]
