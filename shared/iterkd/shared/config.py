"""Configuration: one YAML file, validated by pydantic models.

The file has one section per service (``teacher``, ``trainer``, ``feedback``, ``questions``,
``controller``) plus ``store`` and ``logging`` that all share. Each service validates the sections
it uses with its own model (see :func:`load_config`); an unknown top-level key is an error so a
typo never goes unnoticed. Errors name the file and the field: ``run.yaml: store.backend: ...``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SECTIONS = ("store", "logging", "teacher", "trainer", "feedback", "questions", "controller", "run")


class ConfigError(ValueError):
    """A configuration problem; ``str()`` names the file and the field."""


class Section(BaseModel):
    """Base of every config section: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


class StoreConfig(Section):
    backend: Literal["local", "s3"] = "local"
    # local: a directory; relative paths resolve against the config file's folder.
    root: str = ".iterkd/store"
    # s3 / MinIO
    endpoint: str = "127.0.0.1:9000"
    bucket: str = "iterkd"
    secure: bool = False
    region: str | None = None
    prefix: str = ""
    create_bucket: bool = True
    access_key_env: str = "MINIO_ACCESS_KEY"
    secret_key_env: str = "MINIO_SECRET_KEY"
    # A mounted secret: a folder with files named by access_key_file / secret_key_file.
    credentials_dir: str | None = None
    access_key_file: str = "accesskey"
    secret_key_file: str = "secretkey"

    @model_validator(mode="after")
    def _check(self) -> StoreConfig:
        if self.backend == "s3" and not self.bucket:
            raise ValueError("bucket must be set for the s3 backend")
        return self


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class ServerConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    max_workers: int = Field(default=16, ge=1)
    max_concurrent_rpcs: int | None = Field(default=None, ge=1)
    grace_s: float = Field(default=10.0, ge=0)
    max_message_mb: int = Field(default=64, ge=1)


class FileConfig(BaseModel):
    """The whole file as one service sees it: shared sections plus its own.

    Subclass it with the service's section as a field. Sections of other services are kept as
    plain data (validated by those services), but a top-level key no service knows is an error.
    """

    model_config = ConfigDict(extra="allow")

    store: StoreConfig = Field(default_factory=StoreConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    source: str | None = Field(default=None, exclude=True)

    def local_paths(self) -> list[tuple[BaseModel, str]]:
        """The (section, field) pairs that hold local paths: relative ones are resolved against the
        config file's folder by :func:`load_config`. Services add theirs (model folders)."""
        return [(self.store, "root")] if self.store.backend == "local" else []

    @model_validator(mode="before")
    @classmethod
    def _known_sections(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = [*SECTIONS, *(k for k in cls.model_fields if k not in SECTIONS and k != "source")]
            unknown = sorted(k for k in data if k not in known)
            if unknown:
                raise ValueError(f"unknown section(s) {', '.join(unknown)}; expected some of {', '.join(known)}")
        return data


C = TypeVar("C", bound=BaseModel)


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"] if x != "__root__")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        lines.append(f"{source}: {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any] | None, model: type[C], source: str = "<config>") -> C:
    try:
        return model.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_config(path: str | os.PathLike[str] | None, model: type[C]) -> C:
    """Read and validate a YAML file; ``None`` gives the defaults (the embedded setup)."""
    if path is None:
        return parse_config({}, model)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of sections at the top level")
    cfg = parse_config(data, model, str(p))
    if isinstance(cfg, FileConfig):
        cfg.source = str(p)
        for section, name in cfg.local_paths():
            setattr(section, name, resolve_path(getattr(section, name), p))
    return cfg


def resolve_path(value: str | None, config_file: str | os.PathLike[str] | None) -> str | None:
    """A local path written in a config file: relative to the file's folder (absolute, empty or no
    file: as it is). Every service resolves its store root and model folders this one way."""
    if not value or config_file is None or Path(value).is_absolute():
        return value
    return str((Path(config_file).parent / value).resolve())


def merge_overrides(section: C, overrides_json: str, source: str = "config_json",
                    allowed: Iterable[str] | None = None) -> C:
    """A copy of ``section`` with a JSON object of overrides applied (RPCs carry these).

    ``allowed`` names the top-level fields a caller may override; an RPC must not be able to point
    a service at other hosts or files, so services pass the tuning fields only."""
    import json

    if not overrides_json:
        return section
    try:
        patch = json.loads(overrides_json)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: invalid JSON: {exc.msg}") from None
    if not isinstance(patch, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    if allowed is not None:
        refused = sorted(k for k in patch if k not in set(allowed))
        if refused:
            raise ConfigError(f"{source}: {', '.join(refused)} cannot be overridden per request; "
                              f"allowed: {', '.join(sorted(allowed))}")
    merged = _deep_merge(section.model_dump(by_alias=True), patch)
    return parse_config(merged, type(section), source)


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
