"""QuestionService: levels from feedback, new questions through the teacher, validation in the
feedback sandbox, deduplication, decontamination, the next pool.

Evolve, step by step (counts per level go into the response's LevelStats):

1. levels of the pool from its feedback (``problems``);
2. ``per_question[level]`` new questions asked of the teacher per problem (``asked``) and parsed
   (``parsed``; malformed replies are dropped);
3. decontamination against the evaluation sets (``contaminated``), then near-duplicates of the
   current pool (``duplicate``) - both cheap, before any execution;
4. execution checks in the sandbox (``valid``);
5. near-duplicates among the valid new questions, greedy in order (also ``duplicate``);
6. the next pool: problems not mastered (with this cycle's level) plus the new questions, capped
   at ``pool.max_size`` with at least ``min_new_fraction`` of it reserved for new questions when
   there are enough; new questions are taken round-robin over their parents so every parent gets
   one before any gets two (``kept``: new questions in the next pool).

Lineage: a new question has ``parent_id``, ``level`` (its parent's level: which operation made it),
``cycle`` (the cycle that made it) and ``source="teacher"``; a carried question keeps its origin and
gets this cycle's level (and this cycle as ``cycle`` if it had none).
Outputs (``next_pool.jsonl``, ``levels.jsonl``, ``rejected.jsonl``) and the stage manifest (last)
go into the folder of ``next_pool_uri``; a second Evolve with the manifest present returns it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from iterkd.questions.config import LEVELS, QuestionsConfig
from iterkd.questions.decontam import Decontaminator, build_decontaminator, mbpp_path_from_env, problem_text
from iterkd.questions.dedup import NearDuplicateIndex
from iterkd.questions.generate import Candidate, ask_teacher
from iterkd.questions.levels import assign_levels
from iterkd.questions.testgen import fill_tests
from iterkd.questions.validate import Executor, GrpcExecutor, validate
from iterkd.shared.config import merge_overrides
from iterkd.shared.errors import Unavailable, require
from iterkd.shared.formats import Feedback, Problem
from iterkd.shared.inference import GrpcGenerator, TextGenerator
from iterkd.shared.log import event, get_logger
from iterkd.shared.stages import StageManifest, StageWriter, begin_stage, stage_lock, stage_prefix
from iterkd.shared.store import ArtifactStore
from iterkd.v1 import common_pb2, questions_pb2, questions_pb2_grpc

log = get_logger("iterkd.questions")
# What a request may tune; targets and evaluation-set paths stay the operator's.
OVERRIDABLE = ("levels", "generation", "validation", "dedup", "pool")
STATS_FIELDS = ("problems", "asked", "parsed", "valid", "duplicate", "contaminated", "kept")


def _round_robin(items: Sequence[Candidate]) -> list[Candidate]:
    by_parent: dict[str, list[Candidate]] = defaultdict(list)
    for c in items:
        by_parent[c.parent_id].append(c)
    queues = list(by_parent.values())
    out: list[Candidate] = []
    depth = 0
    while len(out) < len(items):
        for q in queues:
            if depth < len(q):
                out.append(q[depth])
        depth += 1
    return out


class QuestionServicer(questions_pb2_grpc.QuestionServiceServicer):
    def __init__(self, cfg: QuestionsConfig, store: ArtifactStore,
                 generator_factory: Callable[[QuestionsConfig], TextGenerator] | None = None,
                 executor_factory: Callable[[QuestionsConfig], Executor] | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self._generator_factory = generator_factory or (
            lambda c: GrpcGenerator(c.teacher_target, timeout=c.generation.teacher_timeout_s))
        self._executor_factory = executor_factory or (
            lambda c: GrpcExecutor(c.feedback_target, c.validation.rpc_timeout_s, c.validation.max_batch))
        self._decontaminators: dict[str, Decontaminator] = {}
        self._lock = threading.Lock()

    # -- helpers --------------------------------------------------------------------------------
    def decontaminator(self, cfg: QuestionsConfig) -> Decontaminator:
        d = cfg.decontamination
        mbpp = d.mbpp_path or mbpp_path_from_env()
        key = json.dumps([d.ngram, d.code_ngram, d.idiom_df, d.humaneval, mbpp, d.mbpp_split, d.extra_sets])
        with self._lock:
            if key not in self._decontaminators:
                self._decontaminators[key] = build_decontaminator(
                    d.ngram, d.humaneval, mbpp, d.mbpp_split, d.extra_sets, d.code_ngram, d.idiom_df)
            return self._decontaminators[key]

    def _levels(self, feedback_uri: str, cfg: QuestionsConfig) -> list[Feedback]:
        require(bool(feedback_uri), "feedback_uri must be set")
        rows = self.store.get_jsonl(self.store.resolve(feedback_uri), Feedback)
        seen: set[str] = set()
        for row in rows:
            require(row.problem_id not in seen, f"{feedback_uri}: two feedback rows for problem {row.problem_id!r}")
            seen.add(row.problem_id)
        return assign_levels(rows, cfg.levels)

    # -- RPCs -----------------------------------------------------------------------------------
    def AssignLevels(self, request: questions_pb2.AssignLevelsRequest, context: Any) -> Any:
        rows = self._levels(request.feedback_uri, self.cfg)
        return questions_pb2.AssignLevelsResponse(
            levels=[questions_pb2.ProblemLevel(problem_id=r.problem_id, level=r.level or "") for r in rows])

    def Evolve(self, request: questions_pb2.EvolveRequest, context: Any) -> Any:
        t0 = time.monotonic()
        require(bool(request.pool_uri), "pool_uri must be set")
        require(bool(request.feedback_uri), "feedback_uri must be set")
        cfg = merge_overrides(self.cfg, request.config_json, "config_json", OVERRIDABLE)
        if request.next_pool_uri:
            pool_key = self.store.resolve(request.next_pool_uri)
        else:
            require(bool(request.run.run_id), "next_pool_uri or run.run_id must be set")
            pool_key = stage_prefix(request.run.run_id, request.run.cycle, "evolve") + "/next_pool.jsonl"
        prefix, _, pool_name = pool_key.rpartition("/")
        require(pool_name not in ("levels.jsonl", "rejected.jsonl", "_manifest.json"),
                f"next_pool_uri: {pool_name!r} is a name this stage uses for another output")
        with stage_lock(self.store, prefix):
            owned = begin_stage(
                self.store, prefix, "evolve", run_id=request.run.run_id or None, cycle=request.run.cycle,
                inputs={"pool": self.store.resolve(request.pool_uri),
                        "feedback": self.store.resolve(request.feedback_uri)},
                config={"next_pool": pool_name,  # the tuning fields only: addresses may change on a restart
                        **cfg.model_dump(mode="json", by_alias=True, include=set(OVERRIDABLE))})
            if isinstance(owned, StageManifest):
                event(log, "evolve already done", prefix=prefix)
                return self._response(owned.outputs, owned.extra.get("stats", []), owned.duration_s, cached=True)
            return self._evolve_stage(request, cfg, owned, pool_name, t0)

    def _evolve_stage(self, request: questions_pb2.EvolveRequest, cfg: QuestionsConfig, w: StageWriter,
                      pool_name: str, t0: float) -> Any:
        pool = self.store.get_jsonl(self.store.resolve(request.pool_uri), Problem)
        require(bool(pool), f"{request.pool_uri}: the pool is empty")
        ids = [p.id for p in pool]
        require(len(set(ids)) == len(ids), f"{request.pool_uri}: duplicate problem ids in the pool")
        levels = self._levels(request.feedback_uri, cfg)
        by_id = {p.id: p for p in pool}
        unknown = [r.problem_id for r in levels if r.problem_id not in by_id]
        require(not unknown, f"{request.feedback_uri}: feedback names {len(unknown)} problem(s) not in the pool: "
                             f"{', '.join(unknown[:5])}")
        level_of = {r.problem_id: r.level or "learning" for r in levels}
        missing = [pid for pid in ids if pid not in level_of]
        require(not missing, f"{request.feedback_uri}: no feedback for {len(missing)} pool problem(s): "
                             f"{', '.join(missing[:5])}")
        cycle = request.run.cycle
        result = self._evolve(pool, level_of, cfg, cycle)
        stats = result["stats"]

        w.put_jsonl("levels.jsonl", levels)
        w.put_jsonl("rejected.jsonl", result["rejected"])
        w.put_jsonl(pool_name, result["next_pool"])
        for s in stats:
            for f in STATS_FIELDS[1:]:
                w.metrics[f"{s['level']}.{f}"] = float(s[f])
        w.metrics["next_pool"] = float(len(result["next_pool"]))
        w.metrics["new_questions"] = float(sum(s["kept"] for s in stats))
        w.extra["stats"] = stats
        w.extra["next_pool_name"] = pool_name
        w.commit()
        event(log, "evolve done", prefix=w.prefix, next_pool=len(result["next_pool"]),
              duration_s=round(time.monotonic() - t0, 3))
        return self._response(w.outputs, stats, time.monotonic() - t0)

    def _response(self, outputs: dict[str, Any], stats: list[dict[str, Any]], duration: float,
                  cached: bool = False) -> Any:
        def ref(entry: Any) -> common_pb2.ArtifactRef:
            return common_pb2.ArtifactRef(uri=entry.uri, sha256=entry.sha256)

        pool_entry = next(v for k, v in outputs.items() if k not in ("levels.jsonl", "rejected.jsonl"))
        return questions_pb2.EvolveResponse(
            next_pool=ref(pool_entry), levels=ref(outputs["levels.jsonl"]),
            stats=[questions_pb2.LevelStats(**s) for s in stats], duration_s=duration, cached=cached)

    # -- the work -------------------------------------------------------------------------------
    def _evolve(self, pool: list[Problem], level_of: dict[str, str], cfg: QuestionsConfig,
                cycle: int) -> dict[str, Any]:
        counts: dict[str, Counter[str]] = {lv: Counter() for lv in LEVELS}
        for p in pool:
            counts[level_of[p.id]]["problems"] += 1
        rejected: list[dict[str, Any]] = []

        def reject(c: Candidate, reason: str, **detail: Any) -> None:
            rejected.append({"id": c.problem.id, "parent_id": c.parent_id, "level": c.level, "reason": reason,
                             **detail})

        parents = [(p, level_of[p.id]) for p in pool]
        wants = any(cfg.generation.per_question.get(level_of[p.id], 0) > 0 for p in pool)
        generator = self._generator_factory(cfg) if wants else None
        try:
            candidates: list[Candidate] = []
            if generator is not None:
                try:
                    candidates, asked, parsed = ask_teacher(generator, parents, cfg.generation, cycle,
                                                            cfg.validation.min_tests)
                except grpc.RpcError as exc:
                    raise Unavailable(f"teacher at {cfg.teacher_target}: {exc.code().name}: {exc.details()}") from None
                for lv in LEVELS:
                    counts[lv]["asked"] += asked[lv]
                    counts[lv]["parsed"] += parsed[lv]
                rejected.extend({"id": None, "parent_id": None, "level": lv, "reason": "unparsed"}
                                for lv in LEVELS for _ in range(asked[lv] - parsed[lv]))
                if cfg.generation.generated_tests:
                    candidates, untested = fill_tests(candidates, lambda: self._executor_factory(cfg),
                                                      cfg.generation.generated_tests, cfg.validation.min_tests,
                                                      cfg.validation.timeout_s, cfg.generation.seed + cycle)
                    for c in untested:
                        reject(c, "no tests")
            # a candidate whose id repeats (the same reply twice) is an exact duplicate
            seen_ids = {p.id for p in pool}
            unique: list[Candidate] = []
            for c in candidates:
                if c.problem.id in seen_ids:
                    counts[c.level]["duplicate"] += 1
                    reject(c, "duplicate", of=c.problem.id)
                    continue
                seen_ids.add(c.problem.id)
                unique.append(c)
            texts = [self._text(c) for c in unique]
            # decontamination
            matches = self.decontaminator(cfg).matches_many(texts) if unique else []
            clean: list[tuple[Candidate, str]] = []
            for c, text, m in zip(unique, texts, matches):
                if m:
                    counts[c.level]["contaminated"] += 1
                    reject(c, "contaminated", matches=m[:5])
                else:
                    clean.append((c, text))
            # near-duplicates of the pool
            d = cfg.dedup
            index = NearDuplicateIndex(d.threshold, d.method, d.shingle, d.num_perm, d.seed)  # type: ignore[arg-type]
            index.add_many((p.id, problem_text(p)) for p in pool)
            dups = index.query_many([t for _, t in clean]) if clean else []
            fresh: list[tuple[Candidate, str]] = []
            for (c, text), found in zip(clean, dups):
                if found:
                    counts[c.level]["duplicate"] += 1
                    reject(c, "duplicate", of=found[0][0], similarity=round(found[0][1], 4))
                else:
                    fresh.append((c, text))
            # execution
            valid: list[tuple[Candidate, str]] = []
            if fresh:
                executor = self._executor_factory(cfg)
                try:
                    verdicts = validate([c for c, _ in fresh], generator, executor, cfg.generation,
                                        cfg.validation, cycle)
                except grpc.RpcError as exc:
                    raise Unavailable(f"teacher at {cfg.teacher_target}: {exc.code().name}: {exc.details()}") from None
                finally:
                    close = getattr(executor, "close", None)
                    if callable(close):
                        close()
                for (c, text), v in zip(fresh, verdicts):
                    if v.valid:
                        counts[c.level]["valid"] += 1
                        c.problem = c.problem.model_copy(update={"canonical_solution": v.solution})
                        valid.append((c, text))
                    else:
                        reject(c, v.reason, results=v.results)
        finally:
            close = getattr(generator, "close", None)
            if callable(close):
                close()
        # near-duplicates among the new questions
        new: list[Candidate] = []
        for (c, _), found in zip(valid, index.dedupe([(c.problem.id, t) for c, t in valid]) if valid else []):
            if found:
                counts[c.level]["duplicate"] += 1
                reject(c, "duplicate", of=found[0], similarity=round(found[1], 4))
            else:
                new.append(c)
        # the next pool
        carried = [p.model_copy(update={"level": level_of[p.id], "cycle": p.cycle if p.cycle is not None else cycle})
                   for p in pool if cfg.pool.keep_unmastered and level_of[p.id] != "mastered"]
        ordered_new = _round_robin(new)
        cap = cfg.pool.max_size
        if cap:
            reserved = min(len(ordered_new), round(cfg.pool.min_new_fraction * cap))
            n_carried = min(len(carried), cap - reserved)
            n_new = min(len(ordered_new), cap - n_carried)
            carried, dropped, ordered_new = carried[:n_carried], ordered_new[n_new:], ordered_new[:n_new]
            for c in dropped:
                reject(c, "pool full")
        for c in ordered_new:
            counts[c.level]["kept"] += 1
        next_pool = carried + [c.problem for c in ordered_new]
        stats = [{"level": lv, **{f: int(counts[lv][f]) for f in STATS_FIELDS}} for lv in LEVELS]
        return {"next_pool": next_pool, "stats": stats, "rejected": rejected}

    @staticmethod
    def _text(c: Candidate) -> str:
        return "\n".join(x for x in (c.problem.prompt, c.parsed.solution or "", c.problem.tests) if x)

