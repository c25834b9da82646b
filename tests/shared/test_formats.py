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


def _json(tmp_path: Path, data: object, name: str = "pairs.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data, indent=2))
    return path


GOOD, BAD = "def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a - b\n"


def test_pairs_as_a_published_json_array(tmp_path: Path) -> None:
    path = _json(tmp_path, [
        {"instruction": "Add two numbers.", "response": [GOOD, BAD]},
        {"instruction": "Add two numbers.", "input": "Use +.", "responses": [GOOD, BAD, "pass"]},
    ])
    pairs = read_pairs(path)
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [
        ("Add two numbers.", GOOD, [BAD]), ("Add two numbers.\nUse +.", GOOD, [BAD, "pass"])]
    assert [p.problem_id for p in pairs] == ["pair-1", "pair-2"]
    # the same array gzipped, and an empty array
    gz = tmp_path / "pairs.json.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(path.read_text())
    assert read_pairs(gz) == pairs
    assert read_pairs(_json(tmp_path, [], "empty.json")) == []


def test_pairs_in_trl_preference_forms(tmp_path: Path) -> None:
    user = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "Add two numbers."}]
    path = lines(
        tmp_path,
        json.dumps({"prompt": "Add two numbers.", "chosen": GOOD, "rejected": BAD}),  # standard
        json.dumps({"prompt": user, "chosen": [{"role": "assistant", "content": GOOD}],  # conversational
                    "rejected": [{"role": "assistant", "content": BAD}]}),
        json.dumps({"chosen": [*user, {"role": "assistant", "content": GOOD}],  # implicit prompt
                    "rejected": [*user, {"role": "assistant", "content": [{"type": "text", "text": BAD}]}]}),
    )
    pairs = read_pairs(path)
    assert [p.prompt for p in pairs] == ["Add two numbers.", "You write Python.\n\nAdd two numbers.",
                                         "You write Python.\n\nAdd two numbers."]
    assert all(p.chosen == GOOD and p.rejected == [BAD] for p in pairs)


def test_pairs_in_llama_factory_forms(tmp_path: Path) -> None:
    path = _json(tmp_path, [
        {"instruction": "Add two numbers.", "input": "", "chosen": GOOD, "rejected": BAD},  # Alpaca
        {"conversations": [{"from": "human", "value": "Add two numbers."}],  # ShareGPT
         "chosen": {"from": "gpt", "value": GOOD}, "rejected": {"from": "gpt", "value": BAD}},
    ])
    pairs = read_pairs(path)
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [("Add two numbers.", GOOD, [BAD])] * 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([{"instruction": "x", "response": [GOOD, BAD]}, {"instruction": "y", "response": [GOOD]}],
         'pairs.json:9: record 2: field "response": expected [correct, faulty]'),
        ([{"instruction": "x", "response": [GOOD, BAD]}, "just text"],
         "pairs.json:9: record 2: expected a JSON object, got str"),
        ([{"prompt": "x", "chosen": [{"role": "user", "content": "hi"}], "rejected": BAD}],
         "record 1: field \"chosen\": the last message must be the assistant's answer"),
        ([{"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                      {"role": "user", "content": "c"}], "chosen": GOOD, "rejected": BAD}],
         'record 1: field "prompt": expected one user turn'),
        ([{"conversations": [{"from": "robot", "value": "x"}], "chosen": GOOD}],
         "record 1: field \"conversations[0]\": unknown message role 'robot'"),
        ([{"chosen": GOOD, "rejected": BAD}], 'record 1: missing "instruction"'),
        ([{"instruction": "x", "output": GOOD}], 'record 1: missing "responses"'),
        ([{"problem_id": "q", "prompt": "p", "chosen": GOOD, "weight": "heavy"}], 'record 1: field "weight"'),
    ],
)
def test_bad_pairs_are_named_by_file_and_record(tmp_path: Path, data: list[object], message: str) -> None:
    with pytest.raises(DataError) as err:
        read_pairs(_json(tmp_path, data))
    assert message in str(err.value)
    assert err.value.record is not None


def test_broken_json_array_names_the_place(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[\n {"instruction": "x", "response": ["a", "b"]},\n {"instruction": "y", oops}\n]\n')
    with pytest.raises(DataError, match=r"broken.json:3: record 2: invalid JSON"):
        read_pairs(path)
    path.write_text('[{"instruction": "x", "response": ["a", "b"]}] trailing')
    with pytest.raises(DataError, match=r"broken.json:1: invalid JSON: extra data after the array"):
        read_pairs(path)


def test_problems_and_samples_as_json_arrays(tmp_path: Path) -> None:
    problems = read_problems(_json(tmp_path, [{"id": "q1", "prompt": "Add.", "tests": "assert add(1, 2) == 3"}],
                                   "problems.json"))
    assert [p.id for p in problems] == ["q1"]
    samples = read_samples(_json(tmp_path, [{"task_id": "q1", "completion": "x"}], "samples.json"))
    assert [(s.problem_id, s.sample_id) for s in samples] == [("q1", "q1#0")]
    with pytest.raises(DataError, match=r'samples.json:2: record 1: missing "completion"'):
        read_samples(_json(tmp_path, [{"task_id": "q1"}], "samples.json"))
