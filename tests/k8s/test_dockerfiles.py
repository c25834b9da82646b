"""The images' rules, read from the Dockerfiles themselves (Docker does not run here).

Every image: multi-stage, base images pinned by version (no ``:latest``, no bare name), a non-root
numeric USER in the image that runs, pip installs only ``shared`` and its own service, with
``constraints.txt``. Light images (feedback, questions, controller, the teacher's default remote
variant) install no torch/transformers and use no CUDA base; the CUDA base is only in the trainer and
the teacher's ``hf`` target. The light images' Python dependency closure really has no torch."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("teacher", "trainer", "feedback", "questions", "controller")
HEAVY = ("torch", "transformers", "peft", "accelerate", "nvidia", "[hf]")
# (service, target stage or None for the default = last stage, is a GPU image)
TARGETS = [
    ("teacher", None, False),
    ("teacher", "hf", True),
    ("trainer", None, True),
    ("feedback", None, False),
    ("questions", None, False),
    ("controller", None, False),
]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, op: str) -> list[str]:
        return [a for o, a in self.instructions if o == op]


def parse(path: Path) -> list[Stage]:
    """Instructions of a Dockerfile by stage, continuation lines joined, comments dropped."""
    lines: list[str] = []
    buf = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("#") and not buf:
            continue
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        buf += raw
        if buf.strip():
            lines.append(buf.strip())
        buf = ""
    stages: list[Stage] = []
    for line in lines:
        op, _, arg = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", arg.strip(), re.I)
            assert m, f"{path}: cannot read FROM {arg!r}"
            stages.append(Stage(name=m.group(2) or str(len(stages)), base=m.group(1)))
        else:
            assert stages, f"{path}: {op} before the first FROM"
            stages[-1].instructions.append((op, arg.strip()))
    return stages


def chain(stages: list[Stage], target: str | None) -> list[Stage]:
    """The stages a target is built from: its FROM ancestors and the stages it copies from."""
    by_name = {s.name: s for s in stages}
    start = by_name[target] if target else stages[-1]
    seen: list[Stage] = []
    todo = [start]
    while todo:
        s = todo.pop()
        if s in seen:
            continue
        seen.append(s)
        if s.base in by_name:
            todo.append(by_name[s.base])
        for arg in s.args("COPY"):
            m = re.search(r"--from=(\S+)", arg)
            if m:
                todo.append(by_name[m.group(1)])
    return seen


def dockerfile(service: str) -> Path:
    return ROOT / "services" / service / "Dockerfile"


def pinned_image_problem(image: str) -> str | None:
    """Why a base image reference is not pinned by version, or None."""
    if "@sha256:" in image:
        return None
    tag = image.rpartition(":")[2] if ":" in image.split("/")[-1] else ""
    if not tag:
        return f"{image}: no tag (means :latest)"
    if tag == "latest" or not re.search(r"\d", tag):
        return f"{image}: tag {tag!r} is not a version"
    return None


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_is_multistage_and_pinned(service: str) -> None:
    stages = parse(dockerfile(service))
    assert len(stages) >= 2, f"{service}: not multi-stage"
    names = set()
    for s in stages:
        if s.base not in names:
            problem = pinned_image_problem(s.base)
            assert problem is None, f"{service} stage {s.name}: {problem}"
        names.add(s.name)


@pytest.mark.parametrize(("service", "target", "gpu"), TARGETS)
def test_image_runs_as_non_root_with_only_its_service(service: str, target: str | None, gpu: bool) -> None:
    stages = parse(dockerfile(service))
    used = chain(stages, target)
    final = used[0]
    users = final.args("USER")
    assert users, f"{service}:{target or 'default'}: the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{service}: USER {users[-1]!r} must be a non-root numeric uid"
    assert any("--from=" in a for a in final.args("COPY")), f"{service}: the final stage copies nothing built"
    assert final.args("ENTRYPOINT") == ['["iterkd"]'], f"{service}: ENTRYPOINT must be iterkd"

    installs = [a for s in used for a in s.args("RUN") if "pip install" in a and "venv" not in a.split("pip")[0]]
    assert installs, f"{service}: no pip install"
    for cmd in installs:
        assert "-c constraints.txt" in cmd, f"{service}: {cmd!r} does not use constraints.txt"
        paths = re.findall(r"\./[\w/]+", cmd)
        assert set(paths) == {"./shared", f"./services/{service}"}, f"{service}: installs {paths}"
    copied = [a for s in used for a in s.args("COPY") if "services/" in a]
    for arg in copied:
        assert f"services/{service}" in arg, f"{service}: copies another service: {arg!r}"

    bases = [s.base for s in used if s.base not in {x.name for x in stages}]
    cuda = [b for b in bases if b.startswith("nvidia/cuda")]
    if gpu:
        assert cuda and len(cuda) == len(bases), f"{service}:{target}: a GPU image needs a CUDA base, got {bases}"
    else:
        assert not cuda, f"{service}: a light image must not use a CUDA base: {cuda}"
        for cmd in installs:
            heavy = [h for h in HEAVY if h in cmd]
            assert not heavy, f"{service}: the light image installs {heavy}: {cmd!r}"


def test_cuda_base_only_where_a_gpu_is_used() -> None:
    for service in SERVICES:
        for s in parse(dockerfile(service)):
            if s.base.startswith("nvidia/"):
                allowed = service == "trainer" or (service == "teacher" and s.name.startswith("hf"))
                assert allowed, f"{service} stage {s.name} uses {s.base}"


def test_feedback_image_installs_the_six_toolchains() -> None:
    final = chain(parse(dockerfile("feedback")), None)[0]
    apt = " ".join(a for a in final.args("RUN") if "apt-get install" in a)
    for pkg in ("gcc", "g++", "openjdk-17-jdk", "nodejs", "golang"):
        assert re.search(rf"(^|\s){re.escape(pkg)}", apt), f"feedback image lacks {pkg}"
    assert final.base.startswith("python:3.11"), "python comes from the base image"


def test_parser_catches_violations(tmp_path: Path) -> None:
    """The rules above can fail: a latest tag, a root user and a torch install are all seen."""
    assert pinned_image_problem("python:latest")
    assert pinned_image_problem("python")
    assert pinned_image_problem("python:slim")
    assert pinned_image_problem("nvidia/cuda:12.8.1-runtime-ubuntu24.04") is None
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11.13-slim AS b\nRUN pip install \\\n  torch\nFROM b\nUSER 0\n")
    stages = parse(bad)
    assert [s.name for s in stages] == ["b", "1"]
    assert stages[0].args("RUN") == ["pip install    torch"]
    assert [s.name for s in chain(stages, None)] == ["1", "b"]


def _closure(dist: str, extras: tuple[str, ...] = ()) -> set[str]:
    """Names of every distribution ``dist`` pulls in (with ``extras``), as installed here."""
    seen: set[str] = set()
    todo = [(dist, extras)]
    while todo:
        name, ext = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            env_ok = any(req.marker is None or req.marker.evaluate({"extra": e}) for e in (*ext, ""))
            if env_ok:
                todo.append((req.name, tuple(req.extras)))
    return seen


@pytest.mark.parametrize(("dist", "extras", "heavy"), [
    ("iterkd-feedback", (), False),
    ("iterkd-questions", (), False),
    ("iterkd-teacher", (), False),
    ("iterkd-controller", (), False),
    ("iterkd-teacher", ("hf",), True),
    ("iterkd-trainer", (), True),
])
def test_light_distributions_pull_no_torch(dist: str, extras: tuple[str, ...], heavy: bool) -> None:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{dist} is not installed in this environment")
    deps = _closure(dist, extras)
    assert ("torch" in deps) == heavy, f"{dist}{list(extras)}: torch in closure = {'torch' in deps}"
    if not heavy:
        assert not deps & {"transformers", "peft", "accelerate"}, f"{dist}: {sorted(deps)}"


def test_light_services_start_without_torch() -> None:
    """The light images' entry points import with torch and transformers absent."""
    code = textwrap.dedent("""
        import importlib, importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"torch", "transformers", "peft", "accelerate"}:
                    raise ImportError(f"{name} is not in this image")
        sys.meta_path.insert(0, Block())
        for mod in ("iterkd.shared.cli", "iterkd.teacher.server", "iterkd.feedback.server",
                    "iterkd.questions.server"):
            importlib.import_module(mod)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


LOCAL_DISTS = {"iterkd-shared": "shared", "iterkd-torchkit": "shared-torch"}


@pytest.mark.parametrize("service", SERVICES)
def test_every_local_dependency_is_copied_and_installed(service: str) -> None:
    """A service that depends on one of the repository's own distributions (iterkd-shared,
    iterkd-torchkit, also through an extra the image installs) copies and installs its folder:
    pip cannot find them in a registry."""
    import tomllib

    text = dockerfile(service).read_text()
    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]
    installs = [ln for ln in text.splitlines() if "pip install" in ln]
    for line in installs:
        extras = re.findall(rf"services/{service}\[([\w,]+)\]", line)
        deps = list(project.get("dependencies", []))
        for extra in (e for group in extras for e in group.split(",")):
            deps += project.get("optional-dependencies", {}).get(extra, [])
        for dep in deps:
            name = re.split(r"[<>=\[ ;]", dep, maxsplit=1)[0]
            if name in LOCAL_DISTS:
                folder = LOCAL_DISTS[name]
                assert f"COPY {folder} ./{folder}" in text, f"{service}: {name} needs COPY {folder}"
                assert f"./{folder} " in line or line.endswith(f"./{folder}"), f"{service}: {line!r} lacks ./{folder}"
