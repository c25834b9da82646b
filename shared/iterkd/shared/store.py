"""The artifact store: one interface, two backends (a local directory and S3/MinIO).

Keys are ``/``-separated relative paths (``runs/r1/cycle-001/train/adapter/...``). Writes are
atomic: a reader sees the old object or the whole new one, never a part. The local backend writes
a hidden temporary file beside the target and renames it into place; S3 makes a PUT visible only
when it is complete. Directories (checkpoints) are many objects; their completeness is what the
stage manifest (:mod:`iterkd.shared.stages`) records, written last.

URIs: ``file:///abs/root/key`` for the local backend, ``s3://bucket/prefix/key`` for S3. A service
resolves a URI from an RPC against its own store and refuses one outside it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from pydantic import BaseModel

from iterkd.shared.config import StoreConfig
from iterkd.shared.formats import dumps_jsonl, loads_jsonl

M = TypeVar("M", bound=BaseModel)
TMP_PREFIX = ".tmp-"


class StoreError(Exception):
    """A store operation failed."""


class ArtifactNotFound(StoreError, KeyError):
    """No object at that key."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want a sentence
        return str(self.args[0]) if self.args else "artifact not found"


class InvalidKey(StoreError, ValueError):
    """A key or URI that does not name an object inside this store."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str
    uri: str


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def normalize_key(key: str) -> str:
    """Reject absolute keys, ``..`` and empty parts; return the clean key."""
    if not key or key.startswith("/") or "\\" in key:
        raise InvalidKey(f"invalid key {key!r}: keys are relative, '/'-separated paths")
    parts = key.split("/")
    if any(p in ("..", ".", "") for p in parts):
        raise InvalidKey(f"invalid key {key!r}: no '.' or '..' parts")
    if any(p.startswith(TMP_PREFIX) for p in parts):
        raise InvalidKey(f"invalid key {key!r}: names starting with {TMP_PREFIX!r} are reserved")
    return "/".join(parts)


def join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


class ArtifactStore(ABC):
    """What every backend offers. Subclasses implement the primitive byte operations."""

    # -- primitives -------------------------------------------------------------------------
    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> ObjectInfo: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix`` (a folder), recursively, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def uri(self, key: str) -> str: ...

    @abstractmethod
    def key_from_uri(self, uri: str) -> str:
        """The key a URI names, or InvalidKey when the URI is outside this store."""

    # -- files and folders ------------------------------------------------------------------
    def put_file(self, key: str, path: str | os.PathLike[str]) -> ObjectInfo:
        return self.put_bytes(key, Path(path).read_bytes())

    def get_file(self, key: str, path: str | os.PathLike[str]) -> Path:
        from iterkd.shared.formats import write_atomic

        write_atomic(path, self.get_bytes(key))
        return Path(path)

    def put_dir(self, prefix: str, local_dir: str | os.PathLike[str]) -> list[ObjectInfo]:
        """Upload every file under ``local_dir`` to ``prefix/<relative path>``."""
        root = Path(local_dir)
        if not root.is_dir():
            raise StoreError(f"{root}: not a directory")
        infos = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            infos.append(self.put_file(join(prefix, path.relative_to(root).as_posix()), path))
        return infos

    def get_dir(self, prefix: str, local_dir: str | os.PathLike[str]) -> Path:
        """Download every object under ``prefix`` into ``local_dir`` (created, filled atomically:
        it appears under its name only once complete)."""
        keys = self.list(prefix)
        if not keys:
            raise ArtifactNotFound(f"no objects under {self.uri(prefix)}")
        dest = Path(local_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=dest.parent))
        try:
            base = prefix.strip("/")
            for key in keys:
                rel = key[len(base):].lstrip("/") if base else key
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.get_bytes(key))
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)

    # -- structured data --------------------------------------------------------------------
    def put_jsonl(self, key: str, rows: Iterable[BaseModel | dict[str, Any]]) -> ObjectInfo:
        return self.put_bytes(key, dumps_jsonl(rows))

    def get_jsonl(self, key: str, model: type[M]) -> list[M]:
        return loads_jsonl(model, self.get_bytes(key), self.uri(key))

    def put_json(self, key: str, obj: BaseModel | dict[str, Any]) -> ObjectInfo:
        import json

        data = obj.model_dump_json(indent=2) if isinstance(obj, BaseModel) else json.dumps(obj, indent=2)
        return self.put_bytes(key, data.encode("utf-8"))

    def get_json(self, key: str) -> Any:
        import json

        return json.loads(self.get_bytes(key))

    def info(self, key: str) -> ObjectInfo:
        data = self.get_bytes(key)
        return ObjectInfo(key=key, size=len(data), sha256=sha256_bytes(data), uri=self.uri(key))

    def resolve(self, uri_or_key: str) -> str:
        """A key from either a URI of this store or a plain key."""
        if "://" in uri_or_key:
            return self.key_from_uri(uri_or_key)
        return normalize_key(uri_or_key)


class LocalStore(ArtifactStore):
    """A directory on disk; the embedded default."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / normalize_key(key)

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return ObjectInfo(key=normalize_key(key), size=len(data), sha256=sha256_bytes(data), uri=self.uri(key))

    def put_file(self, key: str, path: str | os.PathLike[str]) -> ObjectInfo:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=target.parent)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return ObjectInfo(key=normalize_key(key), size=size, sha256=digest.hexdigest(), uri=self.uri(key))

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ArtifactNotFound(f"no artifact at {self.uri(key)}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix) if prefix.strip("/") else self.root
        if base.is_file():
            return [normalize_key(prefix)]
        if not base.is_dir():
            return []
        keys = []
        for path in base.rglob("*"):
            rel = path.relative_to(self.root)
            if path.is_file() and not any(part.startswith(TMP_PREFIX) for part in rel.parts):
                keys.append(rel.as_posix())
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        clean = key.strip("/")
        return (self.root / clean).as_uri() if clean else self.root.as_uri()

    def key_from_uri(self, uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise InvalidKey(f"{uri}: not a file:// URI of the local store at {self.root}")
        path = Path(unquote(parsed.path)).resolve()
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            raise InvalidKey(f"{uri}: outside the local store at {self.root}") from None
        return normalize_key(rel.as_posix())

    def local_path(self, key: str) -> Path:
        """Where a key lives on disk (the local backend only; for zero-copy model loading)."""
        return self._path(key)


class S3Store(ArtifactStore):
    """S3 or MinIO through the ``minio`` client."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", create_bucket: bool = True) -> None:
        from minio.error import S3Error

        self._client = client
        self._S3Error = S3Error
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if create_bucket and not client.bucket_exists(bucket):
            try:
                client.make_bucket(bucket)
            except S3Error as exc:  # a concurrent creator won
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise StoreError(f"cannot create bucket {bucket}: {exc.code}") from None

    @classmethod
    def from_config(cls, cfg: StoreConfig) -> S3Store:
        from minio import Minio

        access, secret = _credentials(cfg)
        client = Minio(cfg.endpoint, access_key=access, secret_key=secret, secure=cfg.secure, region=cfg.region)
        return cls(client, cfg.bucket, cfg.prefix, cfg.create_bucket)

    def _object(self, key: str) -> str:
        return join(self.prefix, normalize_key(key))

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        digest = sha256_bytes(data)
        self._client.put_object(
            self.bucket, self._object(key), io.BytesIO(data), len(data),
            metadata={"x-amz-meta-sha256": digest},
        )
        return ObjectInfo(key=normalize_key(key), size=len(data), sha256=digest, uri=self.uri(key))

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self._client.get_object(self.bucket, self._object(key))
        except self._S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise ArtifactNotFound(f"no artifact at {self.uri(key)}") from None
            raise StoreError(f"{self.uri(key)}: {exc.code}: {exc.message}") from None
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def exists(self, key: str) -> bool:
        try:
            self._client.stat_object(self.bucket, self._object(key))
            return True
        except self._S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject", "NotFound"):
                return False
            raise StoreError(f"{self.uri(key)}: {exc.code}: {exc.message}") from None

    def _iter_objects(self, prefix: str) -> Iterator[Any]:
        folder = join(self.prefix, prefix.strip("/"))
        return self._client.list_objects(self.bucket, prefix=f"{folder}/" if folder else "", recursive=True)

    def list(self, prefix: str = "") -> list[str]:
        if prefix.strip("/"):
            normalize_key(prefix.strip("/"))
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys = [obj.object_name[strip:] for obj in self._iter_objects(prefix)]
        if prefix.strip("/") and self.exists(prefix.strip("/")):
            keys.append(prefix.strip("/"))
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._client.remove_object(self.bucket, self._object(key))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{join(self.prefix, key)}"

    def key_from_uri(self, uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or parsed.netloc != self.bucket:
            raise InvalidKey(f"{uri}: not in this store (s3://{self.bucket}/{self.prefix})")
        path = parsed.path.lstrip("/")
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                raise InvalidKey(f"{uri}: outside the store prefix {self.prefix!r}")
            path = path[len(self.prefix) + 1:]
        return normalize_key(path)


def _credentials(cfg: StoreConfig) -> tuple[str | None, str | None]:
    """From a mounted secret folder if configured, else from environment variables."""
    if cfg.credentials_dir:
        folder = Path(cfg.credentials_dir)
        try:
            access = (folder / cfg.access_key_file).read_text().strip()
            secret = (folder / cfg.secret_key_file).read_text().strip()
        except OSError as exc:
            raise StoreError(f"store.credentials_dir: cannot read {exc.filename}") from None
        return access, secret
    return os.environ.get(cfg.access_key_env), os.environ.get(cfg.secret_key_env)


def open_store(cfg: StoreConfig) -> ArtifactStore:
    if cfg.backend == "local":
        return LocalStore(cfg.root)
    return S3Store.from_config(cfg)
