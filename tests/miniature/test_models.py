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
