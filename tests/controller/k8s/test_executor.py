"""The kubernetes executor against an API server on 127.0.0.1 (real client, real HTTP and watch
streams, recorded response bodies): create, adopt on 409, watch, re-list on 410, pending with a
reason and past the start deadline, disruption, failure with the pod's termination message, logs
of the latest pod, cancel."""

from __future__ import annotations

import time
from typing import Any

import kubernetes_validate
import pytest

from iterkd.controller.config import KubernetesConfig, RunConfig
from iterkd.controller.executors.base import Handle, StageStatus, Stopped
from iterkd.controller.executors.kubernetes import JobOverrides, KubernetesExecutor, job_name
from iterkd.controller.planner import Step
from iterkd.shared.stages import STAGES
from iterkd.shared.store import LocalStore
from tests.controller.k8s.apiserver import FakeApiServer
from tests.controller.k8s.conftest import NS
from tests.controller.k8s.helpers import finish_stage

JOBS = "batch/v1/jobs"
RUN = "mbpp-small"
OWNER = {"apiVersion": "iterkd.io/v1alpha1", "kind": "DistillationRun", "name": RUN,
         "uid": "0c6d1f4e-2b1a-4c55-9d0e-7f3a2b1c0d9e"}


def executor(apiserver: FakeApiServer, store: LocalStore, kcfg: KubernetesConfig, **kw: Any) -> KubernetesExecutor:
    return KubernetesExecutor(kcfg, store, apiserver.client(), owner=OWNER, **kw)


def wait_status(ex: KubernetesExecutor, handle: Handle, pred: Any, timeout: float = 20.0) -> StageStatus:
    end = time.monotonic() + timeout
    st = ex.status(handle)
    while not pred(st):
        assert time.monotonic() < end, f"status stayed {st}"
        ex.wait(handle, 0.2)
        st = ex.status(handle)
    return st


def test_job_names_are_deterministic_and_fit_in_63_characters() -> None:
    assert job_name("mbpp-small", 2, "train", 1) == "ikd-mbpp-small-c2-train-a1"
    long_a, long_b = "a" * 38 + "-x", "a" * 38 + "-y"
    names = {job_name(r, 1000, "student-solve", 12) for r in (long_a, long_b)}
    assert len(names) == 2, "two long run ids must not share a Job name"
    for name in names:
        assert len(name) <= 63 and name.startswith("ikd-aaaa") and name.endswith("-c1000-student-solve-a12")
    assert job_name(long_a, 1000, "student-solve", 12) == job_name(long_a, 1000, "student-solve", 12)


