"""A small Kubernetes API server on 127.0.0.1 for the kubernetes client to talk to.

It keeps objects in memory and speaks the API server's wire protocol for what the controller uses:
create (POST, 409 AlreadyExists), get, list with label selectors and a resourceVersion, watch
(chunked ``watch=true`` streams from a resourceVersion, bookmarks left out, ERROR 410 when the
version is too old), merge and strategic-merge PATCH (the status subresource of custom objects
apart from the rest), replace with optimistic concurrency (409 Conflict), DELETE with owner-based
garbage collection, and pod logs. The bodies it answers with are the recorded ones in
``responses/`` (Status objects, a created Job's server-side defaults, Job and pod status blocks),
so the client's real HTTP, (de)serialization and watch code runs against the shapes a real API
server sends. No controller runs inside: a test plays the Job controller and the kubelet by
setting the recorded Job and pod statuses itself.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes import client as k8s

RESPONSES = Path(__file__).parent / "responses"
KINDS = {"jobs": "Job", "pods": "Pod", "events": "Event", "leases": "Lease", "distillationruns": "DistillationRun"}
DISCOVERY = {"/api": "discovery-api.json", "/apis": "discovery-apis.json",
             "/api/v1": "discovery-core-v1.json", "/apis/iterkd.io/v1alpha1": "discovery-iterkd.json",
             "/apis/apiextensions.k8s.io/v1": "discovery-apiextensions.json"}
_PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))/namespaces/(?P<ns>[^/]+)/"
                   r"(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")


def now_rfc3339(offset_s: float = 0) -> str:
    return datetime.fromtimestamp(time.time() + offset_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def recorded(name: str, **subs: str) -> Any:
    """A recorded body from responses/, with its ``$NAME``-style placeholders filled."""
    text = (RESPONSES / name).read_text(encoding="utf-8")
    subs.setdefault("NOW", now_rfc3339())
    subs.setdefault("START", subs["NOW"])
    for key in sorted(subs, key=len, reverse=True):
        text = text.replace(f"${key}", json.dumps(subs[key])[1:-1])
    data = json.loads(text)
    if isinstance(data, dict):
        data.pop("_comment", None)
    return data


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (also what a strategic merge does to maps and scalars)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def json_patch(target: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 JSON Patch (add, remove, replace, test), as kopf sends for finalizers."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        key: Any = parts[-1]
        if isinstance(parent, list):
            key = len(parent) if key == "-" else int(key)
        kind = op["op"]
        if kind == "test":
            current = parent[key] if (isinstance(parent, list) and key < len(parent)) or (
                isinstance(parent, dict) and key in parent) else None
            if current != op.get("value"):
                raise ValueError(f"test failed at {op['path']}")
        elif kind == "remove":
            del parent[key]
        elif kind == "add" and isinstance(parent, list):
            parent.insert(key, op["value"])
        elif kind in ("add", "replace"):
            parent[key] = op["value"]
        else:
            raise ValueError(f"unsupported op {kind}")
    return doc


def _as_merge(old: Any, new: Any) -> Any:
    """The merge patch that turns ``old`` into ``new`` (removed keys become None)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return copy.deepcopy(new)
    out = {k: None for k in old if k not in new}
    for k, v in new.items():
        if k not in old or old[k] != v:
            out[k] = _as_merge(old.get(k), v)
    return out


def _fill_defaults(obj: Any, defaults: Any) -> Any:
    """Server-side defaulting: keys the client did not send get the recorded defaults."""
    if isinstance(obj, dict) and isinstance(defaults, dict):
        for k, v in defaults.items():
            obj[k] = _fill_defaults(obj[k], v) if k in obj else copy.deepcopy(v)
    return obj


def _matches(obj: dict[str, Any], selector: str) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None
    content_type: str = ""


@dataclass
class _Watch:
    coll: str
    ns: str
    selector: str
    expired: bool = False


