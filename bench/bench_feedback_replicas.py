"""One feedback replica against three on a verify stage, on loopback.

    python bench/bench_feedback_replicas.py [--copies 5] [--repeats 2] [--workers N]

Starts three ``iterkd serve feedback`` processes on 127.0.0.1 (A with ``peers: [B, C]``, B and C
with none), all on one local store. Samples: HumanEval's canonical solutions x COPIES plus one
``return None`` per problem. The same Evaluate (execution only, as the verify stage) goes to B
alone (one replica) and to A (three replicas: A's own share plus ExecuteBatch shards to B and C),
alternately; the ratio is of the medians. On a machine with fewer cores than three replicas'
workers, three replicas compete for the same cores: the ratio says what sharding costs or gains
here, not what it gains on three nodes. Prints a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from iterkd.shared.formats import Sample, load_humaneval
from iterkd.shared.rpc import check_health, connect
from iterkd.shared.store import LocalStore
from iterkd.v1 import feedback_pb2, feedback_pb2_grpc

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(root: Path, name: str, port: int, peers: list[str], workers: int | None) -> subprocess.Popen:
    sandbox = f"{{workers: {workers}}}" if workers else "{}"
    config = root / f"{name}.yaml"
    config.write_text(f"store: {{backend: local, root: {root / 'store'}}}\n"
                      f"feedback:\n  sandbox: {sandbox}\n  static: {{enabled: false}}\n  peers: {json.dumps(peers)}\n")
    return subprocess.Popen([str(BIN / "iterkd"), "serve", "feedback", "--config", str(config), "--port", str(port),
                             "--metrics-port", "0"], stdout=subprocess.DEVNULL, stderr=open(root / f"{name}.log", "w"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="sandbox workers per replica (default: cores)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ports = {name: free_port() for name in "ABC"}
        procs = [start(root, "A", ports["A"], [f"127.0.0.1:{ports['B']}", f"127.0.0.1:{ports['C']}"], args.workers),
                 start(root, "B", ports["B"], [], args.workers), start(root, "C", ports["C"], [], args.workers)]
        try:
            deadline = time.monotonic() + 60
            for port in ports.values():
                while True:
                    try:
                        if check_health(f"127.0.0.1:{port}", timeout=1) == "SERVING":
                            break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise SystemExit(f"a replica did not start; logs in {root}") from None
                    time.sleep(0.2)
            store = LocalStore(root / "store")
            problems = load_humaneval()
            samples = [Sample(problem_id=p.id, sample_id=f"{p.id}#{i}", completion=p.canonical_solution or "")
                       for i in range(args.copies) for p in problems]
            samples += [Sample(problem_id=p.id, sample_id=f"{p.id}#none", completion="    return None\n")
                        for p in problems]
            pu = store.put_jsonl("in/problems.jsonl", problems).uri
            su = store.put_jsonl("in/samples.jsonl", samples).uri
            times: dict[str, list[float]] = {"one": [], "three": []}
            passed: dict[str, float] = {}
            for rep in range(args.repeats):
                for label, port in (("one", ports["B"]), ("three", ports["A"])):
                    channel, stub = connect(f"127.0.0.1:{port}", feedback_pb2_grpc.FeedbackServiceStub, timeout=900)
                    begin = time.monotonic()
                    reply = stub.Evaluate(feedback_pb2.EvaluateRequest(problems_uri=pu, samples_uri=su,
                                                                       output_prefix=f"verify/{label}-{rep}"))
                    times[label].append(time.monotonic() - begin)
                    channel.close()
                    passed[label] = reply.metrics["pass@1"]
                    print(f"{label} replica(s): {times[label][-1]:.2f}s, pass@1 {passed[label]:.4f}", flush=True)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
    one, three = statistics.median(times["one"]), statistics.median(times["three"])
    n = len(samples)
    print(f"{n} samples, {os.cpu_count()} cores, workers per replica {args.workers or os.cpu_count()}")
    print(f"one replica {n / one:.1f} samples/s, three replicas {n / three:.1f} samples/s: {one / three:.2f}x")
    print(json.dumps({"samples": n, "cores": os.cpu_count(), "one_s": round(one, 2), "three_s": round(three, 2),
                      "ratio": round(one / three, 2), "same_result": passed["one"] == passed["three"]}))
    return 0 if passed["one"] == passed["three"] else 1


if __name__ == "__main__":
    sys.exit(main())
