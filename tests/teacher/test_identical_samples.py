"""The teacher warns once per backend when n > 1 samples at temperature > 0 all come back the same
(a server that does not sample gives no faulty answers to contrast)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from iterkd.shared.inference import SamplingParams
from iterkd.shared.sampling import GenOutput
from iterkd.teacher.backends import Backend, BackendInfo


class Scripted(Backend):
    """Answers every sample with ``texts(prompt_index, sample_index)``."""

    name = "scripted"

    def __init__(self, distinct: bool) -> None:
        self.distinct = distinct

    def info(self) -> BackendInfo:
        return BackendInfo("scripted", self.name, 0, False)

    def _iter_generate(self, prompts: Sequence[str], params: SamplingParams, cancelled: Any,
                       deadline: float | None) -> Iterator[tuple[int, int, GenOutput]]:
        for j in range(len(prompts)):
            for i in range(params.n):
                text = f"answer {j}.{i}" if self.distinct else f"answer {j}"
                yield j, i, GenOutput(text, "eos", 2, i)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    # the handler may see a record twice (through "iterkd" and through the root logger): count each once
    unique = {id(r): r for r in caplog.records if r.name == "iterkd.teacher.backends" and r.levelno == logging.WARNING}
    return list(unique.values())


@pytest.fixture
def caplog_iterkd(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    logger = logging.getLogger("iterkd")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.WARNING, logger="iterkd.teacher.backends")
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


def test_identical_samples_warn_once_per_backend(caplog_iterkd: pytest.LogCaptureFixture) -> None:
    backend = Scripted(distinct=False)
    sampling = SamplingParams(n=3, temperature=1.0)
    out = backend.generate(["a", "b"], sampling)
    assert [[o.text for o in row] for row in out] == [["answer 0"] * 3, ["answer 1"] * 3]  # passed through
    [record] = warnings_of(caplog_iterkd)
    assert "3 identical samples" in record.getMessage() and "temperature 1" in record.getMessage()
    backend.generate(["a"], sampling)
    list(backend.iter_generate(["a"], sampling))
    assert len(warnings_of(caplog_iterkd)) == 1  # once per backend instance
    Scripted(distinct=False).generate(["a"], sampling)
    assert len(warnings_of(caplog_iterkd)) == 2  # a new backend warns again


@pytest.mark.parametrize(("distinct", "params"), [
    (True, SamplingParams(n=3, temperature=1.0)),  # samples differ
    (False, SamplingParams(n=3, temperature=0.0)),  # greedy: identical is right
    (False, SamplingParams(n=1, temperature=1.0)),  # one sample: nothing to compare
])
def test_no_warning_when_identical_is_expected_or_false(caplog_iterkd: pytest.LogCaptureFixture, distinct: bool,
                                                        params: SamplingParams) -> None:
    Scripted(distinct=distinct).generate(["a", "b"], params)
    assert warnings_of(caplog_iterkd) == []


def test_real_local_model_samples_differ_and_stay_quiet(tiny_model_dir: Any,
                                                       caplog_iterkd: pytest.LogCaptureFixture) -> None:
    from iterkd.teacher.backends import HFBackend
    from iterkd.teacher.config import TeacherConfig

    backend = HFBackend(TeacherConfig(backend="hf", model=str(tiny_model_dir), device="cpu"))
    [row] = backend.generate(["def add(a, b):\n"], SamplingParams(n=4, max_new_tokens=6, temperature=1.0, seed=1))
    assert len({o.text for o in row}) == 4
    assert warnings_of(caplog_iterkd) == []
