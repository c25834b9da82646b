"""The controller's ``iterkd`` commands: run, status, runs, logs, cancel, report, config, stage.

Commands that need the store take ``--config FILE``; without it they use the embedded default
(the one ``make demo`` runs), so after ``make demo`` a bare ``iterkd status`` shows that run.
Errors print one line naming the culprit and exit 2 (usage) or 1 (a failed run).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from iterkd.controller.config import (
    WORLDS,
    ControllerFileConfig,
    embedded_config_yaml,
    iterkd_home,
    load_run_config,
    miniature_files,
    run_schema,
)
from iterkd.controller.runs import TERMINAL, RunRecord, RunStore
from iterkd.shared.config import ConfigError
from iterkd.shared.errors import BadRequest, Conflict, NotFound
from iterkd.shared.stages import STAGES
from iterkd.shared.store import ArtifactStore, open_store

EXIT_USAGE = 2


class UsageError(Exception):
    """A bad command line or configuration: the message names the culprit (exit 2)."""


def _store(args: argparse.Namespace) -> tuple[ControllerFileConfig, dict[str, Any], ArtifactStore]:
    cfg, raw = load_run_config(args.config)
    return cfg, raw, open_store(cfg.store)


def _workdir(cfg: ControllerFileConfig) -> Path:
    if cfg.controller.workdir:
        return Path(cfg.controller.workdir).expanduser()
    if cfg.store.backend == "local":
        return Path(cfg.store.root).parent
    return iterkd_home()


def _record(runs: RunStore, run_id: str | None) -> RunRecord:
    return runs.load(run_id) if run_id else runs.latest()


def _guard(func: Any) -> Any:
    """One way out for every command: a message naming the culprit, exit 2 for usage errors."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return int(func(args) or 0)
        except (UsageError, ConfigError, BadRequest, ValueError) as exc:
            print(f"iterkd {args.command}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except (NotFound, Conflict) as exc:
            print(f"iterkd {args.command}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    return wrapped


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="configuration file (default: the embedded default that `make demo` runs)")


# -- iterkd run ----------------------------------------------------------------------------------------
class _Display:
    """One line per finished stage, a progress bar for the current one (rich)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = Console(highlight=False, soft_wrap=True)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
                                 console=self.console, transient=True)
        self.task: Any = None

    def __enter__(self) -> _Display:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def transition(self, t: Any) -> None:
        if not t.stage:
            if t.state in TERMINAL:
                self.console.print(f"run {t.run_id} {t.state}" + (f": {t.message}" if t.message else ""))
            return
        label = f"cycle {t.cycle} {t.stage}"
        if t.state == "running":
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(label, total=None, note=f"attempt {t.attempt}")
            return
        if self.task is not None and t.state != "retrying":
            self.progress.remove_task(self.task)
            self.task = None
        metrics = "  ".join(f"{k}={v:g}" for k, v in (t.metrics or {}).items())
        mark = {"succeeded": "[green]✓[/]", "failed": "[red]✗[/]", "cancelled": "[magenta]⊘[/]",
                "retrying": "[yellow]↻[/]"}.get(t.state, "·")
        took = f" {t.duration_s:.1f}s" if t.duration_s is not None else ""
        note = f"  [dim]{t.message}[/]" if t.message else ""
        self.console.print(f"{mark} {label:<26} {t.state}{took}  [{t.progress * 100:3.0f}%]  {metrics}{note}")

    def step_progress(self, step: Any, p: Any) -> None:
        if self.task is not None and p.total:
            self.progress.update(self.task, total=p.total, completed=p.step, note=p.message)


def _log_to_file(cfg: ControllerFileConfig, path: Path) -> None:
    from iterkd.shared.log import JsonFormatter

    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("iterkd")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(cfg.logging.level)
    root.propagate = False


def cmd_run(args: argparse.Namespace) -> int:
    from iterkd.controller.executors.local import LocalExecutor
    from iterkd.controller.orchestrator import Orchestrator, parse_step
    from iterkd.controller.report import write_report
    from iterkd.controller.services import LocalServices

    if args.cycle is not None and not args.from_stage:
        raise UsageError("--cycle goes with --from-stage")
    if args.from_stage and not args.resume:
        raise UsageError("--from-stage re-runs part of an existing run: give it with --resume RUN")
    if args.resume and args.run_id:
        raise UsageError("give either --run-id (a new run) or --resume RUN (an existing one)")
    cfg, raw, store = _store(args)
    if cfg.controller.executor == "kubernetes":
        return _submit_to_cluster(args, cfg)
    workdir = _workdir(cfg)
    runs = RunStore(store)
    base_dir = Path(args.config).resolve().parent if args.config else None

    # Validate everything before the services start (minutes): a bad run fails in a second.
    placeholder = Orchestrator(store, LocalExecutor(store, {}))
    if args.resume:
        from iterkd.controller.orchestrator import controller_alive

        record = runs.load(args.resume)
        if record.state == "running" and controller_alive(store, record.run_id):
            raise Conflict(f"run {record.run_id} is being driven by another controller right now (its heartbeat "
                           "is fresh); cancel it or wait for it to end")
    if args.config is None:
        _check_embedded_files()
    if args.resume:
        if args.from_stage:
            placeholder.rerun_from(record.run_id, parse_step(args.from_stage, args.cycle, record))
    else:
        record = placeholder.create(cfg.run, args.run_id, base_dir)
    run_id = record.run_id
    print(run_id, flush=True)
    log_path = workdir / "logs" / f"controller-{run_id}.log"
    _log_to_file(cfg, log_path)

    display = _Display()
    with display:
        display.console.print(f"[dim]starting services (logs in {workdir / 'logs'})[/]")
        with LocalServices(raw, workdir, cfg.controller.services) as services:
            executor = LocalExecutor(store, services.targets, cfg.controller.rpc_timeout_s)
            orch = Orchestrator(store, executor, cfg.controller.retry, listeners=[display.transition],
                                on_progress=display.step_progress)
            try:
                final = orch.drive(run_id)
            finally:
                executor.close()
    report = write_report(store, final, workdir / "reports" / run_id, miniature=args.config is None)
    print(report, flush=True)
    return 0 if final.state == "succeeded" else 1


def _check_embedded_files() -> None:
    """The embedded default runs on files that `make demo` builds: say which are missing, and how."""
    home = iterkd_home()
    missing = [str(path) for path in miniature_files(home).values() if not path.exists()]
    if missing:
        raise UsageError(
            f"the embedded default (the miniature world) needs {', '.join(missing)}; build them with "
            f"`make demo`, or `iterkd models miniature --preset demo --out {home / 'miniature'}` and "
            f"`iterkd world export --split heldout --n 200 --seed 10000 --depth 2 --out "
            f"{home / 'miniature' / 'heldout.jsonl'}`; or give a configuration with --config "
            "(`iterkd config init --world seed` for the seed questions)")


def _submit_to_cluster(args: argparse.Namespace, cfg: ControllerFileConfig) -> int:
    """With the kubernetes executor, `iterkd run` creates the run's DistillationRun (your kubeconfig,
    or the pod's service account) and the controller in the cluster drives it."""
    from iterkd.controller.executors.kubernetes import api_client
    from iterkd.controller.operator import create_run_object
    from iterkd.controller.orchestrator import new_run_id
    from iterkd.shared.stages import check_run_id

    if args.resume or args.from_stage:
        raise UsageError("--resume/--from-stage act on a local run; in a cluster the controller resumes a "
                         "DistillationRun by itself (delete and re-apply it to start over)")
    run_id = check_run_id(args.run_id or new_run_id())
    ns = cfg.controller.kubernetes.namespace
    create_run_object(api_client(), ns, run_id, cfg.run.model_dump(mode="json", by_alias=True, exclude_unset=True))
    print(run_id)
    print(f"DistillationRun {run_id} created in namespace {ns}; follow it with:\n"
          f"  kubectl -n {ns} get ikdrun {run_id} -o wide\n"
          f"  kubectl -n {ns} get jobs -l iterkd.io/run={run_id} -L iterkd.io/cycle,iterkd.io/stage")
    return 0


def register_run(sub: Any) -> None:
    p = sub.add_parser("run", help="run (or resume) a distillation run locally, stage by stage")
    _add_config(p)
    p.add_argument("--run-id", help="id of the new run (default: run-YYYYMMDD-HHMMSS)")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last finished stage")
    p.add_argument("--from-stage", metavar="STAGE", choices=STAGES,
                   help="with --resume: set aside STAGE's outputs and every later stage's, and re-run from there")
    p.add_argument("--cycle", type=int, help="with --from-stage: the cycle (default: the first not finished)")
    p.set_defaults(func=_guard(cmd_run))


# -- iterkd status / runs / logs / cancel / report ------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    from iterkd.controller.orchestrator import controller_alive
    from iterkd.controller.status import render_table, run_status

    _, _, store = _store(args)
    record = _record(RunStore(store), args.run)
    status = run_status(store, record)
    if record.state == "running" and not controller_alive(store, record.run_id):
        status["message"] = (status["message"] + " " if status["message"] else "") + \
            "(no controller has driven this run recently; continue it with `iterkd run --resume " \
            f"{record.run_id}`)"
    if args.json:
        print(json.dumps(status))
    else:
        from rich.console import Console

        # A pipe or a log gets the whole table (rich assumes 80 columns where it is not a terminal).
        Console(highlight=False, width=None if sys.stdout.isatty() else 120).print(render_table(status))
    return 0


def register_status(sub: Any) -> None:
    p = sub.add_parser("status", help="a run's state, stages and metrics (default: the latest run)")
    p.add_argument("run", nargs="?", metavar="RUN")
    _add_config(p)
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=_guard(cmd_status))


