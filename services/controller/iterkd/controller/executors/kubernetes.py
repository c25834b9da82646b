"""The kubernetes executor: one batch/v1 Job per stage attempt, running ``iterkd stage run``.

A stage Job runs the stage client (the controller image) with the ConfigMap's configuration; the
client calls the owning service's RPC and waits (docs/kubernetes.md). The Job carries the retry
and time policy: ``backoffLimit``, a ``podFailurePolicy`` (a disruption does not count, exit code
2 — "not retryable" — fails the Job at once), ``activeDeadlineSeconds`` and a TTL that is set for a
failure at creation (failed pods, and their logs, stay) and shortened once the stage succeeds.

Names are deterministic, ``ikd-{run}-c{cycle}-{stage}-a{attempt}`` (at most 63 characters), so a
create that meets AlreadyExists adopts the Job instead of making a second one, and a restarted
controller finds the attempt it was waiting for (:meth:`KubernetesExecutor.resumable`).

Job and pod state comes from a watch per run (:class:`Informer`: list, then watch from the list's
resourceVersion, list again on 410 Gone). The executor turns it into a :class:`StageStatus` whose
``reason`` is one of: Unschedulable, ImagePullFailed, ContainerConfigError (a pod that cannot
start; past ``pending_deadline_s`` the Job is suspended and the stage fails with that reason),
DeadlineExceeded, BackoffLimitExceeded, StageFailed (exit code 2), JobDeleted, JobRejected.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from pydantic import ConfigDict, Field

from iterkd.controller.config import KubernetesConfig, RunConfig
from iterkd.controller.executors.base import Executor, Handle, StageStatus, Stopped
from iterkd.controller.planner import Step
from iterkd.controller.stagerun import Outcome
from iterkd.shared.config import Section
from iterkd.shared.log import event, get_logger
from iterkd.shared.stages import read_manifest, stage_prefix
from iterkd.shared.store import ArtifactStore

log = get_logger("iterkd.controller.kubernetes")

PART_OF = "app.kubernetes.io/part-of"
L_RUN, L_CYCLE, L_STAGE, L_ATTEMPT = "iterkd.io/run", "iterkd.io/cycle", "iterkd.io/stage", "iterkd.io/attempt"
A_FAILED = "iterkd.io/failed"  # "Reason: message" on a Job the executor gave up on (a pod that never started)
CONTAINER = "stage"
MAX_NAME = 63
IMAGE_PULL = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable")
CONTAINER_CONFIG = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")


def job_name(run_id: str, cycle: int, stage: str, attempt: int) -> str:
    """``ikd-{run}-c{cycle}-{stage}-a{attempt}``; a run id too long for 63 characters is cut and
    given a hash of the whole id, so two long runs never share a name."""
    suffix = f"-c{cycle}-{stage}-a{attempt}"
    name = f"ikd-{run_id}{suffix}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    room = MAX_NAME - len("ikd-") - len(suffix) - len(digest) - 1
    if room < 1:
        raise ValueError(f"cannot name a Job for cycle {cycle} {stage} attempt {attempt} within {MAX_NAME} characters")
    head = run_id[:room].rstrip("-")
    return f"ikd-{head}-{digest}{suffix}"


def stage_labels(run_id: str, cycle: int, stage: str, attempt: int) -> dict[str, str]:
    return {PART_OF: "iterkd", L_RUN: run_id, L_CYCLE: str(cycle), L_STAGE: stage, L_ATTEMPT: str(attempt)}


def run_selector(run_id: str) -> str:
    return f"{PART_OF}=iterkd,{L_RUN}={run_id}"


class JobOverrides(Section):
    """A DistillationRun's ``spec.kubernetes``: this run's Job settings over the controller's."""

    backoff_limit: int | None = Field(default=None, ge=0, alias="backoffLimit")
    active_deadline_s: int | None = Field(default=None, ge=1, alias="activeDeadlineSeconds")
    pending_deadline_s: int | None = Field(default=None, ge=1, alias="startDeadlineSeconds")
    ttl: dict[str, int] | None = Field(default=None, alias="ttlSecondsAfterFinished")
    resources: dict[str, Any] | None = None
    node_selector: dict[str, str] | None = Field(default=None, alias="nodeSelector")
    tolerations: list[dict[str, Any]] | None = None
    affinity: dict[str, Any] | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def apply(self, cfg: KubernetesConfig) -> KubernetesConfig:
        update: dict[str, Any] = {k: v for k, v in {
            "backoff_limit": self.backoff_limit, "active_deadline_s": self.active_deadline_s,
            "pending_deadline_s": self.pending_deadline_s, "resources": self.resources,
            "node_selector": self.node_selector, "tolerations": self.tolerations, "affinity": self.affinity,
        }.items() if v is not None}
        if self.ttl:
            unknown = sorted(set(self.ttl) - {"succeeded", "failed"})
            if unknown:
                raise ValueError(f"ttlSecondsAfterFinished: unknown key(s) {', '.join(unknown)}; "
                                 "use succeeded and failed")
            if "succeeded" in self.ttl:
                update["ttl_after_success_s"] = self.ttl["succeeded"]
            if "failed" in self.ttl:
                update["ttl_after_failure_s"] = self.ttl["failed"]
        return cfg.model_copy(update=update)


