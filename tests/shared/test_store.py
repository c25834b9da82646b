"""The artifact store: the same behaviour from the local directory and S3 (moto on loopback)."""

import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from iterkd.shared.config import StoreConfig
from iterkd.shared.formats import Sample
from iterkd.shared.store import (
    ArtifactNotFound,
    ArtifactStore,
    InvalidKey,
    LocalStore,
    S3Store,
    StoreError,
    open_store,
    sha256_bytes,
)

_bucket = itertools.count()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "local":
        yield open_store(StoreConfig(backend="local", root=str(tmp_path / "store")))
        return
    endpoint = request.getfixturevalue("s3_endpoint")
    request.getfixturevalue("s3_env")
    cfg = StoreConfig(backend="s3", endpoint=endpoint, bucket=f"iterkd-test-{next(_bucket)}", prefix="pfx")
    yield open_store(cfg)


def test_bytes_roundtrip_and_info(store: ArtifactStore) -> None:
    info = store.put_bytes("runs/r1/a.txt", b"hello")
    assert info.sha256 == sha256_bytes(b"hello") and info.size == 5
    assert store.get_bytes("runs/r1/a.txt") == b"hello"
    assert store.exists("runs/r1/a.txt") and not store.exists("runs/r1/b.txt")
    assert store.key_from_uri(store.uri("runs/r1/a.txt")) == "runs/r1/a.txt"
    store.put_bytes("runs/r1/a.txt", b"replaced")
    assert store.get_bytes("runs/r1/a.txt") == b"replaced"


def test_missing_object(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactNotFound, match="no artifact at"):
        store.get_bytes("runs/none.jsonl")


def test_list_is_recursive_and_scoped(store: ArtifactStore) -> None:
    for key in ["runs/r1/x/1", "runs/r1/x/2", "runs/r1/y", "runs/r10/z"]:
        store.put_bytes(key, b"1")
    assert store.list("runs/r1") == ["runs/r1/x/1", "runs/r1/x/2", "runs/r1/y"]
    assert store.list("runs/r1/x") == ["runs/r1/x/1", "runs/r1/x/2"]
    assert store.list("runs/nothing") == []
    assert store.delete_prefix("runs/r1/x") == 2
    assert store.list("runs/r1") == ["runs/r1/y"]


def test_jsonl_roundtrip(store: ArtifactStore) -> None:
    rows = [Sample(problem_id="p", sample_id=f"p#{i}", completion=f"x = {i}\n") for i in range(3)]
    store.put_jsonl("runs/r/s.jsonl", rows)
    assert store.get_jsonl("runs/r/s.jsonl", Sample) == rows


def test_dir_roundtrip(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "ckpt"
    (src / "sub").mkdir(parents=True)
    (src / "adapter.safetensors").write_bytes(os.urandom(4096))
    (src / "sub" / "config.json").write_text("{}")
    store.put_dir("runs/r/train/adapter", src)
    out = store.get_dir("runs/r/train/adapter", tmp_path / "copy")
    assert (out / "adapter.safetensors").read_bytes() == (src / "adapter.safetensors").read_bytes()
    assert (out / "sub" / "config.json").read_text() == "{}"
    with pytest.raises(ArtifactNotFound):
        store.get_dir("runs/r/none", tmp_path / "none")
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a\\b", "x/.tmp-y"])
def test_bad_keys_are_refused(store: ArtifactStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        store.put_bytes(key, b"x")


def test_uri_outside_the_store_is_refused(store: ArtifactStore) -> None:
    for uri in ["file:///etc/passwd", "s3://other-bucket/runs/x", "http://example/x"]:
        with pytest.raises(InvalidKey):
            store.key_from_uri(uri)


def test_local_write_is_atomic_for_concurrent_readers(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    big_a, big_b = b"a" * (4 << 20), b"b" * (4 << 20)
    store.put_bytes("k", big_a)
    seen: set[bytes] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = store.get_bytes("k")
            seen.add(data[:1] + data[-1:] + len(data).to_bytes(8, "big"))

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(20):
        store.put_bytes("k", big_b if i % 2 == 0 else big_a)
    stop.set()
    thread.join()
    whole = {b"aa" + len(big_a).to_bytes(8, "big"), b"bb" + len(big_b).to_bytes(8, "big")}
    assert seen and seen <= whole, "a reader saw a partly written object"


def test_local_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("k", b"old")

    def boom(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        store.put_bytes("k", b"new")
    monkeypatch.undo()
    assert store.get_bytes("k") == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["k"], "a temporary file was left behind"
    assert store.list() == ["k"]


def test_s3_credentials_from_mounted_secret(s3_endpoint: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "accesskey").write_text("from-file\n")
    (secret / "secretkey").write_text("also-from-file\n")
    cfg = StoreConfig(backend="s3", endpoint=s3_endpoint, bucket="iterkd-secret", credentials_dir=str(secret))
    store = open_store(cfg)
    assert isinstance(store, S3Store)
    store.put_bytes("a", b"1")
    assert store.get_bytes("a") == b"1"
    missing = cfg.model_copy(update={"credentials_dir": str(tmp_path / "absent")})
    with pytest.raises(StoreError, match="credentials_dir: cannot read"):
        open_store(missing)