@dataclass
class FakeApiServer:
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    pod_logs: dict[str, str] = field(default_factory=dict)
    rv: int = 1000
    compacted: int = 0  # a watch from a resourceVersion below this gets 410 Gone

    def __post_init__(self) -> None:
        self.log: list[tuple[int, str, str, str, dict[str, Any]]] = []  # (rv, type, coll, ns, object)
        self.cond = threading.Condition()
        self.watches: list[_Watch] = []
        self.faults: list[tuple[str, re.Pattern[str], int, dict[str, Any]]] = []
        self.stopping = False
        self.httpd: ThreadingHTTPServer | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> FakeApiServer:
        server = self

        class Handler(_Handler):
            api = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, name="fake-apiserver", daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def client(self) -> k8s.ApiClient:
        configuration = k8s.Configuration()
        configuration.host = self.url
        configuration.retries = False
        return k8s.ApiClient(configuration)

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    # -- state, as the Job controller, the kubelet or another client would change it ------------------------
    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _record(self, kind: str, coll: str, ns: str, obj: dict[str, Any]) -> None:
        self.log.append((self.rv, kind, coll, ns, copy.deepcopy(obj)))
        self.cond.notify_all()

    def create(self, coll: str, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self.cond:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=meta.get("creationTimestamp")
                        or now_rfc3339(), resourceVersion=self._bump())
            plural = coll.rsplit("/", 1)[1]
            if plural not in ("pods", "events"):
                meta.setdefault("generation", 1)
            if plural == "jobs":
                _fill_defaults(obj, recorded("job-server-defaults.json", UID=meta["uid"], NAME=meta["name"]))
                tmpl = obj["spec"]["template"]["metadata"]["labels"]
                tmpl.update({"batch.kubernetes.io/controller-uid": meta["uid"], "controller-uid": meta["uid"],
                             "batch.kubernetes.io/job-name": meta["name"], "job-name": meta["name"]})
            self.objects[(coll, ns, meta["name"])] = obj
            self._record("ADDED", coll, ns, obj)
            return copy.deepcopy(obj)

    def get(self, coll: str, ns: str, name: str) -> dict[str, Any] | None:
        with self.cond:
            obj = self.objects.get((coll, ns, name))
            return copy.deepcopy(obj) if obj is not None else None

    def items(self, coll: str, ns: str = "iterkd") -> list[dict[str, Any]]:
        with self.cond:
            return [copy.deepcopy(o) for (c, n, _), o in self.objects.items() if c == coll and n == ns]

    def patch(self, coll: str, ns: str, name: str, patch: dict[str, Any], status: bool | None = None
              ) -> dict[str, Any]:
        """Merge ``patch`` into the object; ``status=True`` patches only the status subresource,
        ``False`` everything but status (a custom object's main resource), None everything."""
        with self.cond:
            obj = self.objects[(coll, ns, name)]
            if isinstance(patch, list):
                patch = _as_merge(obj, json_patch(obj, patch))
            if status is True:
                patch = {"status": patch.get("status")} if "status" in patch else {}
            elif status is False:
                patch = {k: v for k, v in patch.items() if k != "status"}
            new = merge_patch(obj, patch)
            if new.get("spec") != obj.get("spec") and "generation" in obj["metadata"]:
                new["metadata"]["generation"] = obj["metadata"]["generation"] + 1
            new["metadata"]["resourceVersion"] = self._bump()
            self.objects[(coll, ns, name)] = new
            self._record("MODIFIED", coll, ns, new)
            return copy.deepcopy(new)

    def delete(self, coll: str, ns: str, name: str) -> dict[str, Any] | None:
        with self.cond:
            obj = self.objects.pop((coll, ns, name), None)
            if obj is None:
                return None
            obj["metadata"]["resourceVersion"] = self._bump()
            self._record("DELETED", coll, ns, obj)
            uid = obj["metadata"]["uid"]
            for (c, n, child), o in list(self.objects.items()):  # the garbage collector
                if any(ref.get("uid") == uid for ref in o["metadata"].get("ownerReferences") or []):
                    self.delete(c, n, child)
            return obj

    def set_job_status(self, name: str, status_file: str, ns: str = "iterkd", **subs: str) -> dict[str, Any]:
        job = self.get("batch/v1/jobs", ns, name)
        assert job is not None, f"no Job {name}"
        status = recorded(status_file, NS=ns, **subs)
        with self.cond:
            self.objects[("batch/v1/jobs", ns, name)]["status"] = {}
        return self.patch("batch/v1/jobs", ns, name, {"status": status})

    def add_pod(self, job_name: str, status_file: str, ns: str = "iterkd", age_s: float = 0,
                log: str = "") -> str:
        """A pod of the Job, as the Job controller makes it from the template, with a recorded
        status (as the scheduler and the kubelet would write it)."""
        job = self.get("batch/v1/jobs", ns, job_name)
        assert job is not None, f"no Job {job_name}"
        tmpl = job["spec"]["template"]
        name = f"{job_name}-{uuid.uuid4().hex[:5]}"
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "generateName": f"{job_name}-", "labels": dict(tmpl["metadata"]["labels"]),
                "creationTimestamp": now_rfc3339(-age_s),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                                     "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}],
                "finalizers": ["batch.kubernetes.io/job-tracking"],
            },
            "spec": copy.deepcopy(tmpl["spec"]),
            "status": recorded(status_file, NS=ns, POD=name),
        }
        self.pod_logs[name] = log
        self.create("v1/pods", ns, pod)
        return name

    def set_pod_status(self, pod: str, status_file: str, ns: str = "iterkd") -> None:
        with self.cond:
            self.objects[("v1/pods", ns, pod)]["status"] = {}
        self.patch("v1/pods", ns, pod, {"status": recorded(status_file, NS=ns, POD=pod)})

    def expire_watches(self, coll: str) -> None:
        """What the API server does when its watch cache has moved past a watcher: every open
        watch of ``coll`` gets an ERROR event with a 410 Status, and older versions are gone."""
        with self.cond:
            self.compacted = self.rv + 1
            for w in self.watches:
                if w.coll == coll:
                    w.expired = True
            self._bump()
            self.cond.notify_all()

    def fail_next(self, method: str, path: str, status_file: str, code: int, **subs: str) -> None:
        """Answer the next ``method`` on a path matching ``path`` with a recorded error Status."""
        self.faults.append((method, re.compile(path), code, recorded(status_file, **subs)))

    def calls(self, method: str, path_regex: str) -> list[Request]:
        pattern = re.compile(path_regex)
        return [r for r in self.requests if r.method == method and pattern.search(r.path)]

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")

    # -- watch streams ---------------------------------------------------------------------------------------
    def stream(self, coll: str, ns: str, selector: str, since: int, timeout_s: float) -> Iterator[dict[str, Any]]:
        w = _Watch(coll, ns, selector)
        end = time.monotonic() + timeout_s
        with self.cond:
            if since and since < self.compacted:
                yield recorded("watch-error-410.json", RV=str(since), CURRENT=str(self.rv))
                return
            self.watches.append(w)
        try:
            sent = since
            while True:
                with self.cond:
                    pending = [e for e in self.log if e[0] > sent and e[2] == coll and e[3] == ns]
                    if not pending and not w.expired and not self.stopping:
                        self.cond.wait(max(0.0, min(0.2, end - time.monotonic())))
                        pending = [e for e in self.log if e[0] > sent and e[2] == coll and e[3] == ns]
                    expired, stopping = w.expired, self.stopping
                if expired:
                    yield recorded("watch-error-410.json", RV=str(sent), CURRENT=str(self.rv))
                    return
                for rv, kind, _, _, obj in pending:
                    sent = rv
                    if _matches(obj, selector):
                        yield {"type": kind, "object": obj}
                if stopping or time.monotonic() >= end:
                    return
        finally:
            with self.cond:
                self.watches.remove(w)


