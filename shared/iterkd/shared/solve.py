"""Solving a problem set: the one implementation behind the teacher's and the trainer's Solve RPCs
and the question service's validation answers.

A solve renders each problem with the solve template, asks a generator for ``params.n`` texts per
prompt, extracts the code of each text and (for the RPC) writes one :class:`Sample` row per text.
The generator is any callable ``(prompts, params) -> texts per prompt``: a teacher backend, the
trainer's student, or a :class:`~iterkd.shared.inference.TextGenerator`.

The Solve RPC owns its stage (:mod:`iterkd.shared.stages`): the folder of ``samples_uri`` is the
stage prefix; the samples go there first and ``_manifest.json`` last, recording the problems'
sha256 (and the served checkpoint's, for a student), the effective generation parameters, the
template, the chat flag, ``include_references`` and the model. A repeated identical request
returns the stored result (``cached``) without generating; a different one is refused
(FAILED_PRECONDITION); a Solve that dies leaves no manifest.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from iterkd.shared.errors import BadRequest, require
from iterkd.shared.formats import DataError, Problem, Sample, read_problems
from iterkd.shared.generation import GenerationLimits, sampling_params
from iterkd.shared.inference import SamplingParams
from iterkd.shared.log import event, get_logger
from iterkd.shared.prompts import check_template, extract_code, render_solve_prompt
from iterkd.shared.stages import BY_NAME, STAGES, StageManifest, begin_stage, evaluate_step, stage_lock
from iterkd.shared.store import ArtifactStore
from iterkd.v1 import common_pb2

log = get_logger("iterkd.solve")

# (prompts, params) -> params.n texts per prompt, in prompt order.
Generate = Callable[[Sequence[str], SamplingParams], Sequence[Sequence[str]]]
REFERENCE_MODEL = "reference"


def render_prompts(problems: Sequence[Problem], template: str) -> list[str]:
    return [render_solve_prompt(p, template) for p in problems]


def solve_answers(problems: Sequence[Problem], generate: Generate, params: SamplingParams, template: str,
                  batch_size: int | None = None) -> list[list[str]]:
    """Each problem's answers (the code extracted from each text), in sample order; the prompts go
    to ``generate`` ``batch_size`` at a time (all at once when None)."""
    prompts = render_prompts(problems, template)
    step = batch_size or max(1, len(prompts))
    out: list[list[str]] = []
    for start in range(0, len(prompts), step):
        texts = generate(prompts[start:start + step], params)
        for problem, row in zip(problems[start:start + step], texts):
            out.append([extract_code(t, problem.entry_point or None) for t in row])
    return out


def sample_rows(problems: Sequence[Problem], answers: Sequence[Sequence[str]], model: str,
                include_references: bool = False) -> list[Sample]:
    """One Sample per answer (``{id}#{i}``), then each problem's reference solution (``{id}#ref``,
    model ``reference``) where asked and the problem has one."""
    rows = [Sample(problem_id=p.id, sample_id=f"{p.id}#{i}", model=model, completion=code)
            for p, codes in zip(problems, answers) for i, code in enumerate(codes)]
    if include_references:
        rows += [Sample(problem_id=p.id, sample_id=f"{p.id}#ref", model=REFERENCE_MODEL,
                        completion=p.canonical_solution)
                 for p in problems if p.canonical_solution]
    return rows


def read_store_problems(store: ArtifactStore, key: str) -> list[Problem]:
    """Problems at ``key`` in any format :func:`~iterkd.shared.formats.read_problems` accepts
    (ours, HumanEval's, MBPP's); errors name the URI."""
    with tempfile.TemporaryDirectory(prefix="iterkd-problems-") as tmp:
        path = Path(tmp) / (key.rsplit("/", 1)[-1] or "problems.jsonl")
        store.get_file(key, path)
        try:
            return read_problems(path)
        except DataError as exc:
            raise DataError(store.uri(key), exc.line, exc.message) from None


def solve_stage(prefix: str, own_stage: str) -> tuple[str, str | None]:
    """The (stage, step) a Solve into ``prefix`` owns: the folder's stage where it is a solve
    stage, ``evaluate`` with its step for a solve folder of evaluate (``<...>/evaluate/solve``, the
    baseline's ``<...>/evaluate/base/solve``: :func:`iterkd.shared.stages.evaluate_step`), else the
    service's own stage."""
    parts = prefix.split("/")
    step = evaluate_step(prefix)
    if step is not None and step.endswith("solve"):
        return "evaluate", step
    if parts[-1] in STAGES:
        require(BY_NAME[parts[-1]].rpc == "Solve",
                f"samples_uri: {prefix} is the folder of the {parts[-1]!r} stage, which a Solve does not write; "
                f"write samples under .../teacher-solve/, .../student-solve/ or .../evaluate/solve/")
        return parts[-1], None
    return own_stage, None


@dataclass(frozen=True)
class SolveSettings:
    """A service's side of Solve: its own stage name, configured prompt format and limits."""

    stage: str
    template: str
    use_chat_template: bool
    limits: GenerationLimits


def _response(manifest: StageManifest, name: str, cached: bool) -> common_pb2.SolveResponse:
    entry = manifest.outputs[name]
    return common_pb2.SolveResponse(
        samples=common_pb2.ArtifactRef(uri=entry.uri, sha256=entry.sha256),
        problems=int(manifest.metrics.get("problems", 0)), samples_written=int(manifest.metrics.get("samples", 0)),
        duration_s=manifest.duration_s, cached=cached)


def solve_rpc(store: ArtifactStore | None, request: common_pb2.SolveRequest, settings: SolveSettings, *,
              model: str, generate: Generate, inputs: dict[str, str] | None = None) -> common_pb2.SolveResponse:
    """Serve one SolveRequest as a stage (see the module docstring). ``inputs`` are further stage
    inputs by store key (the trainer's served checkpoint as ``checkpoint``)."""
    require(store is not None, "this service has no artifact store configured")
    assert store is not None
    require(request.problems_uri != "", "problems_uri must be set")
    require(request.samples_uri != "", "samples_uri must be set")
    problems_key = store.resolve(request.problems_uri)
    samples_key = store.resolve(request.samples_uri)
    prefix, _, name = samples_key.rpartition("/")
    require(prefix != "", f"samples_uri: {request.samples_uri} must name a file in a folder (the stage's folder)")
    template = request.prompt_template or settings.template
    try:
        check_template(template, "prompt_template")
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    require(request.HasField("params"), "params must be set")
    params = sampling_params(request.params, settings.limits,
                             request.params.use_chat_template or settings.use_chat_template)
    stage, step = solve_stage(prefix, settings.stage)
    config = {**asdict(params), "template": template, "include_references": request.include_references,
              "model": model, "samples": name}
    run_id = request.run.run_id or None
    with stage_lock(store, prefix):
        owned = begin_stage(store, prefix, stage, inputs={"problems": problems_key, **(inputs or {})},
                            config=config, run_id=run_id, cycle=request.run.cycle if run_id else None, step=step)
        if isinstance(owned, StageManifest):
            event(log, "solve reused", prefix=prefix, stage=stage)
            return _response(owned, name, cached=True)
        t0 = time.monotonic()
        problems = read_store_problems(store, problems_key)
        require(bool(problems), f"problems_uri: no problems in {request.problems_uri}")
        answers = solve_answers(problems, generate, params, template)
        rows = sample_rows(problems, answers, model, request.include_references)
        owned.put_jsonl(name, rows)
        owned.metrics.update({"problems": len(problems), "samples": len(rows),
                              "references": len(rows) - sum(len(a) for a in answers)})
        manifest = owned.commit()
        event(log, "solved", prefix=prefix, stage=stage, problems=len(problems), samples=len(rows), model=model,
              duration_s=round(time.monotonic() - t0, 3))
        return _response(manifest, name, cached=False)
