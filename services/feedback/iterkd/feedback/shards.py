"""Evaluate's executions shared across the feedback service's replicas (issue 10).

``feedback.peers`` lists the other replicas: ``host:port`` entries, where a host may be a DNS name
that resolves to several addresses (a headless Service's name resolves to every ready pod), so
one entry can stand for all replicas. Names are resolved at each Evaluate (pods come and go);
an address that is this replica's own (a local address with this server's port) is left out.

The samples are dealt round-robin into one shard per replica (neighbouring samples often share a
problem, so dealing spreads slow problems evenly); this replica runs its shard in its own pool
while each peer's goes out as ``ExecuteBatch`` calls (problem record + completion per item, at
most ``max_batch`` per call), all at once. A peer that fails (unreachable, an error, a short
reply) costs only time: its shard is run locally, and the Evaluate result does not change.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc

from iterkd.feedback.sandbox import ExecResult
from iterkd.shared.rpc import connect
from iterkd.v1 import feedback_pb2, feedback_pb2_grpc

log = logging.getLogger("iterkd.feedback.shards")


def _local_addresses() -> set[str]:
    found = {"127.0.0.1", "::1", "0.0.0.0", "::"}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(str(info[4][0]))
    except OSError:
        pass
    return found


def split_target(entry: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as its parts; ValueError naming the entry otherwise."""
    host, sep, port = entry.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"peer {entry!r}: expected host:port")
    return host.strip("[]"), int(port)


def resolve_peers(entries: Sequence[str], self_port: int | None) -> list[str]:
    """Every address the entries name, as ``host:port`` targets, without this replica itself."""
    local = _local_addresses()
    targets: list[str] = []
    for entry in entries:
        host, port = split_target(entry)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            log.warning("peer %s does not resolve (%s); its share runs here", entry, exc)
            continue
        for info in infos:
            address = str(info[4][0])
            if self_port is not None and port == self_port and address in local:
                continue
            target = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
            if target not in targets:
                targets.append(target)
    return targets


def deal(n: int, shards: int) -> list[list[int]]:
    """Indices ``0..n-1`` dealt round-robin into ``shards`` lists."""
    return [list(range(i, n, shards)) for i in range(shards)]


class Sharder:
    """Runs a batch of executions over this replica's pool and its peers."""

    def __init__(self, peers: Sequence[str], self_port: int | None, max_batch: int, rpc_timeout_s: float) -> None:
        self.peers = list(peers)
        self.self_port = self_port
        self.max_batch = max_batch
        self.rpc_timeout_s = rpc_timeout_s

    def run(self, items: Sequence[tuple[str, str]], timeout: float,
            local: Callable[[Sequence[int]], list[ExecResult]]) -> tuple[list[ExecResult], dict[str, int]]:
        """``items``: (problem record as JSON, completion) per sample; ``local(indices)`` runs those here.

        Returns the results in order and how many samples each replica ran (``local`` for this one).
        """
        targets = resolve_peers(self.peers, self.self_port) if self.peers else []
        if not targets or len(items) < 2:
            return local(range(len(items))), {"local": len(items)}
        shards = deal(len(items), len(targets) + 1)
        results: list[ExecResult | None] = [None] * len(items)
        ran = {"local": len(shards[0])}
        with ThreadPoolExecutor(len(targets), thread_name_prefix="shard") as ex:
            futures = {target: ex.submit(self._remote, target, [items[i] for i in shard], timeout)
                       for target, shard in zip(targets, shards[1:])}
            for i, r in zip(shards[0], local(shards[0])):
                results[i] = r
            for (target, future), shard in zip(futures.items(), shards[1:]):
                remote = future.result()
                if remote is None:
                    remote = local(shard)
                    ran["local"] += len(shard)
                else:
                    ran[target] = len(shard)
                for i, r in zip(shard, remote):
                    results[i] = r
        return [r for r in results if r is not None], ran

    def _remote(self, target: str, items: Sequence[tuple[str, str]], timeout: float) -> list[ExecResult] | None:
        channel, stub = connect(target, feedback_pb2_grpc.FeedbackServiceStub, timeout=self.rpc_timeout_s)
        out: list[ExecResult] = []
        try:
            for start in range(0, len(items), self.max_batch):
                chunk = items[start:start + self.max_batch]
                reply = stub.ExecuteBatch(feedback_pb2.ExecuteBatchRequest(items=[
                    feedback_pb2.ExecuteRequest(problem_json=pj, completion=c, timeout_s=timeout) for pj, c in chunk]))
                if len(reply.results) != len(chunk):
                    raise ValueError(f"{len(reply.results)} results for {len(chunk)} items")
                out.extend(ExecResult(r.passed, r.result, r.duration_s, r.stdout, r.stderr) for r in reply.results)
        except (grpc.RpcError, ValueError) as exc:
            detail = f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.RpcError) else str(exc)
            log.warning("peer %s failed (%s); its shard of %d runs here", target, detail, len(items))
            return None
        finally:
            channel.close()
        return out
