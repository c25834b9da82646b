"""Structured logs: one JSON object per line with the event's fields."""

import io
import json
import logging

import pytest

from iterkd.shared.log import event, get_logger, setup_logging


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger("iterkd")
    saved = (root.handlers[:], root.level, root.propagate)
    yield
    root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]


def test_json_lines_carry_fields() -> None:
    out = io.StringIO()
    setup_logging("INFO", "json", stream=out)
    log = get_logger("controller")
    event(log, "stage", run="r1", cycle=2, stage="train", state="done", duration_s=1.5, name="clash")
    log.debug("hidden")
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("failed")
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(rows) == 2
    first = rows[0]
    assert first["logger"] == "iterkd.controller" and first["msg"] == "stage" and first["level"] == "INFO"
    assert (first["run"], first["cycle"], first["stage"], first["state"]) == ("r1", 2, "train", "done")
    assert first["name_"] == "clash"  # a field named like a LogRecord attribute is kept, renamed
    assert "ValueError: bad" in rows[1]["exc"]


def test_text_format_for_humans() -> None:
    out = io.StringIO()
    setup_logging("DEBUG", "text", stream=out)
    event(get_logger("iterkd.x"), "hello", level=logging.WARNING, n=3)
    line = out.getvalue().strip()
    assert "WARNING" in line and "iterkd.x: hello" in line and line.endswith("n=3")