@pytest.mark.parametrize("kube", ["1.29.0", "1.33.0"])
def test_every_job_passes_strict_validation(kube: str, store: LocalStore, kcfg: KubernetesConfig) -> None:
    placed = kcfg.model_copy(update={
        "node_selector": {"iterkd.io/pool": "cpu"}, "image_pull_secrets": ["regcred"],
        "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}}]}}})
    for cfg in (kcfg, placed):
        ex = KubernetesExecutor(cfg, store, api=None, owner=OWNER)  # type: ignore[arg-type]
        for run in (RUN, "r" * 40):
            for stage in STAGES:
                job = ex.build_job(run, Step(12, stage), 3)
                kubernetes_validate.validate(job, kube, strict=True)
                assert len(job["metadata"]["name"]) <= 63
    job = KubernetesExecutor(kcfg, store, api=None, owner=OWNER).build_job(  # type: ignore[arg-type]
        RUN, Step(1, "train"), 1)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert spec["backoffLimit"] == kcfg.backoff_limit and spec["activeDeadlineSeconds"] == kcfg.active_deadline_s
    assert spec["ttlSecondsAfterFinished"] == kcfg.ttl_after_failure_s
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onExitCodes": {"containerName": "stage", "operator": "In",
                                                             "values": [2]}}
    assert rules[1]["action"] == "Ignore" and rules[1]["onPodConditions"][0]["type"] == "DisruptionTarget"
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = pod["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert c["resources"] == kcfg.resources
    assert c["command"] == ["iterkd", "stage", "run", "--run", RUN, "--cycle", "1", "--stage", "train",
                            "--config", "/etc/iterkd/config.yaml"]
    assert job["metadata"]["ownerReferences"][0]["uid"] == OWNER["uid"]
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels["app.kubernetes.io/part-of"] == "iterkd"
        assert (labels["iterkd.io/run"], labels["iterkd.io/cycle"], labels["iterkd.io/stage"],
                labels["iterkd.io/attempt"]) == (RUN, "1", "train", "1")


def test_run_overrides_from_the_distillationrun_spec(kcfg: KubernetesConfig) -> None:
    over = JobOverrides.model_validate({"backoffLimit": 1, "activeDeadlineSeconds": 60, "startDeadlineSeconds": 30,
                                        "ttlSecondsAfterFinished": {"succeeded": 10, "failed": 20}})
    cfg = over.apply(kcfg)
    assert (cfg.backoff_limit, cfg.active_deadline_s, cfg.pending_deadline_s, cfg.ttl_after_success_s,
            cfg.ttl_after_failure_s) == (1, 60, 30, 10, 20)
    with pytest.raises(ValueError, match="ttlSecondsAfterFinished: unknown key"):
        JobOverrides.model_validate({"ttlSecondsAfterFinished": {"done": 1}}).apply(kcfg)
    with pytest.raises(ValueError, match="backofLimit"):
        JobOverrides.model_validate({"backofLimit": 1})


def test_create_watch_succeed_and_shorten_the_ttl(apiserver: FakeApiServer, store: LocalStore,
                                                   kcfg: KubernetesConfig) -> None:
    seen: list[StageStatus] = []
    ex = executor(apiserver, store, kcfg, observer=lambda h, st: seen.append(st))
    try:
        h = ex.submit(RUN, Step(1, "teacher-solve"), RunConfig(), 1)
        name = "ikd-mbpp-small-c1-teacher-solve-a1"
        assert h.data["job"] == name and not h.data["adopted"]
        assert len(apiserver.calls("POST", r"/jobs$")) == 1
        job = apiserver.get(JOBS, NS, name)
        assert job is not None and job["metadata"]["ownerReferences"][0]["kind"] == "DistillationRun"
        assert ex.status(h).state == "pending"

        apiserver.set_job_status(name, "job-status-active.json")
        apiserver.add_pod(name, "pod-status-running.json")
        st = wait_status(ex, h, lambda s: s.state == "running")
        assert st.reason == ""

        finish_stage(store, RUN, 1, "teacher-solve", {"problems": 3.0, "samples": 6.0})
        apiserver.set_job_status(name, "job-status-complete.json")
        st = wait_status(ex, h, lambda s: s.state != "running")
        assert st.state == "succeeded" and st.outcome is not None
        assert st.outcome.metrics == {"problems": 3.0, "samples": 6.0}
        job = apiserver.get(JOBS, NS, name)
        assert job is not None and job["spec"]["ttlSecondsAfterFinished"] == kcfg.ttl_after_success_s
        assert [s.state for s in seen] == ["pending", "running", "succeeded"]
        # the state came from the watch, not from reads of the Job
        assert not apiserver.calls("GET", rf"/jobs/{name}$")
        assert apiserver.calls("GET", r"/jobs$") and any(r.query.get("watch") == "true"
                                                         for r in apiserver.calls("GET", r"/jobs$"))
    finally:
        ex.close()


def test_a_completed_job_without_a_manifest_is_a_retryable_failure(apiserver: FakeApiServer, store: LocalStore,
                                                                     kcfg: KubernetesConfig) -> None:
    ex = executor(apiserver, store, kcfg)
    try:
        h = ex.submit(RUN, Step(1, "verify"), RunConfig(), 1)
        apiserver.set_job_status(h.data["job"], "job-status-complete.json")
        st = wait_status(ex, h, lambda s: s.state != "pending")
        assert (st.state, st.reason, st.retryable) == ("failed", "NoManifest", True)
    finally:
        ex.close()


def test_already_exists_adopts_the_job(apiserver: FakeApiServer, store: LocalStore, kcfg: KubernetesConfig) -> None:
    first = executor(apiserver, store, kcfg)
    first.submit(RUN, Step(1, "train"), RunConfig(), 1)
    first.close()  # the controller that made it is gone
    job = apiserver.get(JOBS, NS, "ikd-mbpp-small-c1-train-a1")
    assert job is not None

    ex = executor(apiserver, store, kcfg)
    try:
        assert ex.resumable(RUN, Step(1, "train"), 1)
        assert not ex.resumable(RUN, Step(1, "train"), 2)
        h = ex.submit(RUN, Step(1, "train"), RunConfig(), 1)
        assert h.data["adopted"]
        posts = apiserver.calls("POST", r"/jobs$")
        assert len(posts) == 2 and len(apiserver.items(JOBS)) == 1  # the second create met 409
        assert apiserver.calls("GET", r"/jobs/ikd-mbpp-small-c1-train-a1$")
        again = apiserver.get(JOBS, NS, "ikd-mbpp-small-c1-train-a1")
        assert again is not None and again["metadata"]["uid"] == job["metadata"]["uid"]
        apiserver.set_job_status(h.data["job"], "job-status-active.json")
        apiserver.add_pod(h.data["job"], "pod-status-running.json")
        assert wait_status(ex, h, lambda s: s.state == "running").state == "running"
    finally:
        ex.close()


def test_a_foreign_job_with_the_same_name_is_not_adopted(apiserver: FakeApiServer, store: LocalStore,
                                                         kcfg: KubernetesConfig) -> None:
    apiserver.create(JOBS, NS, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        "name": "ikd-mbpp-small-c1-train-a1", "labels": {"team": "other"}},
        "spec": {"template": {"metadata": {"labels": {}}, "spec": {"containers": []}}}})
    ex = executor(apiserver, store, kcfg)
    try:
        st = ex.status(ex.submit(RUN, Step(1, "train"), RunConfig(), 1))
        assert (st.state, st.reason, st.retryable) == ("failed", "JobConflict", False)
    finally:
        ex.close()