def cmd_runs(args: argparse.Namespace) -> int:
    _, _, store = _store(args)
    records = RunStore(store).list()
    if args.json:
        print(json.dumps([{"run": r.run_id, "state": r.state, "progress": round(r.progress, 4),
                           "cycles": r.cycles, "created_at": r.created_at} for r in records]))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for col in ("RUN", "STATE", "PROGRESS", "CYCLE", "STAGE", "CREATED"):
        table.add_column(col)
    for r in records:
        cur = r.current
        table.add_row(r.run_id, r.state, f"{r.progress * 100:.0f}%", f"{cur.cycle if cur else r.cycles}/{r.cycles}",
                      cur.stage if cur and r.state not in ("succeeded",) else "-", r.created_at[:19])
    Console(highlight=False).print(table if records else "no runs yet; start one with `iterkd run`")
    return 0


def register_runs(sub: Any) -> None:
    p = sub.add_parser("runs", help="list runs")
    _add_config(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(cmd_runs))


def _event_line(e: dict[str, Any]) -> str:
    skip = {"ts", "run", "cycle", "stage", "state", "attempt", "duration_s", "message", "progress"}
    metrics = " ".join(f"{k}={v}" for k, v in e.items() if k not in skip)
    where = f"cycle {e.get('cycle')} {e.get('stage')}" if e.get("stage") else "run"
    took = f" {e['duration_s']}s" if e.get("duration_s") is not None else ""
    attempt = f" attempt {e['attempt']}" if e.get("attempt") else ""
    msg = f"  {e['message']}" if e.get("message") else ""
    return f"{e.get('ts', '')[:23]}  {where:<24} {e.get('state', ''):<9}{attempt}{took}  {metrics}{msg}".rstrip()


