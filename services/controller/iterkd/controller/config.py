"""The run configuration (the ``run`` section) and the controller's own section.

One YAML file configures a whole local run: the shared ``store`` and ``logging``, one section per
service (which the local executor hands to the services it starts), ``controller`` (executor,
retries, Kubernetes settings) and ``run`` (what to distill: pool, cycles, per-stage parameters,
evaluation). In a cluster a DistillationRun's spec is exactly the ``run`` section.

:func:`embedded_config` is the embedded default that ``make demo`` runs and that every command uses
when it is given no ``--config``: the miniature world's models (docs/miniature.md) and a local
store under ``$ITERKD_HOME`` (default ``~/.iterkd``), so after ``make demo`` a bare ``iterkd
status`` finds the run. ``world="seed"`` gives the earlier default: the 66 seed questions with
tiny random models (``iterkd config init --world seed``), which shows the mechanics only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, model_validator

from iterkd.shared.config import FileConfig, Section, ServerConfig, load_config, parse_config

STAGE_NAMES = ("teacher-solve", "verify", "train", "student-solve", "feedback", "evolve", "evaluate")


class Sampling(Section):
    """Generation parameters of a solve step (the proto's GenerationParams)."""

    n: int = Field(default=2, ge=1)
    temperature: float = Field(default=0.8, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_new_tokens: int = Field(default=256, ge=1)
    use_chat_template: bool = True


class TeacherSolveStage(Sampling):
    include_references: bool = Field(
        default=False, description="also verify each problem's reference solution as a sample (tiny teachers)")


class VerifyStage(Section):
    timeout_s: float = Field(default=0, ge=0, description="per answer; 0 = the feedback service's default")


class TrainStage(Section):
    config: dict[str, Any] = Field(default_factory=dict,
                                   description="overrides of the trainer's lora/loss/optim/prompts sections")
    replay: bool = Field(default=False, description="train each cycle on every answer that passed in the cycles "
                                                    "before too (the previous cycle's training set joins this one's)")


class FeedbackStage(Section):
    static: bool = True
    judge: bool = True
    timeout_s: float = Field(default=0, ge=0)


class EvolveStage(Section):
    config: dict[str, Any] = Field(default_factory=dict,
                                   description="overrides of the question service's levels/generation/validation/"
                                               "dedup/pool sections")


class EvaluateStage(Sampling):
    n: int = Field(default=1, ge=1)
    temperature: float = Field(default=0.0, ge=0)
    k: list[int] = Field(default_factory=lambda: [1])
    timeout_s: float = Field(default=0, ge=0)
    # Cycle 1's evaluate also scores the base student, before any training, on the same set with
    # the same parameters (into evaluate/base/): status and report show it as cycle 0.
    baseline: bool = False


class Stages(Section):
    teacher_solve: TeacherSolveStage = Field(default_factory=TeacherSolveStage, alias="teacher-solve")
    verify: VerifyStage = Field(default_factory=VerifyStage)
    train: TrainStage = Field(default_factory=TrainStage)
    student_solve: Sampling = Field(default_factory=Sampling, alias="student-solve")
    feedback: FeedbackStage = Field(default_factory=FeedbackStage)
    evolve: EvolveStage = Field(default_factory=EvolveStage)
    evaluate: EvaluateStage = Field(default_factory=EvaluateStage)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ProblemSet(Section):
    """Where a problem set comes from: ``seed`` (the built-in Python seed questions; ``seed:all``
    adds the ones in C, C++, Java, JavaScript and Go, ``seed:go`` takes one language), ``humaneval``,
    ``mbpp`` (its test split, from ``$ITERKD_MBPP``), ``miniature:SPLIT[:DEPTHS]`` (the miniature world,
    depths 2,3 unless given, e.g. ``miniature:heldout:2``), or a path to a problems file (JSON Lines
    or a JSON array; relative to the config file)."""

    source: str = "seed"
    limit: int | None = Field(default=None, ge=1, description="use the first N problems (evenly spread)")
    seed: int = 0


class RunConfig(Section):
    """What one distillation run does (the ``run`` section; a DistillationRun's spec)."""

    cycles: int = Field(default=2, ge=1, le=1000)
    evolve_last_cycle: bool = Field(
        default=False, description="run student-solve, feedback and evolve in the last cycle too; they only "
                                   "prepare a next cycle's pool (teacher calls for the judge and new questions), "
                                   "so by default the last cycle ends with train and evaluate")
    seed: int = Field(default=0, ge=0)
    pool: ProblemSet = Field(default_factory=ProblemSet)
    eval: ProblemSet = Field(default_factory=lambda: ProblemSet(source="humaneval", limit=16))
    stages: Stages = Field(default_factory=Stages)


class RetryConfig(Section):
    max_attempts: int = Field(default=2, ge=1, description="attempts per stage for retryable failures")
    backoff_s: float = Field(default=2.0, ge=0)


class TrainerScaling(Section):
    """Scale the trainer Deployment to zero between runs so an idle GPU is not held."""

    deployment: str
    replicas: int = Field(default=1, ge=1)
    scale_to_zero: bool = True


class KubernetesConfig(Section):
    """How stage Jobs are made (used by the kubernetes executor). The Helm chart fills these so a
    stage pod looks like the chart's own pods (security contexts, the config and store secret)."""

    namespace: str = "iterkd"
    stage_image: str = "iterkd/controller:0.1.0"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    service_account: str = ""
    config_map: str = "iterkd-config"
    trainer_scaling: TrainerScaling | None = None
    backoff_limit: int = Field(default=3, ge=0)
    active_deadline_s: int = Field(default=6 * 3600, ge=1)
    pending_deadline_s: int = Field(default=600, ge=1,
                                    description="fail a stage whose pod has not started within this time")
    ttl_after_success_s: int = Field(default=3600, ge=0)
    ttl_after_failure_s: int = Field(default=7 * 24 * 3600, ge=0)
    non_retryable_exit_codes: list[int] = Field(default_factory=lambda: [2])
    resources: dict[str, Any] = Field(default_factory=lambda: {
        "requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}})
    services: dict[str, str] = Field(default_factory=lambda: {
        "teacher": "iterkd-teacher:50051", "trainer": "iterkd-trainer:50052",
        "feedback": "iterkd-feedback:50053", "questions": "iterkd-questions:50054"})
    # Stage pods: where the config and the store's credentials are mounted, how they are secured
    # and placed (the chart fills these with its own pods' rules).
    config_path: str = Field(default="/etc/iterkd/config.yaml", description="where the ConfigMap's config.yaml is")
    store_secret: str = Field(default="", description="a Secret with the store's keys, mounted at credentials_dir")
    credentials_dir: str = "/var/run/secrets/iterkd-store"
    image_pull_secrets: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict, description="extra labels on stage Jobs and pods")
    pod_security_context: dict[str, Any] = Field(default_factory=lambda: {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"}})
    container_security_context: dict[str, Any] = Field(default_factory=lambda: {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}})
    scratch_size_limit: str = "1Gi"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] = Field(default_factory=dict)
    # The controller itself: one active replica (a coordination.k8s.io Lease), the watch's window.
    lease_name: str = "iterkd-controller"
    lease_duration_s: int = Field(default=15, ge=2)
    lease_renew_s: float = Field(default=5.0, gt=0)
    watch_timeout_s: int = Field(default=300, ge=1, description="re-open a watch (from its resourceVersion) after")


class ControllerConfig(Section):
    server: ServerConfig = ServerConfig(port=50050)
    executor: Literal["local", "kubernetes"] = "local"
    # local executor: services to use instead of starting them (name -> host:port)
    services: dict[str, str] = Field(default_factory=dict)
    workdir: str = Field(default="", description="service logs and scratch (local); default: beside the store")
    rpc_timeout_s: float = Field(default=6 * 3600, gt=0)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)

    @model_validator(mode="after")
    def _check(self) -> ControllerConfig:
        unknown = sorted(set(self.services) - {"teacher", "trainer", "feedback", "questions"})
        if unknown:
            raise ValueError(f"services: unknown service(s) {', '.join(unknown)}")
        return self


class ControllerFileConfig(FileConfig):
    controller: ControllerConfig = Field(default_factory=ControllerConfig)
    run: RunConfig = Field(default_factory=RunConfig)


def iterkd_home() -> Path:
    return Path(os.environ.get("ITERKD_HOME") or Path.home() / ".iterkd").expanduser()


WORLDS = ("miniature", "seed")


def miniature_files(home: Path) -> dict[str, Path]:
    """What the miniature embedded default needs under ``home`` (``make demo`` makes them)."""
    folder = home / "miniature"
    return {"teacher": folder / "teacher", "student": folder / "student", "heldout": folder / "heldout.jsonl"}


def embedded_config(world: str = "miniature", questions: int | None = None, cycles: int = 2,
                    workdir: str | os.PathLike[str] | None = None, eval_size: int | None = None) -> dict[str, Any]:
    """The embedded default (what ``make demo`` runs), in the ``miniature`` world or the ``seed`` one."""
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}; choose one of {', '.join(WORLDS)}")
    home = Path(workdir).expanduser().resolve() if workdir else iterkd_home()
    if world == "seed":
        return _seed_config(home, 24 if questions is None else questions, cycles, eval_size or 16)
    return _miniature_config(home, 256 if questions is None else questions, cycles, eval_size or 200)


def _miniature_config(home: Path, questions: int, cycles: int, eval_size: int) -> dict[str, Any]:
    """The miniature world with the settings of docs/results.md's ``iterkd-no-contrastive`` arm.

    Two departures from the trainer's and the feedback service's defaults, both measured there:
    the contrastive weight is 0 (at this scale the pair term halves what the student learns; set
    ``trainer.loss.lambda`` to see it) and the judge is off (the miniature teacher was never
    trained to judge: it parses none of its verdicts; a real code model can).
    """
    files = miniature_files(home)
    sampling = {"temperature": 0.8, "max_new_tokens": 192}
    return {
        "store": {"backend": "local", "root": str(home / "store")},
        "logging": {"level": "INFO", "format": "json"},
        "controller": {"executor": "local", "workdir": str(home)},
        "teacher": {"backend": "hf", "model": str(files["teacher"]), "micro_batch_size": 16,
                    "prompts": {"use_chat_template": True}},
        "trainer": {
            "base_model": str(files["student"]), "device": "cpu", "prompts": {"use_chat_template": True},
            "lora": {"enabled": False},
            "loss": {"lambda": 0.0},
            "optim": {"lr": 3e-3, "batch_size": 8, "max_length": 512, "save_every_steps": 50},
        },
        "feedback": {"sandbox": {"timeout_s": 3.0}, "judge": {"enabled": False}},
        "questions": {
            "generation": {"per_question": {"mastered": 1, "learning": 1, "struggling": 1},
                           "max_new_tokens": 256, "samples_per_question": 1, "solve_max_new_tokens": 192},
            "pool": {"max_size": questions},
            # New questions never copy a held-out problem (the evaluation set's compositions).
            "decontamination": {"extra_sets": [str(files["heldout"])]},
        },
        "run": {
            "cycles": cycles,
            "seed": 0,
            "pool": {"source": "miniature:seed:2", "limit": questions, "seed": 0},
            "eval": {"source": "miniature:heldout:2", "limit": eval_size, "seed": 10000},
            "stages": {
                "teacher-solve": {"n": 2, **sampling},
                "train": {"config": {"optim": {"max_steps": 120, "seed": 0}}, "replay": True},
                "student-solve": {"n": 1, **sampling},
                "feedback": {"judge": False},
                "evolve": {"config": {"generation": {"seed": 0}}},
                "evaluate": {"n": 1, "temperature": 0.0, "max_new_tokens": 192, "baseline": True},
            },
        },
    }


def _seed_config(home: Path, questions: int, cycles: int, eval_size: int) -> dict[str, Any]:
    """The 66 seed questions with tiny random models under ``home/models``: the mechanics only."""
    models = home / "models"
    return {
        "store": {"backend": "local", "root": str(home / "store")},
        "logging": {"level": "INFO", "format": "json"},
        "controller": {"executor": "local", "workdir": str(home)},
        "teacher": {"backend": "hf", "model": str(models / "teacher"), "micro_batch_size": 16,
                    "prompts": {"use_chat_template": True}},
        "trainer": {
            "base_model": str(models / "student"), "device": "cpu", "prompts": {"use_chat_template": True},
            "lora": {"r": 8, "alpha": 16},
            "loss": {"loss_type": "infonce", "lambda": 0.5, "max_rejected": 2},
            "optim": {"lr": 5e-3, "epochs": 2, "batch_size": 8, "max_length": 1024, "save_every_steps": 10},
        },
        "feedback": {"sandbox": {"timeout_s": 3.0}, "judge": {"enabled": True, "max_new_tokens": 48}},
        "questions": {"generation": {"per_question": {"mastered": 1, "learning": 1, "struggling": 1},
                                     "max_new_tokens": 160, "samples_per_question": 1,
                                     "solve_max_new_tokens": 160}},
        "run": {
            "cycles": cycles,
            "seed": 0,
            "pool": {"source": "seed", **({"limit": questions} if questions else {})},
            "eval": {"source": "humaneval", "limit": eval_size},
            "stages": {
                # Tiny random models write no working code: the pool's reference solutions are
                # verified beside the teacher's answers so the student has correct answers to learn.
                "teacher-solve": {"n": 2, "temperature": 0.8, "max_new_tokens": 128, "include_references": True},
                "student-solve": {"n": 2, "temperature": 0.8, "max_new_tokens": 128},
                "evaluate": {"max_new_tokens": 96},
            },
        },
    }


def embedded_config_yaml(world: str = "miniature", **kwargs: Any) -> str:
    heads = {
        "miniature": "# IterKD's embedded default: the miniature world's models (make demo builds them), a local\n"
                     "# store, the four services started on 127.0.0.1 by `iterkd run` (docs/miniature.md).\n",
        "seed": "# The seed world: 66 seed questions, tiny random models (make demo-seed builds them), a\n"
                "# local store, the four services started on 127.0.0.1 by `iterkd run`. It shows the mechanics,\n"
                "# not quality.\n",
    }
    return heads[world] + yaml.safe_dump(embedded_config(world, **kwargs), sort_keys=False)


def load_run_config(path: str | os.PathLike[str] | None) -> tuple[ControllerFileConfig, dict[str, Any]]:
    """The validated file (the embedded default when ``path`` is None) and its raw mapping, which
    the local executor hands to the services it starts."""
    if path is None:
        raw = embedded_config()
        return parse_config(raw, ControllerFileConfig, "<embedded default>"), raw
    cfg = load_config(path, ControllerFileConfig)
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    # Relative paths resolve against the config file's folder, as the store root does.
    raw.setdefault("store", {})
    if cfg.store.backend == "local":
        raw["store"]["root"] = cfg.store.root
    return cfg, raw


def run_schema() -> dict[str, Any]:
    """The JSON schema of the whole configuration file (``iterkd config schema``)."""
    return ControllerFileConfig.model_json_schema(by_alias=True)


def crd_spec_schema() -> dict[str, Any]:
    """The DistillationRun spec's OpenAPI v3 schema, generated from :class:`RunConfig` so the API
    server checks a run as `iterkd config check` does (a structural schema: references inlined,
    optional fields nullable, free-form mappings kept as they are). ``kubernetes`` is the
    operator's per-run Job settings (backoffLimit, deadlines, TTLs, placement)."""
    schema = RunConfig.model_json_schema(by_alias=True)
    defs = schema.pop("$defs", {})

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(x) for x in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return convert({**defs[node["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}})
        node = {k: v for k, v in node.items() if k != "title"}
        if "anyOf" in node:
            options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
            if len(options) == 1:
                node = {**convert(options[0]), **node, "nullable": True}
            else:  # pragma: no cover - RunConfig has no true unions
                node["x-kubernetes-preserve-unknown-fields"] = True
        # Defaults stay the controller's (the API server would otherwise write them into every object).
        out = {k: convert(v) for k, v in node.items() if k not in ("additionalProperties", "default")}
        for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(out.get(bound), (int, float)) and not isinstance(out[bound], bool):
                out[limit], out[bound] = out[bound], True  # OpenAPI v3.0's boolean form
        if out.get("type") == "object" and "properties" not in out:
            out["x-kubernetes-preserve-unknown-fields"] = True
        return out

    spec = convert(schema)
    spec.pop("default", None)
    spec["description"] = "The run configuration (the `run` section of the IterKD config file)."
    spec["properties"]["kubernetes"] = {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True,
        "description": "Job settings of this run's stages (backoffLimit, activeDeadlineSeconds, "
                       "startDeadlineSeconds, ttlSecondsAfterFinished, placement)"}
    spec["required"] = ["cycles"]
    return spec
