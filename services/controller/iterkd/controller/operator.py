"""The DistillationRun operator: kopf watches the runs, the Orchestrator drives each one with the
kubernetes executor, and the run's status, conditions and Events follow every transition.

- A DistillationRun (``iterkd.io/v1alpha1``, ``kubectl apply -f run.yaml``, or StartRun in cluster
  mode, which creates the object) is the run: its name is the run id, its ``spec`` the ``run``
  section, its ``spec.kubernetes`` this run's Job settings (:class:`JobOverrides`).
- One kopf daemon per run (:func:`make_registry`) runs :meth:`Reconciler.serve`: the run record is
  created from the spec when the store has none, then the Orchestrator drives it. Level-triggered:
  stage states come from the store's manifests and the Jobs that exist, so a controller restart
  duplicates nothing (the Job of the current attempt is adopted, see ``Executor.resumable``).
- ``status`` is recomputed from the run record after each transition (:func:`run_status`):
  phase, cycle ``k/N``, stage, progress, per-stage records with artifact URIs, the last pass@1,
  reason/message and metav1 Conditions (Running, Succeeded, Failed, Stalled). Every transition is
  also a Kubernetes Event on the object.
- One active controller at a time: :class:`LeaseElector` holds a coordination.k8s.io Lease; the
  operator runs only while it is held, and a standby takes over when it expires.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from iterkd.controller.config import ControllerFileConfig, KubernetesConfig, RunConfig
from iterkd.controller.executors.base import Handle, StageStatus
from iterkd.controller.executors.kubernetes import JobOverrides, KubernetesExecutor, api_client, job_name
from iterkd.controller.orchestrator import Orchestrator, Transition
from iterkd.controller.runs import TERMINAL, RunRecord, RunStore
from iterkd.shared.config import ConfigError, parse_config
from iterkd.shared.errors import Conflict
from iterkd.shared.log import event, get_logger
from iterkd.shared.stages import check_run_id
from iterkd.shared.store import ArtifactStore

log = get_logger("iterkd.controller.operator")

GROUP, VERSION, PLURAL, KIND = "iterkd.io", "v1alpha1", "distillationruns", "DistillationRun"
API_VERSION = f"{GROUP}/{VERSION}"
PHASES = {"pending": "Pending", "running": "Running", "succeeded": "Succeeded", "failed": "Failed",
          "cancelled": "Cancelled"}
STALLED = ("Unschedulable", "ImagePullFailed", "ContainerConfigError")
REASONS = (*STALLED, "DeadlineExceeded", "BackoffLimitExceeded", "StageFailed", "StartDeadlineExceeded",
           "JobDeleted", "JobRejected", "JobConflict", "NoManifest", "Cancelled")
_REASON = re.compile(r"(?:^|: )(" + "|".join(REASONS) + r"): ")
MAX_TEXT = 4000


def _rfc3339(iso: str | None) -> str | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _reason_of(message: str, default: str = "StageFailed") -> str:
    """The executor's reason word inside a stage record's message (``Reason: detail``)."""
    m = _REASON.search(message or "")
    return m.group(1) if m else default


def split_spec(spec: dict[str, Any], where: str = "spec") -> tuple[RunConfig, JobOverrides]:
    """A DistillationRun's spec: the run section, and ``kubernetes`` (this run's Job settings)."""
    spec = dict(spec or {})
    overrides = spec.pop("kubernetes", None) or {}
    run = parse_config(spec, RunConfig, where)
    try:
        jobs = JobOverrides.model_validate(overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}.kubernetes.{loc}: {first['msg']}") from None
    return run, jobs


# -- status ---------------------------------------------------------------------------------------------------
def _condition(kind: str, true: bool, reason: str, message: str, generation: int,
               previous: dict[str, dict[str, Any]]) -> dict[str, Any]:
    status = "True" if true else "False"
    old = previous.get(kind)
    since = old["lastTransitionTime"] if old and old.get("status") == status else _now()
    return {"type": kind, "status": status, "observedGeneration": generation, "lastTransitionTime": since,
            "reason": reason, "message": message[:MAX_TEXT]}


def run_status(record: RunRecord, generation: int = 0, previous: dict[str, Any] | None = None,
               stalled: tuple[str, str] | None = None) -> dict[str, Any]:
    """The DistillationRun's status from the run record (``stalled``: why the current stage's pod
    has not started, while it waits)."""
    previous = previous or {}
    phase = PHASES[record.state]
    started = [r for r in record.stages if r.attempt > 0 or r.state != "pending"]
    current = record.current
    if record.state == "succeeded":
        cycle, stage = record.cycles, started[-1].stage if started else ""
    elif current is not None and started:
        cycle, stage = current.cycle, current.stage
    else:
        cycle, stage = 0, ""
    last_pass = next((r.metrics["pass@1"] for r in reversed(record.stages)
                      if r.stage == "evaluate" and r.state == "succeeded" and "pass@1" in r.metrics), None)
    stages = []
    for r in started:
        item: dict[str, Any] = {"name": r.stage, "cycle": r.cycle, "attempt": r.attempt,
                                "state": PHASES.get(r.state, "Pending")}
        if r.attempt > 0:
            item["job"] = job_name(record.run_id, r.cycle, r.stage, r.attempt)
        for key, value in (("startTime", _rfc3339(r.started_at)), ("endTime", _rfc3339(r.finished_at))):
            if value:
                item[key] = value
        if r.state in ("failed", "cancelled"):
            item["reason"] = _reason_of(r.message, "Cancelled" if r.state == "cancelled" else "StageFailed")
        if r.message:
            item["message"] = r.message[:MAX_TEXT]
        if r.outputs:
            item["artifacts"] = dict(r.outputs)
        stages.append(item)

    failed = next((r for r in record.stages if r.state == "failed"), None)
    if record.state == "failed":
        reason = _reason_of(failed.message) if failed is not None else "ControllerFailed"
        message = record.message
    elif record.state == "running" and stalled:
        reason, message = stalled
    elif record.state == "running":
        reason, message = "Running", (f"cycle {cycle} {stage}" if stage else record.message)
    else:
        reason, message = phase, record.message
    prev = {c["type"]: c for c in previous.get("conditions") or []}
    running = record.state == "running"
    conditions = [
        _condition("Running", running, "StageRunning" if running else phase,
                   f"cycle {cycle}/{record.cycles} {stage}".rstrip() if running else record.message, generation, prev),
        _condition("Succeeded", record.state == "succeeded", "Succeeded" if record.state == "succeeded"
                   else "NotSucceeded", record.message if record.state == "succeeded" else "", generation, prev),
        _condition("Failed", record.state == "failed", reason if record.state == "failed" else "NoFailure",
                   message if record.state == "failed" else "", generation, prev),
        _condition("Stalled", bool(running and stalled), stalled[0] if running and stalled else "Progressing",
                   stalled[1] if running and stalled else "", generation, prev),
    ]
    out: dict[str, Any] = {
        "phase": phase, "cycle": cycle, "cycles": record.cycles, "cycleText": f"{cycle}/{record.cycles}",
        "stage": stage, "progress": f"{int(record.progress * 100)}%", "progressRatio": round(record.progress, 4),
        "reason": reason[:1024], "message": (message or "")[:MAX_TEXT], "observedGeneration": generation,
        "startTime": _rfc3339(record.created_at), "stages": stages, "conditions": conditions,
    }
    if last_pass is not None:
        out["lastPassAt1"] = f"{last_pass:.3f}"
    if record.state in TERMINAL:
        out["completionTime"] = _rfc3339(record.updated_at)
    return out


# -- the object: status, Events, creation -------------------------------------------------------------------------
class RunObject:
    """One DistillationRun's status subresource and Events, through the kubernetes client."""

    def __init__(self, api: k8s.ApiClient, body: dict[str, Any], store: ArtifactStore, identity: str) -> None:
        meta = body["metadata"]
        self.name, self.namespace, self.uid = meta["name"], meta["namespace"], meta.get("uid", "")
        self.generation = int(meta.get("generation") or 0)
        self.custom = k8s.CustomObjectsApi(api)
        self.core = k8s.CoreV1Api(api)
        self.runs = RunStore(store)
        self.identity = identity
        self.status: dict[str, Any] = dict(body.get("status") or {})
        self.stalled: tuple[str, str] | None = None
        self._lock = threading.Lock()

    @property
    def owner(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": KIND, "name": self.name, "uid": self.uid}

    def write(self, record: RunRecord) -> None:
        with self._lock:
            status = run_status(record, self.generation, self.status, self.stalled)
            try:
                self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, self.namespace, PLURAL, self.name,
                                                                  {"status": status})
                self.status = status
            except ApiException as exc:  # the run goes on; the next transition writes the status again
                event(log, "status patch failed", level=30, run=self.name, status=exc.status, reason=str(exc.reason))

    def fail(self, reason: str, message: str) -> None:
        """A run that cannot start (an invalid spec): Failed, with the reason on the object."""
        record = RunRecord(run_id=self.name, state="failed", cycles=1, message=message)
        status = run_status(record, self.generation, self.status)
        status.update(phase="Failed", reason=reason, cycle=0, cycles=0, cycleText="0/0", progress="0%",
                      progressRatio=0.0, stages=[])
        for c in status["conditions"]:
            if c["type"] == "Failed":
                c["reason"] = reason
        try:
            self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, self.namespace, PLURAL, self.name,
                                                              {"status": status})
        except ApiException as exc:
            event(log, "status patch failed", level=30, run=self.name, status=exc.status)
        self.record_event("Warning", reason, message)

    def record_event(self, kind: str, reason: str, message: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{self.name}.{uuid.uuid4().hex[:16]}", "namespace": self.namespace},
            "involvedObject": {"apiVersion": API_VERSION, "kind": KIND, "name": self.name,
                               "namespace": self.namespace, "uid": self.uid},
            "reason": reason, "message": message[:1024], "type": kind, "count": 1,
            "firstTimestamp": now[:19] + "Z", "lastTimestamp": now[:19] + "Z", "eventTime": now,
            "action": reason, "reportingComponent": "iterkd.io/controller", "reportingInstance": self.identity,
            "source": {"component": "iterkd-controller"},
        }
        try:
            self.core.create_namespaced_event(self.namespace, body)
        except ApiException as exc:
            event(log, "event not recorded", level=30, run=self.name, status=exc.status, reason=reason)

    # -- listeners ---------------------------------------------------------------------------------------------
    def transition(self, t: Transition) -> None:
        record = self.runs.load(t.run_id)
        if t.state in ("running", "succeeded"):
            self.stalled = None
        self.write(record)
        where = f"cycle {t.cycle} {t.stage}" if t.stage else f"run {t.run_id}"
        attempt = f" attempt {t.attempt}" if t.attempt else ""
        job = f" (Job {job_name(t.run_id, t.cycle, t.stage, t.attempt)})" if t.stage and t.attempt else ""
        text = f"{where}{attempt} {t.state}{job}" + (f": {t.message}" if t.message else "")
        if not t.stage:
            reason = {"pending": "RunCreated", "running": "RunStarted", "succeeded": "RunSucceeded",
                      "failed": "RunFailed", "cancelled": "RunCancelled"}.get(t.state, "Run")
        elif t.state == "failed":
            reason = _reason_of(t.message)
        else:
            reason = {"running": "StageStarted", "succeeded": "StageSucceeded", "retrying": "StageRetrying",
                      "cancelled": "StageCancelled"}.get(t.state, "Stage")
        self.record_event("Warning" if t.state in ("failed", "retrying") else "Normal", reason, text)

    def observe(self, handle: Handle, st: StageStatus) -> None:
        """A stage's Job changed (without a transition): a pod that waits says why."""
        stalled = (st.reason, st.message) if st.state == "pending" and st.reason in STALLED else None
        if stalled == self.stalled:
            return
        self.stalled = stalled
        if stalled is not None:
            self.record_event("Warning", stalled[0], f"cycle {handle.step.cycle} {handle.step.stage} attempt "
                                                     f"{handle.attempt} (Job {handle.data['job']}): {stalled[1]}")
        self.write(self.runs.load(handle.run_id))