def test_a_rejected_create_says_why(apiserver: FakeApiServer, store: LocalStore, kcfg: KubernetesConfig) -> None:
    apiserver.fail_next("POST", r"/jobs$", "status-403-forbidden.json", 403)
    ex = executor(apiserver, store, kcfg)
    try:
        st = ex.status(ex.submit(RUN, Step(1, "train"), RunConfig(), 1))
        assert (st.state, st.reason, st.retryable) == ("failed", "JobRejected", False)
        assert "cannot create resource \"jobs\"" in st.message
    finally:
        ex.close()


def test_the_watch_lists_again_after_410_gone(apiserver: FakeApiServer, store: LocalStore,
                                              kcfg: KubernetesConfig) -> None:
    ex = executor(apiserver, store, kcfg)
    try:
        h = ex.submit(RUN, Step(1, "evolve"), RunConfig(), 1)
        jobs = ex._watch(RUN).jobs
        apiserver.wait_for(lambda: jobs.watches >= 1)
        assert jobs.lists == 1
        apiserver.expire_watches(JOBS)
        # the change lands while the watcher is between its 410 and its new list
        finish_stage(store, RUN, 1, "evolve", {"next_pool": 5.0})
        apiserver.set_job_status(h.data["job"], "job-status-complete.json")
        st = wait_status(ex, h, lambda s: s.state != "pending")
        assert st.state == "succeeded"
        apiserver.wait_for(lambda: jobs.lists >= 2)
        lists = [r for r in apiserver.calls("GET", r"/jobs$") if r.query.get("watch") != "true"]
        assert len(lists) >= 2
        # the watch after the re-list starts from the new list's resourceVersion
        def watches() -> list[Any]:
            return [r for r in apiserver.calls("GET", r"/jobs$") if r.query.get("watch") == "true"]

        apiserver.wait_for(lambda: int(watches()[-1].query["resourceVersion"]) >= apiserver.compacted)
    finally:
        ex.close()


