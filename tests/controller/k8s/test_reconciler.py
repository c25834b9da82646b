"""The DistillationRun reconciler against an API server on 127.0.0.1: a run applied with kubectl
runs to the end with its status, conditions and Events; a stage pod that cannot be scheduled
stalls the run with that reason and, past the start deadline, fails it; a controller restart in
the middle adopts the running Job and creates no second one; a failed Job's reason and its pod's
termination message land in the status; an invalid spec is refused on the object; one controller
holds the Lease at a time."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from iterkd.controller.config import ControllerFileConfig, KubernetesConfig
from iterkd.controller.operator import PLURAL, LeaseElector, Reconciler, create_run_object
from iterkd.controller.runs import RunStore
from iterkd.shared.errors import Conflict
from iterkd.shared.store import LocalStore
from tests.controller.k8s.apiserver import FakeApiServer, recorded
from tests.controller.k8s.conftest import NS
from tests.controller.k8s.helpers import JobPlayer, Stopper, finish_stage

RUNS = "iterkd.io/v1alpha1/distillationruns"
JOBS = "batch/v1/jobs"
ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "helm" / "iterkd" / "crds" / "distillationruns.iterkd.io.yaml"
SPEC = {"cycles": 1, "evolve_last_cycle": True,  # every stage runs as a Job
        "pool": {"source": "seed", "limit": 3}, "eval": {"source": "seed", "limit": 2},
        "kubernetes": {"backoffLimit": 1, "startDeadlineSeconds": 600,
                       "ttlSecondsAfterFinished": {"succeeded": 60, "failed": 600}}}


def config(kcfg: KubernetesConfig) -> ControllerFileConfig:
    return ControllerFileConfig.model_validate({"controller": {
        "executor": "kubernetes", "kubernetes": kcfg.model_dump(), "retry": {"max_attempts": 2, "backoff_s": 0}}})


def apply(server: FakeApiServer, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """``kubectl apply -f run.yaml``."""
    body = recorded("distillationrun.json", NAME=name)
    body["spec"] = spec
    return server.create(RUNS, NS, body)


def start(reconciler: Reconciler, server: FakeApiServer, name: str) -> tuple[threading.Thread, Stopper]:
    """What kopf does for the run: a daemon thread with a stop flag."""
    stopper = Stopper()
    body = server.get(RUNS, NS, name)
    thread = threading.Thread(target=reconciler.serve, args=(body, stopper), daemon=True)
    thread.start()
    return thread, stopper


def labels(job: dict[str, Any]) -> tuple[str, int, str]:
    lb = job["metadata"]["labels"]
    return lb["iterkd.io/run"], int(lb["iterkd.io/cycle"]), lb["iterkd.io/stage"]


def complete(server: FakeApiServer, store: LocalStore) -> Any:
    """A Job controller under which every stage succeeds (its service writes the manifest)."""

    def act(job: dict[str, Any]) -> None:
        run, cycle, stage = labels(job)
        server.add_pod(job["metadata"]["name"], "pod-status-succeeded.json")
        finish_stage(store, run, cycle, stage, {"pass@1": 0.25} if stage == "evaluate" else {"samples": 4.0})
        server.set_job_status(job["metadata"]["name"], "job-status-complete.json")

    return act


def status(server: FakeApiServer, name: str) -> dict[str, Any]:
    obj = server.get(RUNS, NS, name)
    assert obj is not None
    return obj.get("status") or {}


def events(server: FakeApiServer, name: str) -> list[tuple[str, str, str]]:
    return [(e["type"], e["reason"], e["message"]) for e in server.items("v1/events")
            if e["involvedObject"]["name"] == name]


def check_against_crd(obj: dict[str, Any]) -> None:
    """The status the controller writes fits the CRD's schema (the CRD lives in helm/iterkd)."""
    if not CRD.exists():
        return
    import jsonschema

    crd = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")["schema"]["openAPIV3Schema"]
    jsonschema.Draft202012Validator(schema["properties"]["status"],
                                    format_checker=jsonschema.FormatChecker()).validate(obj["status"])