def _service_lines(workdir: Path, service: str, run_id: str, cycle: int | None) -> list[str]:
    path = workdir / "logs" / f"{service}.log"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if obj.get("run") == run_id and (cycle is None or obj.get("cycle") in (cycle, None)):
            out.append(f"  [{service}] {line}")
    return out


def cmd_logs(args: argparse.Namespace) -> int:
    from iterkd.shared.stages import BY_NAME

    cfg, _, store = _store(args)
    runs = RunStore(store)
    record = runs.load(args.run)
    seen = 0
    while True:
        events = runs.events(record.run_id)
        for e in events[seen:]:
            if args.stage and e.get("stage") != args.stage:
                continue
            if args.cycle is not None and e.get("cycle") != args.cycle:
                continue
            print(_event_line(e), flush=True)
        seen = len(events)
        if not args.follow or runs.load(record.run_id).state in TERMINAL:
            break
        time.sleep(1.0)
    if args.stage:
        for line in _service_lines(_workdir(cfg), BY_NAME[args.stage].service, record.run_id, args.cycle):
            print(line)
    return 0


def register_logs(sub: Any) -> None:
    p = sub.add_parser("logs", help="a run's transitions (and, with --stage, its service's log lines)")
    p.add_argument("run", metavar="RUN")
    _add_config(p)
    p.add_argument("--stage", choices=STAGES)
    p.add_argument("--cycle", type=int)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
    p.set_defaults(func=_guard(cmd_logs))


def cmd_cancel(args: argparse.Namespace) -> int:
    from iterkd.controller.orchestrator import controller_alive

    _, _, store = _store(args)
    runs = RunStore(store)
    record = runs.load(args.run)
    if record.state in TERMINAL:
        print(f"run {record.run_id} already {record.state}")
        return 0
    runs.request_cancel(record.run_id)
    if controller_alive(store, record.run_id):
        print(f"cancel requested: the controller driving {record.run_id} stops its current stage")
        return 0
    record.state, record.message = "cancelled", "cancelled by the user (no controller was driving it)"
    for r in record.stages:
        if r.state == "running":
            r.state = "cancelled"
    runs.save(record)
    print(f"run {record.run_id} cancelled")
    return 0


