"""The local executor's services: the four ``iterkd serve NAME`` processes on 127.0.0.1.

They are children that die with the controller: each is started with a parent-death signal
(Linux ``PR_SET_PDEATHSIG``), so even a ``kill -9`` of ``iterkd run`` leaves no service behind; on
a normal exit they get SIGTERM and a grace period. A service the configuration already names
(``controller.services``) is used as it is and not started.
"""

from __future__ import annotations

import copy
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from iterkd.shared.errors import Unavailable
from iterkd.shared.log import event, get_logger

log = get_logger("iterkd.controller.services")
SERVICES = ("teacher", "feedback", "trainer", "questions")
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the services are still stopped on a normal exit
        pass
    if os.getppid() == 1:  # the parent already died before prctl took effect
        os._exit(1)


def iterkd_bin() -> str:
    exe = Path(sys.executable).with_name("iterkd")
    return str(exe) if exe.exists() else (shutil.which("iterkd") or "iterkd")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def services_config(raw: dict[str, Any], ports: dict[str, int]) -> dict[str, Any]:
    """The configuration file the local services get: the user's sections, each server on its
    loopback port, and the cross-service addresses (the judge and the question service reach the
    teacher and the feedback service) pointing at them."""
    cfg = {k: copy.deepcopy(v) for k, v in raw.items() if k in ("store", "logging", *SERVICES)}
    for name in SERVICES:
        section = cfg.setdefault(name, {}) or {}
        cfg[name] = section
        server = section.setdefault("server", {})
        server.update({"host": "127.0.0.1", "port": ports[name]})
        server.pop("metrics_port", None)
    teacher = f"127.0.0.1:{ports['teacher']}"
    judge = cfg["feedback"].setdefault("judge", {})
    endpoint = judge.setdefault("endpoint", {})
    if endpoint.get("kind", "teacher") == "teacher":
        endpoint.update({"kind": "teacher", "target": teacher})
    cfg["questions"]["teacher_target"] = teacher
    cfg["questions"]["feedback_target"] = f"127.0.0.1:{ports['feedback']}"
    return cfg


class LocalServices:
    """Starts the services a local run needs; ``targets`` maps each name to ``host:port``."""

    def __init__(self, raw_config: dict[str, Any], workdir: Path, given: dict[str, str] | None = None,
                 start_timeout_s: float = 180.0) -> None:
        self.raw = raw_config
        self.workdir = Path(workdir)
        self.given = dict(given or {})
        self.start_timeout_s = start_timeout_s
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.targets: dict[str, str] = dict(self.given)
        self.logs = self.workdir / "logs"

    def __enter__(self) -> LocalServices:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> dict[str, str]:
        todo = [n for n in SERVICES if n not in self.given]
        if not todo:
            return self.targets
        self.logs.mkdir(parents=True, exist_ok=True)
        ports = {n: _free_port() for n in SERVICES}
        for name, target in self.given.items():
            ports[name] = int(target.rsplit(":", 1)[1])
        cfg = services_config(self.raw, ports)
        for name, target in self.given.items():  # cross-service addresses follow the given ones too
            if name == "teacher":
                cfg["questions"]["teacher_target"] = target
                cfg["feedback"]["judge"]["endpoint"]["target"] = target
            if name == "feedback":
                cfg["questions"]["feedback_target"] = target
        path = self.workdir / "services.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
        try:
            for name in todo:
                self.procs[name] = subprocess.Popen(
                    [iterkd_bin(), "serve", name, "--config", str(path)], stdout=subprocess.PIPE,
                    stderr=open(self.logs / f"{name}.log", "ab"), text=True, env=env,  # noqa: SIM115
                    preexec_fn=_die_with_parent, stdin=subprocess.DEVNULL)
            for name in todo:
                self.targets[name] = self._await_serving(name)
                event(log, "service started", service=name, target=self.targets[name],
                      pid=self.procs[name].pid, log_file=str(self.logs / f"{name}.log"))
        except BaseException:
            self.stop()
            raise
        return self.targets

    def _await_serving(self, name: str) -> str:
        proc = self.procs[name]
        assert proc.stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline() if proc.stdout else ""),
                                  daemon=True)
        reader.start()
        reader.join(self.start_timeout_s)
        text = line[0] if line else ""
        if not text:
            tail = self.log_tail(name)
            state = f"exited with status {proc.poll()}" if proc.poll() is not None else "did not answer in time"
            raise Unavailable(f"the {name} service {state}; see {self.logs / (name + '.log')}\n{tail}")
        return str(json.loads(text)["serving"])

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join((self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 20.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                event(log, "service killed after the grace period", service=name)
        self.procs.clear()