class _Handler(BaseHTTPRequestHandler):
    api: FakeApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, file: str, plural: str, group: str, name: str) -> None:
        resource = f"{plural}.{group}" if group else plural
        self._send(code, recorded(file, NAME=name, PLURAL=plural, GROUP=group, RESOURCE=resource))

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        api = self.api
        api.requests.append(Request(method, url.path, query, body, self.headers.get("Content-Type", "")))
        for i, (m, pattern, code, fault) in enumerate(api.faults):
            if m == method and pattern.search(url.path):
                del api.faults[i]
                self._send(code, fault)
                return
        if method == "GET" and url.path in DISCOVERY:
            self._send(200, recorded(DISCOVERY[url.path]))
            return
        m = _PATH.match(url.path)
        if m is None:
            self._send(404, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                             "message": "the server could not find the requested resource", "reason": "NotFound",
                             "details": {}, "code": 404})
            return
        gv = m["core"] or f"{m['group']}/{m['version']}"
        group = m["group"] or ""
        ns, plural, name, sub = m["ns"], m["plural"], m["name"], m["sub"]
        coll = f"{gv}/{plural}"
        if name is None:
            if method == "GET" and query.get("watch") in ("true", "1"):
                self._watch(coll, ns, query)
            elif method == "GET":
                with api.cond:
                    items = [o for o in api.items(coll, ns) if _matches(o, query.get("labelSelector", ""))]
                    rv = str(api.rv)
                self._send(200, {"kind": f"{KINDS.get(plural, 'Object')}List", "apiVersion": gv,
                                 "metadata": {"resourceVersion": rv}, "items": items})
            elif method == "POST":
                if api.get(coll, ns, body["metadata"].get("name", "")) is not None:
                    self._status(409, "status-409-alreadyexists.json", plural, group, body["metadata"]["name"])
                    return
                self._send(201, api.create(coll, ns, body))
            else:
                self._send(405, {"kind": "Status", "code": 405})
            return
        obj = api.get(coll, ns, name)
        if sub == "log" and method == "GET":
            if obj is None:
                self._status(404, "status-404-notfound.json", plural, group, name)
            else:
                self._send(200, api.pod_logs.get(name, ""), "text/plain")
            return
        if obj is None:
            self._status(404, "status-404-notfound.json", plural, group, name)
            return
        if method == "GET":
            self._send(200, obj)
        elif method == "PATCH":
            custom = plural == "distillationruns"
            status = True if sub == "status" else (False if custom else None)
            try:
                self._send(200, api.patch(coll, ns, name, body, status=status))
            except (ValueError, KeyError, IndexError) as exc:
                self._send(422, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                 "message": f"the server rejected our request due to an error in our request: {exc}",
                                 "reason": "Invalid", "code": 422})
        elif method == "PUT":
            if body["metadata"].get("resourceVersion") != obj["metadata"]["resourceVersion"]:
                self._status(409, "status-409-conflict.json", plural, group, name)
                return
            with api.cond:
                body["metadata"]["resourceVersion"] = api._bump()
                api.objects[(coll, ns, name)] = body
                api._record("MODIFIED", coll, ns, body)
            self._send(200, body)
        elif method == "DELETE":
            gone = api.delete(coll, ns, name)
            self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                             "details": {"name": name, "group": group, "kind": plural,
                                         "uid": (gone or {}).get("metadata", {}).get("uid", "")}})
        else:
            self._send(405, {"kind": "Status", "code": 405})

    def _watch(self, coll: str, ns: str, query: dict[str, str]) -> None:
        since = int(query.get("resourceVersion") or 0)
        timeout = float(query.get("timeoutSeconds") or 1800)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for ev in self.api.stream(coll, ns, query.get("labelSelector", ""), since, timeout):
                data = (json.dumps(ev) + "\n").encode()
                self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")