def register_cancel(sub: Any) -> None:
    p = sub.add_parser("cancel", help="cancel a run: its current stage's call is cancelled")
    p.add_argument("run", metavar="RUN")
    _add_config(p)
    p.set_defaults(func=_guard(cmd_cancel))


def cmd_report(args: argparse.Namespace) -> int:
    from iterkd.controller.report import write_report

    cfg, _, store = _store(args)
    record = _record(RunStore(store), args.run)
    out = Path(args.out) if args.out else _workdir(cfg) / "reports" / record.run_id
    print(write_report(store, record, out, miniature=args.config is None))
    return 0


def register_report(sub: Any) -> None:
    p = sub.add_parser("report", help="a markdown report with PNG plots of a run")
    p.add_argument("run", nargs="?", metavar="RUN", help="default: the latest run")
    _add_config(p)
    p.add_argument("--out", help="folder for report.md and its plots")
    p.set_defaults(func=_guard(cmd_report))


# -- iterkd config ----------------------------------------------------------------------------------------
def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "init":
        if args.questions is not None and args.questions < 1:
            raise UsageError("--questions must be >= 1")
        if args.cycles < 1:
            raise UsageError("--cycles must be >= 1")
        print(embedded_config_yaml(args.world, questions=args.questions, cycles=args.cycles, workdir=args.workdir),
              end="")
    elif args.action == "schema":
        print(json.dumps(run_schema(), indent=2))
    else:
        if not args.file:
            raise UsageError("config check needs a FILE")
        cfg, _ = load_run_config(args.file)
        print(json.dumps({"file": args.file, "valid": True, "executor": cfg.controller.executor,
                          "cycles": cfg.run.cycles, "pool": cfg.run.pool.source, "eval": cfg.run.eval.source}))
    return 0


def register_config(sub: Any) -> None:
    p = sub.add_parser("config", help="the run configuration: init (print the default), schema, check FILE")
    p.add_argument("action", choices=("init", "schema", "check"))
    p.add_argument("file", nargs="?", help="with check: the file to validate")
    p.add_argument("--world", choices=WORLDS, default="miniature",
                   help="with init: miniature (the embedded default) or seed (66 seed questions, tiny models)")
    p.add_argument("--questions", type=int,
                   help="with init: questions in the pool (default 256 in the miniature world, 24 in the seed one)")
    p.add_argument("--cycles", type=int, default=2, help="with init: cycles (default 2)")
    p.add_argument("--workdir", help="with init: folder for models, store and logs (default $ITERKD_HOME)")
    p.set_defaults(func=_guard(cmd_config))


# -- iterkd stage run (what a stage Job runs in a cluster) ---------------------------------------------
def cmd_stage(args: argparse.Namespace) -> int:
    """Exit 0 when the stage is done, 1 for a failure worth a retry, 2 for one that is not (the
    Job's podFailurePolicy fails the Job at once on 2)."""
    from iterkd.controller.config import RunConfig
    from iterkd.controller.planner import Step
    from iterkd.controller.stagerun import Clients, StageFailed, run_stage

    cfg, _, store = _store(args)
    record = RunStore(store).load(args.run)
    clients = Clients(cfg.controller.services or cfg.controller.kubernetes.services)
    try:
        outcome = run_stage(store, record.run_id, Step(args.cycle, args.stage), RunConfig.model_validate(record.config),
                            clients, timeout_s=cfg.controller.rpc_timeout_s)
    except StageFailed as exc:
        print(f"iterkd stage run: cycle {args.cycle} {args.stage}: {exc}", file=sys.stderr)
        return 1 if exc.retryable else EXIT_USAGE
    finally:
        clients.close()
    print(json.dumps({"run": record.run_id, "cycle": args.cycle, "stage": args.stage, "cached": outcome.cached,
                      "metrics": outcome.metrics}))
    return 0


def register_stage(sub: Any) -> None:
    p = sub.add_parser("stage", help="run one stage of a run through its service (what a stage Job runs)")
    p.add_argument("action", choices=("run",))
    p.add_argument("--run", required=True)
    p.add_argument("--cycle", type=int, required=True)
    p.add_argument("--stage", required=True, choices=STAGES)
    _add_config(p)
    p.set_defaults(func=_guard(cmd_stage))
