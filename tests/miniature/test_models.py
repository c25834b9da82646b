"""The miniature world's models: the quick preset builds, deterministically, into models that load
and generate with the services' engine; the training data is the services' exact prompts, the
teacher never sees a held-out or validation composition, the student only single steps."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from iterkd.questions.config import LEVELS, QuestionsConfig
from iterkd.questions.generate import parse_reply, render_generation_prompt
from iterkd.shared.miniature import world
from iterkd.shared.prompts import render_solve_prompt
from iterkd.teacher import miniature


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return miniature.build_miniature(tmp_path_factory.mktemp("mini") / "models", preset="quick", seed=0)


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name in ("model.safetensors", "tokenizer.json")}


def test_quick_build_loads_generates_and_is_deterministic(quick: Path, tmp_path: Path) -> None:
    from iterkd.shared.inference import SamplingParams
    from iterkd.torchkit.hf_generate import HFGenerator

    meta = json.loads((quick / miniature.METADATA_FILE).read_text())
    assert meta["teacher"]["params"] > meta["student"]["params"] > 0
    assert meta["teacher"]["train"]["steps"] == miniature.PRESETS["quick"].teacher_train.steps
    problems = world.export_split("heldout", 2, seed=0)
    for role in ("teacher", "student"):
        gen = HFGenerator(quick / role, device="cpu", dtype="float32")
        out = gen.generate([render_solve_prompt(p) for p in problems], SamplingParams(max_new_tokens=8))
        assert [len(row) for row in out] == [1, 1]
        # the prompt the model was trained on is the one the engine renders
        ex = miniature.solve_example(world.make_task(world.chain_of(problems[0].id), random.Random(0)))
        assert miniature.chat_text(gen.tokenizer, ex.prompt) == gen.render(ex.prompt, True)
    again = miniature.build_miniature(tmp_path / "again", preset="quick", seed=0)
    assert _digest(again) == _digest(quick)
    with pytest.raises(FileExistsError):
        miniature.build_miniature(quick, preset="quick", seed=0)


def test_teacher_data_is_the_services_prompts_and_never_heldout() -> None:
    spec = miniature.PRESETS["full"].teacher_train
    exs = miniature.examples(spec, 400, seed=3)
    kinds = {e.kind.split(":")[0] for e in exs}
    assert kinds == {"solve", "question"}
    for e in exs:
        assert world.split_of(e.chain) in ("primitives", "seed"), e.chain
        if e.kind == "solve":
            assert e.prompt.startswith("Solve the following Python programming problem.")
            continue
        level = e.kind.split(":")[1]
        assert world.split_of(e.parent) in ("primitives", "seed")
        q = parse_reply(e.answer, allow_no_tests=True)
        assert q is not None and q.solution and not q.tests
        if level == "mastered":
            assert len(e.chain) == len(e.parent) + 1
        elif level == "learning":
            assert len(e.chain) == len(e.parent) and e.chain != e.parent
        else:
            assert len(e.chain) == max(1, len(e.parent) - 1)
    assert {e.kind for e in exs if e.kind != "solve"} == {f"question:{lv}" for lv in LEVELS}


def test_question_requests_are_the_question_services_prompts() -> None:
    templates = QuestionsConfig().generation.templates
    rng = random.Random(5)
    for chain in [("keep_even",), *world.compositions(2, "seed")[:6], *world.compositions(3, "seed")[:6]]:
        parent = world.make_task(chain, rng)
        for level in LEVELS:
            ex = miniature.question_example(parent, level, rng)
            if ex is None:
                continue
            # what the question service sends for this parent, as the pool holds it
            problem = world.to_problem(parent, "mini/seed/x/0-0", "seed")
            assert ex.prompt == render_generation_prompt(problem, level, templates[level])


def test_student_data_is_single_steps_only() -> None:
    exs = miniature.examples(miniature.PRESETS["full"].student_train, 200, seed=0)
    assert all(e.kind == "solve" and len(e.chain) == 1 for e in exs)


def test_bucketed_batches_cover_every_example_once_with_less_padding() -> None:
    spec = miniature.TrainSpec(steps=40, batch_size=4, lr=1e-3, bucket=8)
    rng = random.Random(0)
    encoded = [([1] * rng.randint(5, 60), [2] * rng.randint(1, 20)) for _ in range(spec.steps * spec.batch_size)]
    bucketed = miniature._batches(encoded, spec, seed=1)
    plain = miniature._batches(encoded, miniature.TrainSpec(steps=40, batch_size=4, lr=1e-3), seed=1)
    assert len(bucketed) == len(plain) == spec.steps and all(len(b) == 4 for b in bucketed)
    assert sorted(map(id, (ex for b in bucketed for ex in b))) == sorted(map(id, encoded))
    assert bucketed == miniature._batches(encoded, spec, seed=1)  # deterministic for a seed

    def padded(batches: list) -> int:
        return sum(len(b) * max(len(p) + len(a) for p, a in b) for b in batches)

    assert padded(bucketed) < 0.8 * padded(plain)


def test_right_padding_needs_no_attention_mask_for_the_loss() -> None:
    """Bucketed training passes no attention mask: under a causal mask real tokens never see the
    right padding, so the loss on the answer tokens is the masked one."""
    import torch

    shape = miniature.PRESETS["quick"].teacher
    model = miniature._build_model(shape, 64, 1, seed=0)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 0, 0, 0]])
    mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]])
    labels = torch.tensor([[-100, -100, 7, 8, 9, 10], [-100, 12, 13, -100, -100, -100]])
    with torch.no_grad():
        masked = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        unmasked = model(input_ids=ids, attention_mask=None, labels=labels).loss
    torch.testing.assert_close(masked, unmasked)
