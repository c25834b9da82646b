"""The static view: real pylint in-process (and ruff when installed)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from iterkd.feedback.static import StaticAnalyzer, pylint_score, static_code
from iterkd.shared.formats import Problem, load_humaneval

CLEAN = '''def add(first, second):
    """Return the sum of two numbers."""
    return first + second
'''

MESSY = '''import os
def f( x ):
  y=1
  return x
'''


@pytest.fixture(scope="module")
def analyzer() -> StaticAnalyzer:
    a = StaticAnalyzer(batch_size=16)
    yield a
    a.close()


def symbols(report) -> set[str]:
    return {m["symbol"] for m in report.messages}


def test_clean_code_scores_ten_and_messy_code_is_penalised(analyzer: StaticAnalyzer) -> None:
    clean, messy = analyzer.analyze([CLEAN, MESSY])
    assert clean.pylint_score == 10.0 and clean.messages == []
    assert clean.statements == 2
    assert {"unused-import", "unused-variable", "bad-indentation", "missing-function-docstring"} <= symbols(messy)
    # 3 warnings x2 (unused-import, unused-variable, bad-indentation twice) + 1 convention over 4 statements
    assert messy.pylint_score == 0.0
    lines = {m["symbol"]: m["line"] for m in messy.messages}
    assert lines["unused-import"] == 1 and lines["unused-variable"] == 3
    assert all(m["tool"] == "pylint" and re.fullmatch(r"[CRWEFI]\d{4}", m["message_id"]) for m in messy.messages)


def test_score_follows_pylints_formula() -> None:
    assert pylint_score(0, 0, 0, 0, 0, 10) == 10.0
    assert pylint_score(0, 1, 0, 0, 0, 10) == 5.0  # an error weighs 5
    assert pylint_score(0, 0, 1, 1, 1, 10) == 7.0
    assert pylint_score(1, 0, 0, 0, 0, 10) == 0.0  # fatal
    assert pylint_score(0, 0, 50, 0, 0, 10) == 0.0  # clamped
    assert pylint_score(0, 0, 0, 0, 0, 0) == 0.0  # nothing to credit


def test_partial_score_matches_the_pylint_command(analyzer: StaticAnalyzer, tmp_path: Path) -> None:
    code = '''"""Module."""


def total(values):
    """Sum."""
    result = 0
    for v in values:
        result += v
    unused = 3
    return result
'''
    [report] = analyzer.analyze([code])
    assert 0 < report.pylint_score < 10
    path = tmp_path / "one.py"
    path.write_text(code)
    rc = tmp_path / "empty.rc"
    rc.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "pylint", str(path), f"--rcfile={rc}", "--persistent=n", "--score=y",
         f"--disable={','.join(analyzer.disable)}"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    rated = re.search(r"rated at (-?[\d.]+)/10", proc.stdout)
    assert rated, proc.stdout + proc.stderr
    assert report.pylint_score == pytest.approx(float(rated.group(1)), abs=0.005)


def test_syntax_error_scores_zero_with_a_message(analyzer: StaticAnalyzer) -> None:
    broken, nul = analyzer.analyze(["def f(:\n    return 1\n", "x = 1\x00\n"])
    assert broken.pylint_score == 0.0
    assert [m["symbol"] for m in broken.messages] == ["syntax-error"]
    assert broken.messages[0]["line"] == 1 and broken.messages[0]["type"] == "error"
    assert nul.pylint_score == 0.0 and symbols(nul) == {"syntax-error"}


def test_batches_reusing_file_names_do_not_see_stale_trees() -> None:
    # Both batches write a_0000.py and a_0001.py into the same folder; without clearing astroid's
    # cache, the second batch would be checked against the first batch's trees.
    a = StaticAnalyzer(batch_size=8)
    try:
        first = a.analyze([CLEAN, "import os\n"])
        second = a.analyze(["import sys\n", CLEAN])
    finally:
        a.close()
    assert first[0].pylint_score == 10.0 and symbols(first[1]) == {"unused-import"}
    assert symbols(second[0]) == {"unused-import"} and "sys" in second[0].messages[0]["message"]
    assert second[1].pylint_score == 10.0 and second[1].messages == []


def test_batched_and_one_by_one_agree() -> None:
    problems = load_humaneval()[:4]
    codes = [p.prompt + (p.canonical_solution or "") for p in problems] + [MESSY, "def f(:\n"]
    batched = StaticAnalyzer(batch_size=64)
    single = StaticAnalyzer(batch_size=1)
    try:
        a = batched.analyze(codes)
        b = single.analyze(codes)
    finally:
        batched.close()
        single.close()
    assert [r.pylint_score for r in a] == [r.pylint_score for r in b]
    assert [r.messages for r in a] == [r.messages for r in b]
    assert len({r.pylint_score for r in a}) > 2  # the scores actually vary


def test_concurrent_callers_get_their_own_results(analyzer: StaticAnalyzer) -> None:
    out: dict[int, list] = {}

    def work(i: int) -> None:
        out[i] = analyzer.analyze([CLEAN, MESSY] if i % 2 == 0 else [MESSY, CLEAN])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, reports in out.items():
        expected = [10.0, 0.0] if i % 2 == 0 else [0.0, 10.0]
        assert [r.pylint_score for r in reports] == expected
    assert len(out) == 4


def test_static_code_is_the_whole_function_for_humaneval() -> None:
    he = Problem(id="p", prompt="def f(x):\n    \"\"\"Doc.\"\"\"\n", tests="", harness="humaneval")
    mbpp = Problem(id="q", prompt="Write f.", tests="assert f(1) == 1", harness="mbpp")
    assert static_code(he, "    return x\n") == 'def f(x):\n    """Doc."""\n    return x\n'
    assert static_code(mbpp, "def f(x):\n    return x\n") == "def f(x):\n    return x\n"


def test_ruff_view() -> None:
    a = StaticAnalyzer(batch_size=8, ruff=True)
    try:
        if not a.ruff_available:
            pytest.skip("no ruff binary installed")
        clean, messy, broken = a.analyze([CLEAN, MESSY, "def f(:\n"])
    finally:
        a.close()
    assert clean.ruff_messages == []
    codes = {m["message_id"] for m in messy.ruff_messages or []}
    assert {"F401", "F841"} <= codes
    assert all(m["tool"] == "ruff" for m in messy.ruff_messages or [])
    assert broken.ruff_messages and broken.ruff_messages[0]["symbol"] == "syntax-error"


def test_missing_ruff_is_skipped_with_a_note(tmp_path: Path) -> None:
    a = StaticAnalyzer(batch_size=8, ruff=True, ruff_bin=str(tmp_path / "no-ruff"))
    try:
        [report] = a.analyze([CLEAN])
        [plain] = a.analyze([CLEAN], ruff=False)
    finally:
        a.close()
    assert report.ruff_messages is None
    assert any("ruff skipped" in n for n in report.notes)
    assert report.pylint_score == 10.0
    assert plain.notes == []


def test_a_call_does_not_see_what_earlier_answers_did_to_shared_modules() -> None:
    # astroid records ``math.extra = 1`` on its (cached) math module; every batch starts from the warm
    # process's pristine state, so a later call still finds no such member.
    a = StaticAnalyzer(batch_size=8, jobs=1)
    try:
        a.analyze(["import math\nmath.extra = 1\n"])
        later = a.analyze(["import math\n\nprint(math.extra)\n"])
    finally:
        a.close()
    assert "no-member" in symbols(later[0])


def test_a_killed_warm_process_is_replaced() -> None:
    a = StaticAnalyzer(batch_size=8)
    try:
        first = a.analyze([CLEAN])
        a._warm[0].kill()  # the warm pylint process
        a._warm[0].wait(10)
        again = a.analyze([CLEAN, "import os\n"])
    finally:
        a.close()
    assert first[0].pylint_score == 10.0 and again[0].pylint_score == 10.0
    assert symbols(again[1]) == {"unused-import"}