def test_unschedulable_is_surfaced_then_fails_past_the_start_deadline(apiserver: FakeApiServer, store: LocalStore,
                                                                       kcfg: KubernetesConfig) -> None:
    ex = executor(apiserver, store, kcfg)
    try:
        h = ex.submit(RUN, Step(1, "train"), RunConfig(), 1)
        apiserver.set_job_status(h.data["job"], "job-status-active.json")
        apiserver.add_pod(h.data["job"], "pod-status-unschedulable.json", age_s=30)
        st = wait_status(ex, h, lambda s: s.reason != "")
        assert (st.state, st.reason) == ("pending", "Unschedulable")
        assert "2 Insufficient memory" in st.message
    finally:
        ex.close()
    late = executor(apiserver, store, kcfg, clock=lambda: time.time() + kcfg.pending_deadline_s)
    try:
        h = late.submit(RUN, Step(1, "train"), RunConfig(), 1)  # adopted
        st = wait_status(late, h, lambda s: s.state != "pending")
        assert (st.state, st.reason, st.retryable) == ("failed", "Unschedulable", False)
        assert "did not start within 600s" in st.message and "Insufficient memory" in st.message
        job = apiserver.get(JOBS, NS, h.data["job"])
        assert job is not None and job["spec"]["suspend"] is True
        assert job["metadata"]["annotations"]["iterkd.io/failed"].startswith("Unschedulable: ")
    finally:
        late.close()
    # a restarted controller reads the same failure from the Job and does not resume it
    again = executor(apiserver, store, kcfg)
    try:
        assert not again.resumable(RUN, Step(1, "train"), 1)
        st = again.status(again.submit(RUN, Step(1, "train"), RunConfig(), 1))
        assert (st.state, st.reason) == ("failed", "Unschedulable")
    finally:
        again.close()


def test_image_pull_backoff_fails_past_the_start_deadline(apiserver: FakeApiServer, store: LocalStore,
                                                          kcfg: KubernetesConfig) -> None:
    ex = executor(apiserver, store, kcfg)
    try:
        h = ex.submit(RUN, Step(2, "feedback"), RunConfig(), 1)
        apiserver.set_job_status(h.data["job"], "job-status-active.json")
        pod = apiserver.add_pod(h.data["job"], "pod-status-unschedulable.json", age_s=10)
        st = wait_status(ex, h, lambda s: s.reason == "Unschedulable")
        apiserver.set_pod_status(pod, "pod-status-imagepullbackoff.json")
        st = wait_status(ex, h, lambda s: s.reason == "ImagePullFailed")
        assert st.state == "pending" and "Back-off pulling image" in st.message
        apiserver.delete("v1/pods", NS, pod)
        apiserver.add_pod(h.data["job"], "pod-status-imagepullbackoff.json", age_s=kcfg.pending_deadline_s + 5)
        st = wait_status(ex, h, lambda s: s.state != "pending")
        assert (st.state, st.reason) == ("failed", "ImagePullFailed")
        assert "registry.invalid/iterkd/controller:0.1.0" in st.message
    finally:
        ex.close()


def test_a_disruption_does_not_count(apiserver: FakeApiServer, store: LocalStore, kcfg: KubernetesConfig) -> None:
    ex = executor(apiserver, store, kcfg)
    try:
        h = ex.submit(RUN, Step(1, "train"), RunConfig(), 1)
        apiserver.set_job_status(h.data["job"], "job-status-active.json")
        apiserver.add_pod(h.data["job"], "pod-status-disrupted.json", age_s=60, log="step 10 of 40\n")
        replacement = apiserver.add_pod(h.data["job"], "pod-status-running.json", log="resumed at step 10\n")
        st = wait_status(ex, h, lambda s: s.state == "running" and "disrupted" in s.message)
        assert "PreemptionByScheduler" in st.message and "not counted" in st.message
        assert st.reason == ""
        assert ex.logs(h) == "resumed at step 10\n"  # the latest pod's, not the preempted one's
        assert apiserver.calls("GET", rf"/pods/{replacement}/log$")
        finish_stage(store, RUN, 1, "train", {"steps": 40.0})
        apiserver.set_job_status(h.data["job"], "job-status-complete.json")
        assert wait_status(ex, h, lambda s: s.state != "running").state == "succeeded"
    finally:
        ex.close()


