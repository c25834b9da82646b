"""Small helpers shared by the executor's and the reconciler's tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from iterkd.shared.stages import StageWriter, stage_prefix
from iterkd.shared.store import ArtifactStore
from tests.controller.k8s.apiserver import FakeApiServer


def finish_stage(store: ArtifactStore, run: str, cycle: int, stage: str, metrics: dict[str, float] | None = None
                 ) -> None:
    """What the stage's service does: its outputs, then its manifest."""
    with StageWriter(store, stage_prefix(run, cycle, stage), stage, run, cycle) as w:
        w.put_bytes("out.jsonl", b"{}\n")
        for k, v in (metrics or {}).items():
            w.metrics[k] = v


class Stopper:
    """kopf's stop flag for a daemon, as the reconciler sees it: truthy once set, ``wait``, ``reason``."""

    def __init__(self) -> None:
        import threading

        self.event = threading.Event()
        self.reason: Any = None

    def __bool__(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)

    def stop(self, reason: Any = None) -> None:
        self.reason = reason
        self.event.set()


class JobPlayer:
    """Plays the Job controller and the kubelet: calls ``act(job)`` once for every new Job."""

    def __init__(self, server: FakeApiServer, act: Callable[[dict[str, Any]], None]) -> None:
        import threading

        self.server = server
        self.act = act
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-player", daemon=True)

    def __enter__(self) -> JobPlayer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            for job in sorted(self.server.items("batch/v1/jobs"), key=lambda j: int(j["metadata"]["resourceVersion"])):
                name = job["metadata"]["name"]
                if name not in self.seen:
                    self.seen.append(name)
                    self.act(job)
