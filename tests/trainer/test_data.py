"""Training-set building, reading (ours and pairwise), tokenisation and the bad-set errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iterkd.shared.formats import DataError, Problem, Sample, TrainingExample, Verdict
from iterkd.shared.prompts import render_solve_prompt
from iterkd.shared.store import LocalStore
from iterkd.trainer.data import build_examples, collate, encode_examples, load_train_set
from iterkd.trainer.losses import IGNORE_INDEX


def _problem(pid: str) -> Problem:
    return Problem(id=pid, prompt=f"def {pid}(x):\n    '''doc'''\n", entry_point=pid, tests="assert True")


def test_build_examples_counts_and_pairs() -> None:
    problems = [_problem("p1"), _problem("p2"), _problem("p3")]
    samples = [
        Sample(problem_id="p1", sample_id="a", completion="good1"),
        Sample(problem_id="p1", sample_id="b", completion="bad1"),
        Sample(problem_id="p1", sample_id="c", completion="bad2"),
        Sample(problem_id="p1", sample_id="d", completion="good2"),
        Sample(problem_id="p2", sample_id="e", completion="good"),   # no failing answer
        Sample(problem_id="p3", sample_id="f", completion="bad"),    # no passing answer
        Sample(problem_id="p3", sample_id="g", completion="??"),     # no verdict
        Sample(problem_id="zz", sample_id="h", completion="x"),      # unknown problem
    ]
    verdicts = [Verdict(sample_id=s, problem_id=p, passed=ok, result="r") for s, p, ok in [
        ("a", "p1", True), ("b", "p1", False), ("c", "p1", False), ("d", "p1", True), ("e", "p2", True),
        ("f", "p3", False)]]
    examples, counts = build_examples(problems, samples, verdicts, template="Q: {prompt}")
    assert counts == {"problems": 3, "with_pass": 2, "sft_examples": 3, "contrastive_pairs": 4, "no_pass": 1,
                      "no_fail": 1, "unverified": 1, "unknown_problem": 1}
    by = [(e.problem_id, e.chosen, e.rejected) for e in examples]
    assert by == [("p1", "good1", ["bad1", "bad2"]), ("p1", "good2", ["bad1", "bad2"]), ("p2", "good", [])]
    assert examples[0].prompt == render_solve_prompt(problems[0], "Q: {prompt}")
    one, c1 = build_examples(problems, samples, verdicts, max_chosen=1)
    assert [e.chosen for e in one] == ["good1", "good"] and c1["contrastive_pairs"] == 2


def test_load_train_set_accepts_pairwise_data(store: LocalStore) -> None:
    rows = [
        {"instruction": "add", "responses": ["return a + b", "return a - b"]},
        {"prompt": "mul", "chosen": "return a * b", "rejected": "return a + b"},
        {"problem_id": "p", "prompt": "sub", "chosen": "return a - b", "rejected": ["x", "y"], "weight": 2.0},
    ]
    store.put_bytes("sets/pairs.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    got = load_train_set(store, "sets/pairs.jsonl")
    assert [(e.prompt, e.chosen, e.rejected, e.weight) for e in got] == [
        ("add", "return a + b", ["return a - b"], 1.0),
        ("mul", "return a * b", ["return a + b"], 1.0),
        ("sub", "return a - b", ["x", "y"], 2.0),
    ]


@pytest.mark.parametrize(("content", "message"), [
    (b"", "training set is empty"),
    (b"\n\n", "training set is empty"),
    (b'{"problem_id": "p1", "chosen": "x"}\n', 'missing "prompt"'),
    (b'{"responses": ["a", "b"]}\n', 'missing "instruction"'),
    (b'{"instruction": "q", "responses": ["only one"]}\n', "expected [correct, faulty]"),
    (b'{"problem_id": "p9", "prompt": "q", "rejected": ["bad"]}\n', "problem 'p9'): no chosen"),
    (b'{"problem_id": "p1", "prompt": "q", "chosen": "x"}\nnot json\n', ":2: invalid JSON"),
])
def test_bad_training_sets_get_clear_errors(store: LocalStore, content: bytes, message: str) -> None:
    store.put_bytes("sets/bad.jsonl", content)
    with pytest.raises(DataError) as info:
        load_train_set(store, "sets/bad.jsonl")
    assert message in str(info.value)
    assert "sets/bad.jsonl" in str(info.value)


def test_prompt_longer_than_context_names_the_problem(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    long = TrainingExample(problem_id="huge-1", prompt="x = 1\n" * 200, chosen="pass")
    with pytest.raises(DataError, match=r"problem 'huge-1'.*longer than the context"):
        encode_examples(tok, [long], max_length=64, use_chat_template=False, max_rejected=0)


def test_encode_and_collate_mask_prompt_and_padding(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    exs = [TrainingExample(problem_id="a", prompt="Add.", chosen="return a + b", rejected=["return a - b"]),
           TrainingExample(problem_id="b", prompt="A longer question here.", chosen="pass", weight=2.0)]
    enc, stats = encode_examples(tok, exs, max_length=20, use_chat_template=True, max_rejected=4)
    assert stats.examples == 2 and stats.rejected_used == 1
    for e in enc:
        assert len(e.prompt_ids) + len(e.chosen_ids) <= 20
    assert enc[1].chosen_ids[-1] == tok.eos_token_id or stats.truncated > 0
    b = collate(enc, tok.pad_token_id, fault_weight=1.0)
    assert b.n_chosen == 2 and b.input_ids.shape[0] == 3
    assert b.rej_rows.tolist() == [[2], [0]] and b.rej_mask.tolist() == [[True], [False]]
    for row, e in enumerate([enc[0], enc[1]]):
        p = len(e.prompt_ids)
        assert (b.labels[row, :p] == IGNORE_INDEX).all()
        assert b.labels[row, p: p + len(e.chosen_ids)].tolist() == e.chosen_ids
        assert (b.labels[row, p + len(e.chosen_ids):] == IGNORE_INDEX).all()
        assert b.attention_mask[row].sum() == p + len(e.chosen_ids)
    assert b.weights.tolist() == [1.0, 2.0]
    assert b.token_weights is not None and float(b.token_weights[2].max()) == 2.0  # the '-' is upweighted


def test_load_train_set_reads_published_arrays_and_preference_files(store: LocalStore) -> None:
    """The trainer reads pairs through the shared reader: a JSON array as published, TRL messages."""
    store.put_bytes("sets/pairs.json", json.dumps([
        {"instruction": "add", "response": ["return a + b", "return a - b"]},
        {"prompt": [{"role": "user", "content": "mul"}], "chosen": [{"role": "assistant", "content": "return a * b"}],
         "rejected": [{"role": "assistant", "content": "return a + b"}]},
    ], indent=1).encode())
    got = load_train_set(store, "sets/pairs.json")
    assert [(e.prompt, e.chosen, e.rejected) for e in got] == [
        ("add", "return a + b", ["return a - b"]), ("mul", "return a * b", ["return a + b"])]
    store.put_bytes("sets/bad.json", b'[{"instruction": "add", "response": ["x", "y"]}, {"instruction": 3}]')
    with pytest.raises(DataError) as info:
        load_train_set(store, "sets/bad.json")
    assert "sets/bad.json:1: record 2:" in str(info.value)