def create_run_object(api: k8s.ApiClient, namespace: str, run_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The DistillationRun for a run started through StartRun (cluster mode)."""
    body = {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": check_run_id(run_id), "labels": {"app.kubernetes.io/part-of": "iterkd"}},
            "spec": spec}
    try:
        return dict(k8s.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body))
    except ApiException as exc:
        if exc.status == 409:
            raise Conflict(f"a DistillationRun {run_id!r} already exists in {namespace}") from None
        raise


# -- reconciling ------------------------------------------------------------------------------------------------
class Reconciler:
    """Drives DistillationRuns: one :meth:`serve` per run (a kopf daemon's thread)."""

    def __init__(self, cfg: ControllerFileConfig, store: ArtifactStore, api: k8s.ApiClient,
                 identity: str | None = None, idle_s: float = 5.0) -> None:
        self.cfg = cfg
        self.store = store
        self.api = api
        self.runs = RunStore(store)
        self.identity = identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.idle_s = idle_s

    def kubernetes_config(self, jobs: JobOverrides) -> KubernetesConfig:
        return jobs.apply(self.cfg.controller.kubernetes)

    def ensure_record(self, body: dict[str, Any], obj: RunObject) -> tuple[RunRecord, JobOverrides] | None:
        """The run record (created from the spec when the store has none), or None for a bad spec."""
        name = body["metadata"]["name"]
        try:
            check_run_id(name)
            run, jobs = split_spec(dict(body.get("spec") or {}), f"DistillationRun {name}: spec")
        except (ConfigError, ValueError) as exc:
            event(log, "invalid DistillationRun", level=40, run=name, message=str(exc))
            obj.fail("InvalidSpec", str(exc))
            return None
        if self.runs.exists(name):
            return self.runs.load(name), jobs
        orch = Orchestrator(self.store, KubernetesExecutor(self.kubernetes_config(jobs), self.store, self.api),
                            self.cfg.controller.retry, listeners=[obj.transition])
        try:
            return orch.create(run, name), jobs
        except Conflict:  # another pass created it a moment ago
            return self.runs.load(name), jobs
        except (ConfigError, ValueError, LookupError) as exc:
            obj.fail("InvalidSpec", f"DistillationRun {name}: {exc}")
            return None

    def reconcile(self, body: dict[str, Any], stopped: Callable[[], bool]) -> RunRecord | None:
        """One pass: the record from the spec, then drive the run until it ends or ``stopped``."""
        obj = RunObject(self.api, body, self.store, self.identity)
        found = self.ensure_record(body, obj)
        if found is None:
            return None
        record, jobs = found
        if record.state in TERMINAL:
            if (obj.status.get("phase") != PHASES[record.state]
                    or obj.status.get("observedGeneration") != obj.generation):
                obj.write(record)
            return record
        executor = KubernetesExecutor(self.kubernetes_config(jobs), self.store, self.api, owner=obj.owner,
                                      stopped=stopped, observer=obj.observe)
        orch = Orchestrator(self.store, executor, self.cfg.controller.retry, listeners=[obj.transition])
        try:
            return orch.drive(record.run_id)
        finally:
            executor.close()

    def serve(self, body: dict[str, Any], stopped: Any) -> None:
        """A run's daemon: drive it; when it has ended, look again now and then (a resume through
        StartRun sets the record pending). ``stopped``: kopf's stop flag (truthy, ``wait``, ``reason``)."""
        name = body["metadata"]["name"]
        while not stopped:
            try:
                self.reconcile(body, lambda: bool(stopped))
            except BaseException as exc:  # Stopped, or a store/API failure: the daemon ends or retries
                if bool(stopped):
                    break
                if not isinstance(exc, Exception):
                    raise
                log.exception("reconcile failed", extra={"run": name})
            stopped.wait(self.idle_s)
        reason = getattr(stopped, "reason", None)
        if reason is not None and kopf.DaemonStoppingReason.RESOURCE_DELETED in reason and self.runs.exists(name):
            record = self.runs.load(name)
            if record.state not in TERMINAL:
                record.state, record.message = "cancelled", "the DistillationRun was deleted"
                for r in record.stages:
                    if r.state == "running":
                        r.state = "cancelled"
                self.runs.save(record)
                event(log, "transition", run=name, cycle=0, stage="", state="cancelled", message=record.message)


# -- one active controller ----------------------------------------------------------------------------------------
def _micro(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """Holds a coordination.k8s.io Lease: :meth:`try_acquire` takes it when it is free or expired
    and renews it while held (optimistic concurrency on the Lease's resourceVersion)."""

    def __init__(self, api: k8s.ApiClient, namespace: str, name: str, identity: str, duration_s: int = 15,
                 clock: Callable[[], float] = time.time) -> None:
        self.leases = k8s.CoordinationV1Api(api)
        self.serializer = api
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration_s = duration_s
        self.clock = clock

    def try_acquire(self) -> bool:
        now = self.clock()
        try:
            lease = self.serializer.sanitize_for_serialization(self.leases.read_namespaced_lease(self.name,
                                                                                               self.namespace))
        except ApiException as exc:
            if exc.status != 404:
                return False
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": self.name},
                    "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": self.duration_s,
                             "acquireTime": _micro(now), "renewTime": _micro(now), "leaseTransitions": 0}}
            try:
                self.leases.create_namespaced_lease(self.namespace, body)
                return True
            except ApiException:
                return False
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = spec.get("renewTime")
        expires = (datetime.fromisoformat(renewed.replace("Z", "+00:00")).timestamp() if renewed else 0.0) + float(
            spec.get("leaseDurationSeconds") or self.duration_s)
        if holder and holder != self.identity and expires > now:
            return False
        if holder != self.identity:
            spec["acquireTime"] = _micro(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=self.duration_s, renewTime=_micro(now))
        lease["spec"] = spec
        try:
            self.leases.replace_namespaced_lease(self.name, self.namespace, lease)
            return True
        except ApiException:  # 409: someone else renewed or took it first
            return False


# -- kopf ---------------------------------------------------------------------------------------------------------
def make_registry(reconciler: Reconciler, login: Callable[..., Any] | None = None) -> kopf.OperatorRegistry:
    """kopf's handlers: a daemon per DistillationRun; settings that keep kopf's own bookkeeping in
    ``iterkd.io`` annotations (the status belongs to the CRD's schema)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = "iterkd.io/controller"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="iterkd.io")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="iterkd.io", key="last-handled-configuration")
        settings.posting.level = 100  # the reconciler records its own Events; kopf's stay in its log
        settings.watching.server_timeout = reconciler.cfg.controller.kubernetes.watch_timeout_s
        settings.execution.max_workers = 64
        settings.scanning.disabled = True  # resolve the CRD once at start: no cluster-wide CRD/namespace watch

    @kopf.on.login(registry=registry)
    def authenticate(**kwargs: Any) -> Any:
        return login(**kwargs) if login is not None else kopf.login_via_client(**kwargs)

    @kopf.daemon(GROUP, VERSION, PLURAL, registry=registry, cancellation_timeout=30.0)
    def drive(body: kopf.Body, stopped: Any, **_: Any) -> None:
        reconciler.serve(body, stopped)  # type: ignore[arg-type]

    return registry


class Operator:
    """Runs kopf (in its own thread and event loop) while this replica holds the Lease."""

    def __init__(self, cfg: ControllerFileConfig, store: ArtifactStore, api: k8s.ApiClient | None = None,
                 login: Callable[..., Any] | None = None, identity: str | None = None) -> None:
        self.cfg = cfg
        self.kcfg = cfg.controller.kubernetes
        self.api = api or api_client()
        self.reconciler = Reconciler(cfg, store, self.api, identity)
        self.identity = self.reconciler.identity
        self.elector = LeaseElector(self.api, self.kcfg.namespace, self.kcfg.lease_name, self.identity,
                                    self.kcfg.lease_duration_s)
        self.registry = make_registry(self.reconciler, login)
        self.leading = threading.Event()
        self._stop = threading.Event()
        self._kopf_stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Operator:
        self._thread = threading.Thread(target=self._run, name="iterkd-operator", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        self._kopf_stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.elector.try_acquire():
                self._stop.wait(self.kcfg.lease_renew_s)
                continue
            self._kopf_stop = threading.Event()
            if self._stop.is_set():
                break
            self.leading.set()
            event(log, "leading", identity=self.identity, lease=self.kcfg.lease_name)
            renewer = threading.Thread(target=self._renew, args=(self._kopf_stop,), name="lease-renew", daemon=True)
            renewer.start()
            try:
                asyncio.run(kopf.operator(registry=self.registry, namespaces=[self.kcfg.namespace],
                                          standalone=True, stop_flag=self._kopf_stop))
            except Exception:
                log.exception("the operator stopped")
            finally:
                self._kopf_stop.set()
                self.leading.clear()
                event(log, "not leading", identity=self.identity)
            self._stop.wait(self.kcfg.lease_renew_s)

    def _renew(self, stop: threading.Event) -> None:
        last = time.monotonic()
        while not stop.wait(self.kcfg.lease_renew_s):
            if self.elector.try_acquire():
                last = time.monotonic()
            elif time.monotonic() - last > self.kcfg.lease_duration_s:
                event(log, "lease lost", level=30, identity=self.identity)
                stop.set()


def cluster_launcher(api: k8s.ApiClient, namespace: str, store: ArtifactStore) -> Callable[[RunRecord], None]:
    """StartRun in cluster mode: the run's DistillationRun is created (a resumed run's exists
    already), and the operator's daemon drives it; a resumed run that had ended is set pending."""
    runs = RunStore(store)

    def launch(record: RunRecord) -> None:
        try:
            create_run_object(api, namespace, record.run_id, record.config)
        except Conflict:
            pass
        if record.state in TERMINAL:
            record.state, record.message = "pending", "resumed"
            runs.save(record)

    return launch


def start_operator(cfg: ControllerFileConfig, store: ArtifactStore, api: k8s.ApiClient | None = None,
                   login: Callable[..., Any] | None = None) -> tuple[Callable[[RunRecord], None], Callable[[], None]]:
    """``iterkd serve controller`` with the kubernetes executor: the operator (while this replica
    holds the Lease) and StartRun's launcher. Returns (launcher, stop)."""
    op = Operator(cfg, store, api, login).start()
    return cluster_launcher(op.api, cfg.controller.kubernetes.namespace, store), op.stop
