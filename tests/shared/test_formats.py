"""Readers for our formats and the public ones; bad input names the file and the line."""

import gzip
import json
from pathlib import Path

import pytest

from iterkd.shared.formats import (
    DataError,
    Problem,
    Sample,
    load_humaneval,
    load_mbpp,
    read_jsonl,
    read_pairs,
    read_problems,
    read_samples,
    write_jsonl,
)

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_mbpp = pytest.mark.skipif(
    not (SHARED_DATA / "mbpp.jsonl").exists(), reason=f"MBPP data not found at {SHARED_DATA} (not in a user's clone)"
)


def lines(tmp_path: Path, *rows: str, name: str = "in.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n")
    return path


def test_humaneval_from_the_package() -> None:
    problems = load_humaneval()
    assert len(problems) == 164
    first = problems[0]
    assert first.id == "HumanEval/0" and first.entry_point == "has_close_elements"
    assert first.harness == "humaneval" and "def check(candidate)" in first.tests


@needs_mbpp
def test_mbpp_original_and_sanitized() -> None:
    full = load_mbpp(SHARED_DATA / "mbpp.jsonl")
    assert len(full) == 974 and full[0].id == "1"
    assert len(load_mbpp(SHARED_DATA / "mbpp.jsonl", split="test")) == 500
    sanitized = load_mbpp(SHARED_DATA / "sanitized-mbpp.json")
    assert len(sanitized) == 427
    assert all(p.entry_point for p in full)
    by_id = {p.id: p for p in full}
    assert "assert " in by_id["11"].tests and by_id["11"].harness == "mbpp"
    with pytest.raises(DataError, match="unknown MBPP split"):
        load_mbpp(SHARED_DATA / "mbpp.jsonl", split="dev")


def test_read_problems_detects_format(tmp_path: Path) -> None:
    ours = Problem(id="q1", prompt="Add.", entry_point="add", tests="assert add(1, 2) == 3")
    write_jsonl(tmp_path / "ours.jsonl", [ours])
    assert read_problems(tmp_path / "ours.jsonl") == [ours]
    he = {"task_id": "T/0", "prompt": "def f():\n", "test": "def check(c): pass", "entry_point": "f"}
    gz = tmp_path / "he.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(json.dumps(he) + "\n")
    assert read_problems(gz)[0].harness == "humaneval"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (['{"id": "a", "prompt": "p", "tests": "t"}', "{oops"], "in.jsonl:2: invalid JSON"),
        (['{"id": "a", "prompt": "p"}'], 'in.jsonl:1: missing "tests"'),
        (['{"id": "a", "prompt": "p", "tests": "t"}', "", '{"id": "a", "prompt": "q", "tests": "t"}'],
         'in.jsonl:3: duplicate id "a" (first on line 1)'),
        (['["a list"]'], "in.jsonl:1: expected a JSON object"),
        (['{"id": "a", "prompt": "p", "tests": "t", "harness": "apps"}'], 'in.jsonl:1: field "harness"'),
    ],
)
def test_bad_problem_files(tmp_path: Path, rows: list[str], message: str) -> None:
    with pytest.raises(DataError) as err:
        read_problems(lines(tmp_path, *rows))
    assert message in str(err.value)


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="absent.jsonl: no such file"):
        read_samples(tmp_path / "absent.jsonl")


def test_samples_in_human_eval_format_get_ids(tmp_path: Path) -> None:
    path = lines(tmp_path, '{"task_id": "HumanEval/1", "completion": "a"}',
                 '{"task_id": 7, "completion": "b"}', '{"task_id": "HumanEval/1", "completion": "c"}')
    samples = read_samples(path)
    assert [(s.problem_id, s.sample_id) for s in samples] == [
        ("HumanEval/1", "HumanEval/1#0"), ("7", "7#0"), ("HumanEval/1", "HumanEval/1#1")]
    with pytest.raises(DataError, match='in.jsonl:1: missing "completion"'):
        read_samples(lines(tmp_path, '{"task_id": "x"}'))


def test_pairs_in_published_forms(tmp_path: Path) -> None:
    path = lines(
        tmp_path,
        '{"instruction": "Add two numbers.", "responses": '
        '["def add(a, b):\\n    return a + b", "def add(a, b):\\n    return a - b"]}',
        '{"prompt": "Negate.", "chosen": "def neg(x): return -x", "rejected": "def neg(x): return x"}',
        '{"problem_id": "q", "prompt": "p", "chosen": "c", "rejected": ["r1", "r2"], "weight": 2}',
    )
    pairs = read_pairs(path)
    assert [len(p.rejected) for p in pairs] == [1, 1, 2]
    assert pairs[0].chosen.endswith("a + b") and pairs[2].weight == 2
    with pytest.raises(DataError, match='in.jsonl:1: field "responses"'):
        read_pairs(lines(tmp_path, '{"instruction": "x", "responses": ["only one"]}'))


def test_write_is_atomic_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    write_jsonl(target, [Sample(problem_id="p", sample_id="s", completion="c")])

    def rows():
        yield Sample(problem_id="p", sample_id="s2", completion="c")
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError):
        write_jsonl(target, rows())
    assert [s.sample_id for s in read_jsonl(Sample, target)] == ["s"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_bad_mbpp_records_name_the_line(tmp_path: Path) -> None:
    bad_id = lines(tmp_path, '{"task_id": "x", "text": "t", "code": "c", "test_list": ["assert 1"]}', name="m.jsonl")
    with pytest.raises(DataError, match='m.jsonl:1: field "task_id": expected an integer'):
        load_mbpp(bad_id)
    bad_tests = lines(tmp_path, '{"task_id": 3, "text": "t", "code": "c", "test_list": "assert 1"}', name="n.jsonl")
    with pytest.raises(DataError, match='n.jsonl:1: field "test_list"'):
        load_mbpp(bad_tests)


def test_non_utf8_artifact_is_a_data_error() -> None:
    from iterkd.shared.formats import loads_jsonl

    with pytest.raises(DataError, match="s3://b/x.jsonl: not UTF-8"):
        loads_jsonl(Sample, b"\xff\xfe{}", "s3://b/x.jsonl")
