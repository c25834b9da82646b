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
