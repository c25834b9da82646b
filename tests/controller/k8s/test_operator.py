"""The operator end to end: kopf (with its own HTTP client and watch) finds a DistillationRun on
the API server on 127.0.0.1 while this replica holds the Lease, and its daemon drives the run;
stopping the operator leaves the running Job for the next controller."""

from __future__ import annotations

from typing import Any

import kopf

from iterkd.controller.config import KubernetesConfig
from iterkd.controller.operator import Operator
from iterkd.controller.runs import RunStore
from iterkd.shared.store import LocalStore
from tests.controller.k8s.apiserver import FakeApiServer
from tests.controller.k8s.conftest import NS
from tests.controller.k8s.helpers import JobPlayer
from tests.controller.k8s.test_reconciler import JOBS, RUNS, SPEC, apply, complete, config, status


def test_kopf_drives_an_applied_run_while_holding_the_lease(apiserver: FakeApiServer, store: LocalStore,
                                                             kcfg: KubernetesConfig) -> None:
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=apiserver.url, insecure=True, default_namespace=NS)

    apply(apiserver, "kopf-run", SPEC)
    op = Operator(config(kcfg), store, apiserver.client(), login=login, identity="controller-0")
    op.reconciler.idle_s = 0.2
    with JobPlayer(apiserver, complete(apiserver, store)):
        op.start()
        try:
            apiserver.wait_for(op.leading.is_set, 30)
            apiserver.wait_for(lambda: status(apiserver, "kopf-run").get("phase") == "Succeeded", 90)
        finally:
            op.stop(60)
    assert not op.leading.is_set()
    lease = apiserver.get("coordination.k8s.io/v1/leases", NS, "iterkd-controller")
    assert lease is not None and lease["spec"]["holderIdentity"] == "controller-0"
    assert len(apiserver.items(JOBS)) == 7
    assert RunStore(store).load("kopf-run").state == "succeeded"
    obj = apiserver.get(RUNS, NS, "kopf-run")
    assert obj is not None
    # kopf watched the runs with a resourceVersion, and kept its bookkeeping out of status
    watches = [r for r in apiserver.calls("GET", r"/distillationruns$") if r.query.get("watch") == "true"]
    assert watches and all("resourceVersion" in r.query for r in watches)
    assert "kopf" not in (obj.get("status") or {})


def test_start_run_in_cluster_mode_creates_the_distillationrun(apiserver: FakeApiServer, store: LocalStore,
                                                              kcfg: KubernetesConfig) -> None:
    from iterkd.controller.executors.kubernetes import KubernetesExecutor
    from iterkd.controller.operator import cluster_launcher
    from iterkd.controller.service import ControllerServicer
    from iterkd.v1 import controller_pb2

    api = apiserver.client()
    servicer = ControllerServicer(store, lambda: KubernetesExecutor(kcfg, store, api),
                                  launcher=cluster_launcher(api, NS, store))
    reply = servicer.StartRun(controller_pb2.StartRunRequest(
        run_id="via-rpc", config_yaml="cycles: 1\npool: {source: seed, limit: 2}\neval: {source: seed, limit: 2}\n"),
        None)
    assert (reply.run_id, reply.state) == ("via-rpc", "pending")
    obj = apiserver.get(RUNS, NS, "via-rpc")
    assert obj is not None and obj["spec"]["cycles"] == 1 and obj["spec"]["pool"]["limit"] == 2
    assert not apiserver.items(JOBS)  # the operator drives it, not StartRun
    record = RunStore(store).load("via-rpc")
    record.state = "failed"
    RunStore(store).save(record)
    servicer.StartRun(controller_pb2.StartRunRequest(run_id="via-rpc", resume=True), None)
    assert RunStore(store).load("via-rpc").state == "pending"  # the run's daemon picks it up again