def api_client() -> k8s.ApiClient:
    """In the cluster: the pod's ServiceAccount; outside it: the kubeconfig ($KUBECONFIG)."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(client_configuration=configuration)
    return k8s.ApiClient(configuration)


def _time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _api_message(exc: ApiException) -> str:
    import json

    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return f"{exc.status} {exc.reason}"


class Informer:
    """A cache of one kind's objects (as the API server's JSON) in a namespace, by label selector.

    It lists, then watches from the list's resourceVersion (with bookmarks); a watch that ends
    is re-opened from the last resourceVersion seen, and a 410 Gone (the version is too old)
    lists again. :meth:`wait` returns when anything changed."""

    def __init__(self, list_fn: Callable[..., Any], namespace: str, selector: str, timeout_s: int = 300,
                 kind: str = "object", cond: threading.Condition | None = None) -> None:
        """``cond``: a condition shared with other informers, notified on every change."""
        self.list_fn = list_fn
        self.namespace = namespace
        self.selector = selector
        self.timeout_s = timeout_s
        self.kind = kind
        self.resource_version = ""
        self.lists = 0       # how often the cache was filled from a list (1 + re-lists after 410)
        self.watches = 0     # how many watch requests were opened
        self._items: dict[str, dict[str, Any]] = {}
        self._cond = cond or threading.Condition()
        self.changes = 0
        self._stop = threading.Event()
        self._watch: k8s_watch.Watch | None = None
        self._thread: threading.Thread | None = None
        self._serializer = k8s.ApiClient()

    def start(self) -> Informer:
        self._list()
        self._thread = threading.Thread(target=self._loop, name=f"watch-{self.kind}-{self.selector}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        with self._cond:
            self._cond.notify_all()

    def get(self, name: str) -> dict[str, Any] | None:
        with self._cond:
            return self._items.get(name)

    def items(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._items.values())

    def put(self, obj: dict[str, Any]) -> None:
        """Record an object this process just created or read (it is newer than the cache)."""
        with self._cond:
            self._store(obj)

    def _store(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        old = self._items.get(name)
        if old is not None and int(old["metadata"].get("resourceVersion") or 0) > int(
                obj["metadata"].get("resourceVersion") or 0):
            return  # an older copy than the one held
        self._items[name] = obj
        self.changes += 1
        self._cond.notify_all()

    def _list(self) -> None:
        result = self.list_fn(self.namespace, label_selector=self.selector)
        data = self._serializer.sanitize_for_serialization(result)
        with self._cond:
            self._items = {o["metadata"]["name"]: o for o in data.get("items") or []}
            self.resource_version = (data.get("metadata") or {}).get("resourceVersion") or ""
            self.lists += 1
            self.changes += 1
            self._cond.notify_all()

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._watch_once()
                failures = 0
            except ApiException as exc:
                if self._stop.is_set():
                    return
                if exc.status == 410:
                    event(log, "watch expired, listing again", kind=self.kind, selector=self.selector,
                          resource_version=self.resource_version)
                    self._relist()
                    continue
                failures += 1
                event(log, "watch failed", level=30, kind=self.kind, status=exc.status, reason=str(exc.reason))
                self._stop.wait(min(30.0, 0.5 * 2 ** failures))
                self._relist()
            except Exception as exc:  # connection reset, API server restarting: back off, list again
                if self._stop.is_set():
                    return
                failures += 1
                event(log, "watch failed", level=30, kind=self.kind, error=f"{type(exc).__name__}: {exc}")
                self._stop.wait(min(30.0, 0.5 * 2 ** failures))
                self._relist()

    def _relist(self) -> None:
        try:
            self._list()
        except Exception as exc:
            event(log, "list failed", level=30, kind=self.kind, error=f"{type(exc).__name__}: {exc}")

    def _watch_once(self) -> None:
        self._watch = k8s_watch.Watch()
        self.watches += 1
        stream = self._watch.stream(self.list_fn, self.namespace, label_selector=self.selector,
                                    resource_version=self.resource_version, allow_watch_bookmarks=True,
                                    timeout_seconds=self.timeout_s, deserialize=False)
        for ev in stream:
            if self._stop.is_set():
                return
            kind, obj = ev.get("type"), ev.get("object") or {}
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            with self._cond:
                if kind in ("ADDED", "MODIFIED"):
                    self._store(obj)
                elif kind == "DELETED":
                    self._items.pop(obj["metadata"]["name"], None)
                    self.changes += 1
                    self._cond.notify_all()
                if rv:
                    self.resource_version = rv


class _RunWatch:
    """The Jobs and pods of one run."""

    def __init__(self, batch: k8s.BatchV1Api, core: k8s.CoreV1Api, namespace: str, run_id: str,
                 timeout_s: int) -> None:
        sel = run_selector(run_id)
        self.cond = threading.Condition()
        self.jobs = Informer(batch.list_namespaced_job, namespace, sel, timeout_s, "jobs", self.cond).start()
        self.pods = Informer(core.list_namespaced_pod, namespace, sel, timeout_s, "pods", self.cond).start()

    def version(self) -> int:
        with self.cond:
            return self.jobs.changes + self.pods.changes

    def wait(self, timeout: float, since: int) -> int:
        """Wait until a Job or pod of the run changed after ``since``; the current version."""
        with self.cond:
            self.cond.wait_for(lambda: self.jobs.changes + self.pods.changes != since, timeout)
            return self.jobs.changes + self.pods.changes

    def stop(self) -> None:
        self.jobs.stop()
        self.pods.stop()


class KubernetesExecutor(Executor):
    name = "kubernetes"

    def __init__(self, cfg: KubernetesConfig, store: ArtifactStore, api: k8s.ApiClient, *,
                 owner: dict[str, Any] | None = None, stopped: Callable[[], bool] = lambda: False,
                 observer: Callable[[Handle, StageStatus], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """``owner``: the DistillationRun (apiVersion, kind, name, uid) that owns the Jobs;
        ``stopped``: when true, :meth:`status` raises :class:`Stopped` (the work goes on);
        ``observer``: called with every change of a stage's status (reason and message too)."""
        self.cfg = cfg
        self.store = store
        self.api = api
        self.batch = k8s.BatchV1Api(api)
        self.core = k8s.CoreV1Api(api)
        self.owner = owner
        self.stopped = stopped
        self.observer = observer
        self.clock = clock
        self._watches: dict[str, _RunWatch] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: KubernetesConfig, store: ArtifactStore, **kwargs: Any) -> KubernetesExecutor:
        return cls(cfg, store, api_client(), **kwargs)

    # -- the Job ------------------------------------------------------------------------------------------
    def build_job(self, run_id: str, step: Step, attempt: int) -> dict[str, Any]:
        c = self.cfg
        name = job_name(run_id, step.cycle, step.stage, attempt)
        labels = {**c.labels, **stage_labels(run_id, step.cycle, step.stage, attempt)}
        mounts: list[dict[str, Any]] = [
            {"name": "config", "mountPath": c.config_path.rsplit("/", 1)[0] or "/", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ]
        volumes: list[dict[str, Any]] = [
            {"name": "config", "configMap": {"name": c.config_map}},
            {"name": "tmp", "emptyDir": {"sizeLimit": c.scratch_size_limit}},
        ]
        if c.store_secret:
            mounts.append({"name": "store-credentials", "mountPath": c.credentials_dir, "readOnly": True})
            volumes.append({"name": "store-credentials", "secret": {"secretName": c.store_secret}})
        container = {
            "name": CONTAINER,
            "image": c.stage_image,
            "imagePullPolicy": c.image_pull_policy,
            "command": ["iterkd", "stage", "run", "--run", run_id, "--cycle", str(step.cycle),
                        "--stage", step.stage, "--config", c.config_path],
            "env": [{"name": "HOME", "value": "/tmp"}, {"name": "ITERKD_ATTEMPT", "value": str(attempt)}],
            "resources": c.resources,
            "securityContext": c.container_security_context,
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "volumeMounts": mounts,
        }
        pod_spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": c.pod_security_context,
            "containers": [container],
            "volumes": volumes,
        }
        if c.service_account:
            pod_spec["serviceAccountName"] = c.service_account
        if c.image_pull_secrets:
            pod_spec["imagePullSecrets"] = [{"name": s} for s in c.image_pull_secrets]
        if c.node_selector:
            pod_spec["nodeSelector"] = c.node_selector
        if c.tolerations:
            pod_spec["tolerations"] = c.tolerations
        if c.affinity:
            pod_spec["affinity"] = c.affinity
        metadata: dict[str, Any] = {"name": name, "namespace": c.namespace, "labels": labels,
                                    "annotations": {"iterkd.io/step": str(step)}}
        if self.owner:
            metadata["ownerReferences"] = [{**self.owner, "controller": True, "blockOwnerDeletion": True}]
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": metadata,
            "spec": {
                "backoffLimit": c.backoff_limit,
                "activeDeadlineSeconds": c.active_deadline_s,
                # a failure's TTL first (its pods and logs stay); shortened when the stage succeeds
                "ttlSecondsAfterFinished": c.ttl_after_failure_s,
                "podFailurePolicy": {"rules": [
                    {"action": "FailJob", "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                                          "values": sorted(set(c.non_retryable_exit_codes))}},
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        }

    # -- Executor ---------------------------------------------------------------------------------------------
    def _watch(self, run_id: str) -> _RunWatch:
        with self._lock:
            w = self._watches.get(run_id)
            if w is None:
                w = self._watches[run_id] = _RunWatch(self.batch, self.core, self.cfg.namespace, run_id,
                                                      self.cfg.watch_timeout_s)
            return w

    def submit(self, run_id: str, step: Step, run: RunConfig, attempt: int) -> Handle:
        body = self.build_job(run_id, step, attempt)
        name = body["metadata"]["name"]
        handle = Handle(run_id, step, attempt, {"job": name, "adopted": False, "last": None})
        watch = self._watch(run_id)
        fields = {"run": run_id, "cycle": step.cycle, "stage": step.stage, "attempt": attempt, "job": name}
        try:
            created = self.batch.create_namespaced_job(self.cfg.namespace, body)
            watch.jobs.put(self.api.sanitize_for_serialization(created))
            event(log, "stage job created", **fields)
            return handle
        except ApiException as exc:
            if exc.status != 409:
                retryable = exc.status >= 500 or exc.status == 429
                handle.data["error"] = StageStatus(
                    state="failed", reason="JobRejected", retryable=retryable,
                    message=f"creating Job {name} failed: {exc.status} {_api_message(exc)}")
                event(log, "stage job rejected", level=40, status=exc.status, message=_api_message(exc), **fields)
                return handle
        existing = self.api.sanitize_for_serialization(self.batch.read_namespaced_job(name, self.cfg.namespace))
        want = stage_labels(run_id, step.cycle, step.stage, attempt)
        have = existing["metadata"].get("labels") or {}
        if any(have.get(k) != v for k, v in want.items()):
            handle.data["error"] = StageStatus(
                state="failed", reason="JobConflict", retryable=False,
                message=f"a Job named {name} exists but belongs to something else (labels {have})")
            return handle
        watch.jobs.put(existing)
        handle.data["adopted"] = True
        event(log, "stage job adopted", **fields)
        return handle

    def resumable(self, run_id: str, step: Step, attempt: int) -> bool:
        name = job_name(run_id, step.cycle, step.stage, attempt)
        job = self._watch(run_id).jobs.get(name)
        if job is None:
            return False
        return _finished(job) is None and not (job["metadata"].get("annotations") or {}).get(A_FAILED)

    def wait(self, handle: Handle, timeout: float) -> bool:
        """Wait until the run's Jobs or pods change (or ``timeout``); whether they did."""
        w = self._watch(handle.run_id)
        since = handle.data.get("seen", w.version())
        handle.data["seen"] = w.wait(timeout, since)
        return handle.data["seen"] != since

    def status(self, handle: Handle) -> StageStatus:
        if self.stopped():
            raise Stopped()
        if "error" in handle.data:
            return handle.data["error"]
        if handle.data.get("cancelled"):
            return StageStatus(state="cancelled", reason="Cancelled", message="cancelled; its Job was deleted")
        st = self._status(handle)
        last = handle.data.get("last")
        if last is None or (last.state, last.reason, last.message) != (st.state, st.reason, st.message):
            handle.data["last"] = st
            event(log, "stage job", level=30 if st.state == "failed" or st.reason else 20, run=handle.run_id,
                  cycle=handle.step.cycle, stage=handle.step.stage, attempt=handle.attempt, job=handle.data["job"],
                  state=st.state, reason=st.reason, message=st.message)
            if self.observer is not None:
                self.observer(handle, st)
        return st

    def _status(self, handle: Handle) -> StageStatus:
        name = handle.data["job"]
        w = self._watch(handle.run_id)
        job = w.jobs.get(name)
        if job is None:
            try:
                job = self.api.sanitize_for_serialization(self.batch.read_namespaced_job(name, self.cfg.namespace))
                w.jobs.put(job)
            except ApiException as exc:
                if exc.status == 404:
                    return StageStatus(state="failed", reason="JobDeleted", retryable=True,
                                       message=f"Job {name} was deleted before it finished")
                raise
        pods = sorted((p for p in w.pods.items() if _labels(p).get(L_ATTEMPT) == str(handle.attempt)
                       and _labels(p).get(L_CYCLE) == str(handle.step.cycle)
                       and _labels(p).get(L_STAGE) == handle.step.stage), key=_age_key)
        done = _finished(job)
        if done == "Complete":
            return self._succeeded(handle, job)
        if done == "Failed":
            if not any(_is_failed(p) for p in pods):  # the pods' watch may lag the Job's: read them once
                pods = self._pods(handle)
            return _failure(job, pods)
        marked = (job["metadata"].get("annotations") or {}).get(A_FAILED)
        if marked:
            reason, _, message = marked.partition(": ")
            return StageStatus(state="failed", reason=reason, message=message, retryable=False)
        note = _disruptions(pods)
        latest = pods[-1] if pods else None
        if latest is None or (latest.get("status") or {}).get("phase", "Pending") == "Pending":
            why = _pending_reason(latest) if latest is not None else None
            since = _time((latest or job)["metadata"].get("creationTimestamp")) or self.clock()
            waited = self.clock() - since
            if waited > self.cfg.pending_deadline_s:
                reason, message = why or ("StartDeadlineExceeded", "no pod of the Job was created")
                message = (f"the stage pod did not start within {self.cfg.pending_deadline_s}s "
                           f"(waited {waited:.0f}s): {message}")
                self._give_up(name, reason, message)
                return StageStatus(state="failed", reason=reason, message=message, retryable=False)
            if why is not None:
                return StageStatus(state="pending", reason=why[0], message=why[1])
            return StageStatus(state="pending", message=note)
        return StageStatus(state="running", message=note)

    def _succeeded(self, handle: Handle, job: dict[str, Any]) -> StageStatus:
        if not handle.data.get("ttl_patched") and job["spec"].get("ttlSecondsAfterFinished") != \
                self.cfg.ttl_after_success_s:
            try:
                self.batch.patch_namespaced_job(handle.data["job"], self.cfg.namespace,
                                                {"spec": {"ttlSecondsAfterFinished": self.cfg.ttl_after_success_s}})
            except ApiException as exc:  # the TTL is housekeeping: the stage is done either way
                if exc.status != 404:
                    event(log, "ttl patch failed", level=30, job=handle.data["job"], status=exc.status)
        handle.data["ttl_patched"] = True
        manifest = read_manifest(self.store, stage_prefix(handle.run_id, handle.step.cycle, handle.step.stage))
        if manifest is None:
            return StageStatus(state="failed", reason="NoManifest", retryable=True,
                               message=f"Job {handle.data['job']} completed but the stage has no manifest")
        return StageStatus(state="succeeded", outcome=Outcome(
            metrics=dict(manifest.metrics), outputs={k: v.uri for k, v in manifest.outputs.items()}, cached=False))

    def _give_up(self, name: str, reason: str, message: str) -> None:
        """A pod that never starts: suspend the Job (its pods go, the Job and its story stay) and
        mark it, so a restarted controller reads the same failure."""
        patch = {"metadata": {"annotations": {A_FAILED: f"{reason}: {message}"[:4000]}}, "spec": {"suspend": True}}
        try:
            self.batch.patch_namespaced_job(name, self.cfg.namespace, patch)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def cancel(self, handle: Handle) -> None:
        handle.data["cancelled"] = True
        if "error" in handle.data:
            return
        try:
            self.batch.delete_namespaced_job(handle.data["job"], self.cfg.namespace,
                                             propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
        event(log, "stage job deleted", run=handle.run_id, cycle=handle.step.cycle, stage=handle.step.stage,
              job=handle.data["job"])

    def _pods(self, handle: Handle) -> list[dict[str, Any]]:
        """The attempt's pods, read from the API server, oldest first."""
        sel = ",".join(f"{k}={v}" for k, v in stage_labels(handle.run_id, handle.step.cycle, handle.step.stage,
                                                            handle.attempt).items())
        pods = self.api.sanitize_for_serialization(self.core.list_namespaced_pod(self.cfg.namespace,
                                                                                 label_selector=sel))["items"]
        return sorted(pods, key=_age_key)

    def logs(self, handle: Handle) -> str:
        """The log of the Job's latest pod (after a retry, the new pod's; failed pods are kept)."""
        pods = self._pods(handle)
        if not pods:
            return ""
        name = pods[-1]["metadata"]["name"]
        try:
            return str(self.core.read_namespaced_pod_log(name, self.cfg.namespace, container=CONTAINER))
        except ApiException as exc:
            return f"(no log from pod {name}: {exc.status} {_api_message(exc)})"

    def close(self) -> None:
        with self._lock:
            for w in self._watches.values():
                w.stop()
            self._watches.clear()

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "namespace": self.cfg.namespace, "image": self.cfg.stage_image}


# -- reading Job and pod status ---------------------------------------------------------------------------------
def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return obj["metadata"].get("labels") or {}


def _age_key(obj: dict[str, Any]) -> tuple[float, str]:
    return (_time(obj["metadata"].get("creationTimestamp")) or 0.0, obj["metadata"]["name"])


def _is_failed(pod: dict[str, Any]) -> bool:
    """A pod that failed and counts (a disrupted pod does not)."""
    return (pod.get("status") or {}).get("phase") == "Failed" and "DisruptionTarget" not in _conditions(pod)


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}


def _finished(job: dict[str, Any]) -> str | None:
    conds = _conditions(job)
    if "Complete" in conds:
        return "Complete"
    if "Failed" in conds:
        return "Failed"
    return None


def _termination(pod: dict[str, Any]) -> str:
    """The stage container's end: exit code, reason and its termination message (the last lines of
    its log on an error: terminationMessagePolicy FallbackToLogsOnError)."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") != CONTAINER:
            continue
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if term:
            text = (term.get("message") or "").strip()
            head = f"exit code {term.get('exitCode')}" + (f" ({term['reason']})" if term.get("reason") else "")
            return f"{head}: {text}" if text else head
    return ""


def _failure(job: dict[str, Any], pods: list[dict[str, Any]]) -> StageStatus:
    cond = _conditions(job)["Failed"]
    reason = cond.get("reason") or "StageFailed"
    message = cond.get("message") or "the Job failed"
    failed = [p for p in pods if _is_failed(p)]
    if failed:
        term = _termination(failed[-1])
        if term:
            message = f"{message}; pod {failed[-1]['metadata']['name']}: {term}"
    if reason == "PodFailurePolicy":
        reason = "StageFailed"  # the stage said its failure is not worth a retry (exit code 2)
    return StageStatus(state="failed", reason=reason, message=message, retryable=False)


def _pending_reason(pod: dict[str, Any]) -> tuple[str, str] | None:
    """Why a pod has not started: (Unschedulable | ImagePullFailed | ContainerConfigError, message)."""
    status = pod.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            return (c.get("reason") or "Unschedulable", c.get("message") or "the pod cannot be scheduled")
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        why = waiting.get("reason") or ""
        if why in IMAGE_PULL:
            return ("ImagePullFailed", f"{why}: {waiting.get('message') or cs.get('image', '')}")
        if why in CONTAINER_CONFIG:
            return ("ContainerConfigError", f"{why}: {waiting.get('message') or ''}".rstrip(": "))
    return None


def _disruptions(pods: list[dict[str, Any]]) -> str:
    """A note on pods the cluster took away (preemption, eviction, node drain): the Job replaces
    them and, by its podFailurePolicy, does not count them as failures."""
    notes = []
    for p in pods:
        cond = _conditions(p).get("DisruptionTarget")
        if cond is not None:
            notes.append(f"pod {p['metadata']['name']} was disrupted ({cond.get('reason', '')}: "
                         f"{cond.get('message', '')}); not counted as a failure")
    return "; ".join(notes)
