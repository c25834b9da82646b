"""Evaluate shared across replicas: three real feedback servers on 127.0.0.1, each listing the
others (and itself) as peers; a dead peer's share runs locally."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iterkd.feedback.config import FeedbackConfig
from iterkd.feedback.harness import program_for
from iterkd.feedback.server import build_servicer
from iterkd.feedback.service import FeedbackServicer
from iterkd.feedback.shards import deal, resolve_peers, split_target
from iterkd.shared.config import ServerConfig, parse_config
from iterkd.shared.formats import Problem, Sample, Verdict, load_humaneval
from iterkd.shared.rpc import Server, Service, connect, service_name
from iterkd.shared.store import LocalStore
from iterkd.v1 import feedback_pb2, feedback_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_deal_and_targets() -> None:
    assert deal(7, 3) == [[0, 3, 6], [1, 4], [2, 5]]
    assert deal(1, 3) == [[0], [], []]
    assert split_target("feedback-headless.ns.svc:50053") == ("feedback-headless.ns.svc", 50053)
    assert split_target("[::1]:7") == ("::1", 7)
    for bad in ("nohost", "host:", "host:x", ":80", "host:70000"):
        with pytest.raises(ValueError, match="expected host:port"):
            split_target(bad)
    with pytest.raises(ValueError, match="'oops'"):
        parse_config({"peers": ["oops"]}, FeedbackConfig)
    # this replica (a local address with its own port) is left out; the others stay, once each
    assert resolve_peers(["127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:5002"], 5001) == ["127.0.0.1:5002"]
    assert resolve_peers(["no-such-host.invalid:5002"], None) == []


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, Any]]]:
    ports = [free_port() for _ in range(3)]
    dead = free_port()  # nothing listens there
    peers = [f"127.0.0.1:{p}" for p in ports] + [f"127.0.0.1:{dead}"]
    out = []
    for port in ports:
        store = LocalStore(tmp_path_factory.mktemp("store"))
        cfg = parse_config({"sandbox": {"workers": 1, "max_batch": 7}, "peers": peers, "peer_timeout_s": 60},
                           FeedbackConfig)
        servicer = build_servicer(cfg, store, self_port=port)
        server = Server([Service(feedback_pb2_grpc.add_FeedbackServiceServicer_to_server, servicer,
                                 service_name(feedback_pb2, "FeedbackService"))], ServerConfig(port=port))
        server.start()
        out.append({"server": server, "servicer": servicer, "store": store, "port": port, "dead": dead})
    yield out
    for r in out:
        r["server"].stop(0)


def test_evaluate_shards_over_every_replica(replicas: list[dict[str, Any]], tmp_path: Path) -> None:
    head = replicas[0]
    store: LocalStore = head["store"]
    servicer: FeedbackServicer = head["servicer"]
    problems = load_humaneval()[:10]
    samples = [Sample(problem_id=p.id, sample_id=f"{p.id}#{i}",
                      completion=(p.canonical_solution or "") if i % 2 == 0 else "    return None\n")
               for p in problems for i in range(4)]
    pu = store.put_jsonl("in/problems.jsonl", problems).uri
    su = store.put_jsonl("in/samples.jsonl", samples).uri
    channel, stub = connect(f"127.0.0.1:{head['port']}", feedback_pb2_grpc.FeedbackServiceStub, timeout=300)
    try:
        start = time.monotonic()
        reply = stub.Evaluate(feedback_pb2.EvaluateRequest(problems_uri=pu, samples_uri=su, output_prefix="evals/s"))
        elapsed = time.monotonic() - start
    finally:
        channel.close()
    verdicts = store.get_jsonl("evals/s/verdicts.jsonl", Verdict)
    assert [v.sample_id for v in verdicts] == [s.sample_id for s in samples]
    assert [v.passed for v in verdicts] == [i % 2 == 0 for p in problems for i in range(4)]
    assert reply.metrics["pass@1"] == pytest.approx(0.5)
    shares = servicer.last_shares
    # four shards of 10: this replica's, two live peers', and the dead peer's, run here instead
    assert shares == {"local": 20, f"127.0.0.1:{replicas[1]['port']}": 10,
                      f"127.0.0.1:{replicas[2]['port']}": 10}, shares
    assert elapsed < 120


def test_problem_records_travel_in_their_language(replicas: list[dict[str, Any]]) -> None:
    servicer: FeedbackServicer = replicas[1]["servicer"]
    problem = Problem(id="twice/c", prompt="", entry_point="twice", language="c",
                      tests="int main() {\n    assert(twice(3) == 6);\n}\n")
    samples = [Sample(problem_id=problem.id, sample_id=str(i),
                      completion=f"int twice(int x) {{ return {'2 * x' if i % 2 else 'x'}; }}\n")
               for i in range(6)]
    programs = [program_for(problem, s.completion) for s in samples]
    results = servicer._execute([problem] * 6, samples, programs, 10.0)
    assert [r.passed for r in results] == [False, True] * 3
    assert sum(servicer.last_shares.values()) == 6 and len(servicer.last_shares) == 3