def test_backoff_limit_exceeded_surfaces_the_pods_termination_message(apiserver: FakeApiServer, store: LocalStore,
                                                                      kcfg: KubernetesConfig) -> None:
    ex = executor(apiserver, store, kcfg)
    try:
        h = ex.submit(RUN, Step(1, "train"), RunConfig(), 2)
        for age in (90, 60, 30):
            apiserver.add_pod(h.data["job"], "pod-status-failed-exit1.json", age_s=age)
        last = apiserver.add_pod(h.data["job"], "pod-status-failed-exit1.json", log="Traceback ...\nUNAVAILABLE\n")
        apiserver.set_job_status(h.data["job"], "job-status-failed-backofflimit.json")
        st = wait_status(ex, h, lambda s: s.state == "failed")
        assert (st.state, st.reason, st.retryable) == ("failed", "BackoffLimitExceeded", False)
        assert st.message.startswith("Job has reached the specified backoff limit; pod " + last)
        assert "exit code 1 (Error): iterkd stage run: cycle 1 train: UNAVAILABLE: failed to connect" in st.message
        assert ex.logs(h) == "Traceback ...\nUNAVAILABLE\n"
    finally:
        ex.close()


def test_exit_code_2_fails_the_stage_at_once(apiserver: FakeApiServer, store: LocalStore,
                                             kcfg: KubernetesConfig) -> None:
    ex = executor(apiserver, store, kcfg)
    try:
        h = ex.submit(RUN, Step(1, "evolve"), RunConfig(), 1)
        pod = apiserver.add_pod(h.data["job"], "pod-status-failed-exit1.json")
        apiserver.set_job_status(h.data["job"], "job-status-failed-podfailurepolicy.json", POD=pod)
        st = wait_status(ex, h, lambda s: s.state == "failed")
        assert (st.state, st.reason, st.retryable) == ("failed", "StageFailed", False)
        assert "matching FailJob rule at index 0" in st.message
    finally:
        ex.close()


def test_deadline_exceeded(apiserver: FakeApiServer, store: LocalStore, kcfg: KubernetesConfig) -> None:
    ex = executor(apiserver, store, kcfg)
    try:
        h = ex.submit(RUN, Step(1, "train"), RunConfig(), 1)
        apiserver.set_job_status(h.data["job"], "job-status-failed-deadline.json")
        st = wait_status(ex, h, lambda s: s.state != "pending")
        assert (st.state, st.reason) == ("failed", "DeadlineExceeded")
    finally:
        ex.close()


def test_cancel_deletes_the_job_and_a_deleted_job_is_retryable(apiserver: FakeApiServer, store: LocalStore,
                                                               kcfg: KubernetesConfig) -> None:
    ex = executor(apiserver, store, kcfg)
    try:
        h = ex.submit(RUN, Step(1, "verify"), RunConfig(), 1)
        apiserver.add_pod(h.data["job"], "pod-status-running.json")
        ex.cancel(h)
        assert ex.status(h).state == "cancelled"
        assert apiserver.get(JOBS, NS, h.data["job"]) is None and not apiserver.items("v1/pods")
        deleted = apiserver.calls("DELETE", rf"/jobs/{h.data['job']}$")
        assert deleted and deleted[0].query.get("propagationPolicy") == "Background"

        h2 = ex.submit(RUN, Step(1, "verify"), RunConfig(), 2)
        apiserver.delete(JOBS, NS, h2.data["job"])  # someone ran kubectl delete job
        st = wait_status(ex, h2, lambda s: s.state != "pending")
        assert (st.state, st.reason, st.retryable) == ("failed", "JobDeleted", True)
    finally:
        ex.close()


def test_stopped_leaves_the_job_running(apiserver: FakeApiServer, store: LocalStore, kcfg: KubernetesConfig) -> None:
    stop = False
    ex = executor(apiserver, store, kcfg, stopped=lambda: stop)
    try:
        h = ex.submit(RUN, Step(1, "verify"), RunConfig(), 1)
        stop = True
        with pytest.raises(Stopped):
            ex.status(h)
        assert apiserver.get(JOBS, NS, h.data["job"]) is not None
    finally:
        ex.close()