def test_an_applied_run_runs_to_the_end_with_status_conditions_and_events(
        apiserver: FakeApiServer, store: LocalStore, kcfg: KubernetesConfig) -> None:
    obj = apply(apiserver, "demo", SPEC)
    rec = Reconciler(config(kcfg), store, apiserver.client(), identity="controller-0", idle_s=0.2)
    with JobPlayer(apiserver, complete(apiserver, store)):
        thread, stopper = start(rec, apiserver, "demo")
        apiserver.wait_for(lambda: status(apiserver, "demo").get("phase") == "Succeeded", 60)
        stopper.stop()
        thread.join(20)
    st = status(apiserver, "demo")
    assert (st["cycleText"], st["progress"], st["lastPassAt1"], st["stage"]) == ("1/1", "100%", "0.250", "evaluate")
    assert st["observedGeneration"] == obj["metadata"]["generation"]
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Succeeded"]["status"] == "True" and conds["Failed"]["status"] == "False"
    assert all(c["observedGeneration"] == 1 for c in conds.values())
    assert [s["name"] for s in st["stages"]] == ["teacher-solve", "verify", "train", "student-solve", "feedback",
                                                 "evolve", "evaluate"]
    assert all(s["state"] == "Succeeded" and s["attempt"] == 1 and s["artifacts"] for s in st["stages"])
    assert st["stages"][0]["job"] == "ikd-demo-c1-teacher-solve-a1"
    check_against_crd(apiserver.get(RUNS, NS, "demo") or {})

    jobs = apiserver.items(JOBS)
    assert len(jobs) == 7
    for job in jobs:
        assert job["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
        assert job["spec"]["backoffLimit"] == 1  # the run's spec.kubernetes over the controller's
        assert job["spec"]["ttlSecondsAfterFinished"] == 60  # shortened after success
    reasons = [r for _, r, _ in events(apiserver, "demo")]
    assert reasons.count("StageStarted") == 7 and reasons.count("StageSucceeded") == 7
    assert "RunCreated" in reasons and reasons[-1] == "RunSucceeded"
    # the status patches went to the status subresource, as a merge patch
    patches = apiserver.calls("PATCH", rf"/{PLURAL}/demo/status$")
    assert patches and all("merge-patch" in p.content_type for p in patches)


def test_an_unschedulable_pod_stalls_the_run_and_a_restart_fails_it_past_the_deadline(
        apiserver: FakeApiServer, store: LocalStore, kcfg: KubernetesConfig) -> None:
    apply(apiserver, "gpu", SPEC)

    def unschedulable(job: dict[str, Any]) -> None:
        apiserver.set_job_status(job["metadata"]["name"], "job-status-active.json")
        apiserver.add_pod(job["metadata"]["name"], "pod-status-unschedulable.json", age_s=120)

    rec = Reconciler(config(kcfg), store, apiserver.client(), identity="controller-0", idle_s=0.2)
    with JobPlayer(apiserver, unschedulable):
        thread, stopper = start(rec, apiserver, "gpu")
        apiserver.wait_for(lambda: status(apiserver, "gpu").get("reason") == "Unschedulable", 30)
        st = status(apiserver, "gpu")
        assert st["phase"] == "Running" and "Insufficient memory" in st["message"]
        conds = {c["type"]: c for c in st["conditions"]}
        assert (conds["Stalled"]["status"], conds["Stalled"]["reason"]) == ("True", "Unschedulable")
        assert ("Warning", "Unschedulable") in [(t, r) for t, r, _ in events(apiserver, "gpu")]
        check_against_crd(apiserver.get(RUNS, NS, "gpu") or {})
        stopper.stop(kopf.DaemonStoppingReason.OPERATOR_EXITING)  # the controller goes away
        thread.join(20)
        assert not thread.is_alive()
        record = RunStore(store).load("gpu")
        assert record.state == "running" and record.record(1, "teacher-solve").attempt == 1

        # the user lowers the start deadline; the next controller adopts the Job and gives up on it
        spec = {**SPEC, "kubernetes": {**SPEC["kubernetes"], "startDeadlineSeconds": 60}}
        apiserver.patch(RUNS, NS, "gpu", {"spec": spec}, status=False)
        rec2 = Reconciler(config(kcfg), store, apiserver.client(), identity="controller-1", idle_s=0.2)
        thread, stopper = start(rec2, apiserver, "gpu")
        apiserver.wait_for(lambda: status(apiserver, "gpu").get("phase") == "Failed", 30)
        stopper.stop()
        thread.join(20)
    st = status(apiserver, "gpu")
    assert st["reason"] == "Unschedulable" and "did not start within 60s" in st["message"]
    assert st["observedGeneration"] == 2
    conds = {c["type"]: c for c in st["conditions"]}
    assert (conds["Failed"]["status"], conds["Failed"]["reason"]) == ("True", "Unschedulable")
    assert conds["Stalled"]["status"] == "False"
    assert [j["metadata"]["name"] for j in apiserver.items(JOBS)] == ["ikd-gpu-c1-teacher-solve-a1"]
    assert st["stages"][0]["reason"] == "Unschedulable" and st["stages"][0]["attempt"] == 1
    check_against_crd(apiserver.get(RUNS, NS, "gpu") or {})


def test_a_controller_restart_in_the_middle_creates_no_second_job(
        apiserver: FakeApiServer, store: LocalStore, kcfg: KubernetesConfig) -> None:
    apply(apiserver, "restart", SPEC)
    hold = {"verify"}
    finish = complete(apiserver, store)

    def act(job: dict[str, Any]) -> None:
        if labels(job)[2] in hold:
            apiserver.set_job_status(job["metadata"]["name"], "job-status-active.json")
            apiserver.add_pod(job["metadata"]["name"], "pod-status-running.json")
        else:
            finish(job)

    with JobPlayer(apiserver, act):
        first = Reconciler(config(kcfg), store, apiserver.client(), identity="controller-0", idle_s=0.2)
        thread, stopper = start(first, apiserver, "restart")
        apiserver.wait_for(lambda: status(apiserver, "restart").get("stage") == "verify", 30)
        apiserver.wait_for(lambda: apiserver.get(JOBS, NS, "ikd-restart-c1-verify-a1") is not None)
        stopper.stop(kopf.DaemonStoppingReason.OPERATOR_EXITING)
        thread.join(20)
        assert RunStore(store).load("restart").record(1, "verify").state == "running"

        second = Reconciler(config(kcfg), store, apiserver.client(), identity="controller-1", idle_s=0.2)
        thread, stopper = start(second, apiserver, "restart")
        apiserver.wait_for(lambda: len(apiserver.calls("POST", r"/jobs$")) >= 3, 30)  # its create met 409
        time.sleep(0.5)
        assert [j["metadata"]["name"] for j in apiserver.items(JOBS)] == [
            "ikd-restart-c1-teacher-solve-a1", "ikd-restart-c1-verify-a1"]
        # the service finishes the stage the first controller started
        finish_stage(store, "restart", 1, "verify")
        apiserver.set_job_status("ikd-restart-c1-verify-a1", "job-status-complete.json")
        apiserver.wait_for(lambda: status(apiserver, "restart").get("phase") == "Succeeded", 60)
        stopper.stop()
        thread.join(20)
    names = sorted(j["metadata"]["name"] for j in apiserver.items(JOBS))
    assert len(names) == 7 and all(n.endswith("-a1") for n in names)
    record = RunStore(store).load("restart")
    assert all(r.attempt == 1 for r in record.stages)
    verify = [e for e in RunStore(store).events("restart") if e.get("stage") == "verify"]
    assert [(e["state"], e["attempt"], e.get("message", "")) for e in verify] == [
        ("running", 1, ""), ("running", 1, "adopted after a controller restart"), ("succeeded", 1, "")]


def test_a_failed_job_puts_its_reason_and_the_pods_message_in_the_status(
        apiserver: FakeApiServer, store: LocalStore, kcfg: KubernetesConfig) -> None:
    apply(apiserver, "fails", SPEC)
    finish = complete(apiserver, store)

    def act(job: dict[str, Any]) -> None:
        if labels(job)[2] != "train":
            finish(job)
            return
        name = job["metadata"]["name"]
        apiserver.add_pod(name, "pod-status-failed-exit1.json", age_s=20)
        apiserver.add_pod(name, "pod-status-failed-exit1.json")
        apiserver.set_job_status(name, "job-status-failed-backofflimit.json")

    with JobPlayer(apiserver, act):
        rec = Reconciler(config(kcfg), store, apiserver.client(), identity="controller-0", idle_s=0.2)
        thread, stopper = start(rec, apiserver, "fails")
        apiserver.wait_for(lambda: status(apiserver, "fails").get("phase") == "Failed", 30)
        stopper.stop()
        thread.join(20)
    st = status(apiserver, "fails")
    assert st["reason"] == "BackoffLimitExceeded" and (st["cycleText"], st["stage"]) == ("1/1", "train")
    assert "UNAVAILABLE: failed to connect to all addresses" in st["message"]
    conds = {c["type"]: c for c in st["conditions"]}
    assert (conds["Failed"]["status"], conds["Failed"]["reason"]) == ("True", "BackoffLimitExceeded")
    train = next(s for s in st["stages"] if s["name"] == "train")
    assert train["state"] == "Failed" and train["reason"] == "BackoffLimitExceeded"
    assert "ikd-fails-c1-train-a2" not in [j["metadata"]["name"] for j in apiserver.items(JOBS)]
    assert ("Warning", "BackoffLimitExceeded") in [(t, r) for t, r, _ in events(apiserver, "fails")]
    check_against_crd(apiserver.get(RUNS, NS, "fails") or {})


def test_an_invalid_spec_is_refused_on_the_object(apiserver: FakeApiServer, store: LocalStore,
                                                  kcfg: KubernetesConfig) -> None:
    apply(apiserver, "bad", {"cycles": 1, "pool": {"seed_set": "mbpp"}})
    rec = Reconciler(config(kcfg), store, apiserver.client(), identity="controller-0", idle_s=0.2)
    assert rec.reconcile(apiserver.get(RUNS, NS, "bad") or {}, lambda: False) is None
    st = status(apiserver, "bad")
    assert (st["phase"], st["reason"]) == ("Failed", "InvalidSpec")
    assert st["message"] == "DistillationRun bad: spec: pool.seed_set: unknown field"
    assert not RunStore(store).exists("bad") and not apiserver.items(JOBS)
    assert ("Warning", "InvalidSpec") in [(t, r) for t, r, _ in events(apiserver, "bad")]


def test_deleting_the_run_cancels_it_and_its_jobs_go(apiserver: FakeApiServer, store: LocalStore,
                                                     kcfg: KubernetesConfig) -> None:
    apply(apiserver, "gone", SPEC)

    def run_forever(job: dict[str, Any]) -> None:
        apiserver.add_pod(job["metadata"]["name"], "pod-status-running.json")

    with JobPlayer(apiserver, run_forever):
        rec = Reconciler(config(kcfg), store, apiserver.client(), identity="controller-0", idle_s=0.2)
        thread, stopper = start(rec, apiserver, "gone")
        apiserver.wait_for(lambda: bool(apiserver.items(JOBS)), 30)
        apiserver.delete(RUNS, NS, "gone")  # kubectl delete ikdrun gone: the garbage collector takes the Jobs
        stopper.stop(kopf.DaemonStoppingReason.RESOURCE_DELETED)
        thread.join(20)
    assert not apiserver.items(JOBS) and not apiserver.items("v1/pods")
    record = RunStore(store).load("gone")
    assert record.state == "cancelled" and record.message == "the DistillationRun was deleted"


def test_start_run_in_cluster_mode_creates_the_object(apiserver: FakeApiServer) -> None:
    obj = create_run_object(apiserver.client(), NS, "from-rpc", {"cycles": 2})
    assert obj["metadata"]["uid"] and apiserver.get(RUNS, NS, "from-rpc") is not None
    with pytest.raises(Conflict, match="already exists"):
        create_run_object(apiserver.client(), NS, "from-rpc", {"cycles": 2})


def test_one_controller_holds_the_lease_and_a_standby_takes_over_when_it_expires(
        apiserver: FakeApiServer) -> None:
    now = [1_800_000_000.0]
    a = LeaseElector(apiserver.client(), NS, "iterkd-controller", "controller-a", 15, clock=lambda: now[0])
    b = LeaseElector(apiserver.client(), NS, "iterkd-controller", "controller-b", 15, clock=lambda: now[0])
    assert a.try_acquire() and not b.try_acquire()
    now[0] += 10
    assert a.try_acquire() and not b.try_acquire()  # renewed
    now[0] += 14
    assert not b.try_acquire()  # 14 s since the renewal: still held
    now[0] += 2
    assert b.try_acquire() and not a.try_acquire()  # expired: the standby takes it
    lease = apiserver.get("coordination.k8s.io/v1/leases", NS, "iterkd-controller")
    assert lease is not None
    assert (lease["spec"]["holderIdentity"], lease["spec"]["leaseTransitions"]) == ("controller-b", 1)
    assert apiserver.calls("PUT", r"/leases/iterkd-controller$")
