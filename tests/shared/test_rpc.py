"""gRPC helpers against a real server on 127.0.0.1: health, reflection, error mapping, deadlines,
metrics, graceful stop."""

import threading
import time
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from iterkd.shared.config import ServerConfig
from iterkd.shared.formats import DataError
from iterkd.shared.rpc import (
    BadRequest,
    NotFound,
    Server,
    Service,
    check_health,
    connect,
    require,
    service_name,
)
from iterkd.shared.store import ArtifactNotFound
from iterkd.v1 import controller_pb2, controller_pb2_grpc


class Runs(controller_pb2_grpc.ControllerServiceServicer):
    """A small servicer whose behaviour each test steers through the run id."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def GetRun(self, request, context):
        run_id = request.run_id
        require(bool(run_id), "run_id must be set")
        if run_id == "missing":
            raise NotFound("run 'missing' does not exist")
        if run_id == "artifact":
            raise ArtifactNotFound("no artifact at file:///x")
        if run_id == "data":
            raise DataError("pool.jsonl", 3, 'missing "prompt"')
        if run_id == "boom":
            raise ZeroDivisionError("division by zero")
        if run_id == "slow":
            self.release.wait(5)
        if run_id == "abort":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")
        return controller_pb2.RunStatus(run_id=run_id, state="running")

    def WatchRun(self, request, context):
        for stage in ["teacher-solve", "verify"]:
            yield controller_pb2.RunEvent(cycle=1, stage=stage, state="succeeded")
        if request.run_id == "bad-stream":
            raise BadRequest("stream failed half-way")


@pytest.fixture
def server() -> Iterator[tuple[Server, Runs]]:
    runs = Runs()
    srv = Server(
        [Service(controller_pb2_grpc.add_ControllerServiceServicer_to_server, runs,
                 service_name(controller_pb2, "ControllerService"))],
        ServerConfig(port=0, metrics_port=0, grace_s=2),
    )
    srv.start()
    yield srv, runs
    runs.release.set()
    srv.stop(0)


def stub_for(srv: Server, timeout: float = 5.0):
    channel, stub = connect(srv.target, controller_pb2_grpc.ControllerServiceStub, timeout=timeout, wait_ready_s=5)
    return channel, stub


def test_ok_and_health(server) -> None:
    srv, _ = server
    _, stub = stub_for(srv)
    assert stub.GetRun(controller_pb2.GetRunRequest(run_id="r1")).state == "running"
    assert check_health(srv.target) == "SERVING"
    assert check_health(srv.target, "iterkd.v1.ControllerService") == "SERVING"


@pytest.mark.parametrize(
    ("run_id", "code", "message"),
    [
        ("", grpc.StatusCode.INVALID_ARGUMENT, "run_id must be set"),
        ("missing", grpc.StatusCode.NOT_FOUND, "run 'missing' does not exist"),
        ("artifact", grpc.StatusCode.NOT_FOUND, "no artifact at file:///x"),
        ("data", grpc.StatusCode.INVALID_ARGUMENT, 'pool.jsonl:3: missing "prompt"'),
        ("boom", grpc.StatusCode.INTERNAL, "internal error: ZeroDivisionError: division by zero"),
        ("abort", grpc.StatusCode.PERMISSION_DENIED, "not yours"),
    ],
)
def test_errors_become_status_codes(server, run_id: str, code: grpc.StatusCode, message: str) -> None:
    srv, _ = server
    _, stub = stub_for(srv)
    with pytest.raises(grpc.RpcError) as err:
        stub.GetRun(controller_pb2.GetRunRequest(run_id=run_id))
    assert err.value.code() == code
    assert err.value.details() == message


def test_streams_and_stream_errors(server) -> None:
    srv, _ = server
    _, stub = stub_for(srv)
    stages = [s.stage for s in stub.WatchRun(controller_pb2.WatchRunRequest(run_id="ok"))]
    assert stages == ["teacher-solve", "verify"]
    got = []
    with pytest.raises(grpc.RpcError) as err:
        for s in stub.WatchRun(controller_pb2.WatchRunRequest(run_id="bad-stream")):
            got.append(s.stage)
    assert got == ["teacher-solve", "verify"]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_default_deadline_applies(server) -> None:
    srv, _ = server
    _, stub = stub_for(srv, timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        stub.GetRun(controller_pb2.GetRunRequest(run_id="slow"))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 3


def test_reflection_lists_services(server) -> None:
    srv, _ = server
    channel = grpc.insecure_channel(srv.target)
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"iterkd.v1.ControllerService", "grpc.health.v1.Health"} <= names
    channel.close()


def test_metrics_endpoint_counts_calls(server) -> None:
    srv, _ = server
    _, stub = stub_for(srv)
    stub.GetRun(controller_pb2.GetRunRequest(run_id="r1"))
    body = urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=5).read().decode()
    assert 'iterkd_rpc_total{code="OK",method="/iterkd.v1.ControllerService/GetRun"}' in body


def test_graceful_stop_lets_calls_in_flight_finish(server) -> None:
    srv, runs = server
    _, stub = stub_for(srv, timeout=10)
    result: dict[str, object] = {}

    def slow_call() -> None:
        try:
            result["reply"] = stub.GetRun(controller_pb2.GetRunRequest(run_id="slow"))
        except grpc.RpcError as exc:
            result["error"] = exc.code()

    caller = threading.Thread(target=slow_call)
    caller.start()
    time.sleep(0.3)
    stopper = threading.Thread(target=srv.stop)  # grace_s=2
    stopper.start()
    time.sleep(0.3)
    runs.release.set()
    caller.join(5)
    stopper.join(5)
    assert "reply" in result, result
    with pytest.raises(grpc.RpcError) as err:
        stub.GetRun(controller_pb2.GetRunRequest(run_id="r1"), timeout=1)
    assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
