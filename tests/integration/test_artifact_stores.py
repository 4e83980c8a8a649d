"""One contract for every artifact store: the folder store and the S3 store against a real
SeaweedFS server (the ``seaweedfs`` fixture of tests/integration/conftest.py; the run fails
if it cannot start)."""

from __future__ import annotations

import hashlib
import secrets
import shutil
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from kittylab import bootstrap
from kittylab.adapters.db.embedded import EmbeddedPostgres
from kittylab.adapters.storage.folder import FolderArtifactStore
from kittylab.adapters.storage.s3 import S3ArtifactStore
from kittylab.config import Settings
from kittylab.domain.errors import ValidationFailed
from kittylab.records.ports import (
    ArtifactMissing,
    ArtifactStore,
    ArtifactStoreError,
    ArtifactStoreFull,
)
from tests.integration.seaweedfs import SeaweedFS

MiB = 1 << 20


def _settings(server: SeaweedFS, url: str, tmp_path: Path, **overrides: object) -> Settings:
    storage = {
        "url": url,
        "endpoint_url": server.endpoint_url,
        "access_key_id": server.access_key_id,
        "secret_access_key": server.secret_access_key,
        "connect_timeout_seconds": 2.0,
        "read_timeout_seconds": 20.0,
        **overrides,
    }
    return Settings(data_dir=tmp_path / "data", storage=storage, _env_file=None)  # type: ignore[call-arg, arg-type]


def _raw_client(server: SeaweedFS) -> object:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=server.secret_access_key,
        region_name="us-east-1",
    )


@pytest.fixture(params=["folder", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    """Each store as ``bootstrap.artifact_store`` builds it from settings; S3 tests share a
    bucket (made by the store on first use) under a prefix of their own."""
    if request.param == "folder":
        built = bootstrap.artifact_store(
            Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
        )
        assert isinstance(built, FolderArtifactStore)
        return built
    server: SeaweedFS = request.getfixturevalue("seaweedfs")
    prefix = f"contract-{secrets.token_hex(4)}"
    built = bootstrap.artifact_store(
        _settings(server, f"s3://kittylab-contract/{prefix}", tmp_path)
    )
    assert isinstance(built, S3ArtifactStore)
    return built


def _read(store: ArtifactStore, key: str) -> bytes:
    return b"".join(store.read_chunks(key))


# -- the contract, for both stores ------------------------------------------------------


def test_put_bytes_is_read_back_with_its_size_and_sha256(store: ArtifactStore) -> None:
    data = b"G28 ; home\nG1 X10 Y10\n" * 100
    stored = store.put_bytes("gcode/job-1.gcode", data, content_type="text/x-gcode")

    assert (stored.key, stored.size, stored.content_type) == (
        "gcode/job-1.gcode",
        len(data),
        "text/x-gcode",
    )
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert _read(store, "gcode/job-1.gcode") == data


def test_put_file_then_download_to_gives_an_identical_file(
    store: ArtifactStore, tmp_path: Path
) -> None:
    source = tmp_path / "part.stl"
    source.write_bytes(secrets.token_bytes(300_000))

    stored = store.put_file("cad/j1/part.stl", source, content_type="model/stl")
    target = tmp_path / "copy.stl"
    store.download_to("cad/j1/part.stl", target)

    assert target.read_bytes() == source.read_bytes()
    assert stored.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert stored.size == 300_000


def test_read_chunks_yields_pieces_no_larger_than_asked(store: ArtifactStore) -> None:
    data = secrets.token_bytes(10_000)
    store.put_bytes("snap/a.jpg", data, content_type="image/jpeg")

    chunks = list(store.read_chunks("snap/a.jpg", chunk_size=1024))

    assert b"".join(chunks) == data
    assert len(chunks) >= 10
    assert max(len(c) for c in chunks) <= 1024


def test_storing_under_an_existing_key_replaces_the_artifact(store: ArtifactStore) -> None:
    store.put_bytes("cad/j1/plate.step", b"first version", content_type="model/step")
    store.put_bytes("cad/j1/plate.step", b"second", content_type="model/step")

    assert _read(store, "cad/j1/plate.step") == b"second"


def test_exists_follows_put_and_delete(store: ArtifactStore) -> None:
    assert not store.exists("cad/j2/a.stl")
    store.put_bytes("cad/j2/a.stl", b"solid a", content_type="model/stl")
    assert store.exists("cad/j2/a.stl")

    store.delete("cad/j2/a.stl")

    assert not store.exists("cad/j2/a.stl")
    with pytest.raises(ArtifactMissing):
        store.read_chunks("cad/j2/a.stl")


def test_deleting_a_missing_key_is_not_an_error(store: ArtifactStore) -> None:
    store.delete("never/stored.bin")
    assert not store.exists("never/stored.bin")


def test_a_missing_key_fails_on_the_call_not_mid_stream(
    store: ArtifactStore, tmp_path: Path
) -> None:
    with pytest.raises(ArtifactMissing, match=r"no artifact stored under gcode/none\.gcode"):
        store.read_chunks("gcode/none.gcode")
    target = tmp_path / "out.gcode"
    with pytest.raises(ArtifactMissing):
        store.download_to("gcode/none.gcode", target)
    assert not target.exists()


def test_a_key_naming_a_folder_of_artifacts_is_not_an_artifact(store: ArtifactStore) -> None:
    store.put_bytes("cad/j3/a.stl", b"solid a", content_type="model/stl")

    assert not store.exists("cad/j3")
    with pytest.raises(ArtifactMissing):
        store.read_chunks("cad/j3")
    store.delete("cad/j3")
    assert store.exists("cad/j3/a.stl")


BAD_KEYS = [
    "",
    "../escape.txt",
    "cad/../../etc/passwd",
    "/absolute/path",
    "cad//double-slash",
    "cad/",
    ".hidden",
    "cad/.hidden",
    "with space.stl",
    "back\\slash",
    "ümlaut.stl",
    "query?x=1",
    "a" * 513,
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_refused_by_every_operation(
    store: ArtifactStore, key: str, tmp_path: Path
) -> None:
    source = tmp_path / "f.bin"
    source.write_bytes(b"x")
    operations: list[Callable[[], object]] = [
        lambda: store.put_bytes(key, b"x", content_type="application/octet-stream"),
        lambda: store.put_file(key, source, content_type="application/octet-stream"),
        lambda: store.read_chunks(key),
        lambda: store.download_to(key, tmp_path / "out.bin"),
        lambda: store.exists(key),
        lambda: store.presigned_url(key, 60),
        lambda: store.delete(key),
    ]
    for index, operation in enumerate(operations):
        with pytest.raises(ValidationFailed, match="artifact_key") as caught:
            operation()
        assert caught.value.field == "artifact_key", index


def test_storing_a_file_that_cannot_be_read_is_a_store_error(
    store: ArtifactStore, tmp_path: Path
) -> None:
    with pytest.raises(ArtifactStoreError, match="cannot read"):
        store.put_file("cad/x.stl", tmp_path / "absent.stl", content_type="model/stl")
    assert not store.exists("cad/x.stl")


def test_a_large_file_is_streamed_in_and_out_without_being_held_in_memory(
    store: ArtifactStore, tmp_path: Path
) -> None:
    size = 64 * MiB
    source = tmp_path / "big.gcode"
    block = secrets.token_bytes(MiB)
    expected = hashlib.sha256()
    with source.open("wb") as out:
        for i in range(size // MiB):
            piece = i.to_bytes(8, "big") + block[8:]
            expected.update(piece)
            out.write(piece)

    tracemalloc.start()
    try:
        stored = store.put_file("gcode/big.gcode", source, content_type="text/x-gcode")
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()

        streamed = hashlib.sha256()
        for chunk in store.read_chunks("gcode/big.gcode"):
            streamed.update(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()

        target = tmp_path / "big-copy.gcode"
        store.download_to("gcode/big.gcode", target)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert stored.size == size
    assert stored.sha256 == expected.hexdigest() == streamed.hexdigest()
    assert target.stat().st_size == size
    # Whole-file buffering would cost at least the 64 MiB; parts and chunks cost far less.
    assert put_peak < 16 * MiB, put_peak
    assert read_peak < 4 * MiB, read_peak
    assert download_peak < 16 * MiB, download_peak


# -- listing ------------------------------------------------------------------------------


def _listed(store: ArtifactStore, prefix: str) -> dict[str, int]:
    return {info.key: info.size for info in store.list_artifacts(prefix)}


def test_listing_gives_every_key_under_a_prefix_with_its_size_and_time(
    store: ArtifactStore,
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    store.put_bytes("uploads/u1/a/part.stl", b"solid" * 100, content_type="model/stl")
    store.put_bytes("uploads/u1/b/part.gcode", b"G1\n" * 10, content_type="text/x-gcode")
    store.put_bytes("uploads/u2/c/x.3mf", b"PK", content_type="model/3mf")
    store.put_bytes("uploads-not/d.stl", b"other", content_type="model/stl")
    store.put_bytes("gcode/j1.gcode", b"G28", content_type="text/x-gcode")

    infos = list(store.list_artifacts("uploads/"))

    assert {i.key: i.size for i in infos} == {
        "uploads/u1/a/part.stl": 500,
        "uploads/u1/b/part.gcode": 30,
        "uploads/u2/c/x.3mf": 2,
    }
    for info in infos:
        assert info.modified_at.tzinfo is not None
        assert before <= info.modified_at <= datetime.now(UTC) + timedelta(seconds=5)
    assert _listed(store, "uploads/u1/") == {
        "uploads/u1/a/part.stl": 500,
        "uploads/u1/b/part.gcode": 30,
    }
    # A string prefix, as in S3: it need not end at a folder.
    assert set(_listed(store, "uploads")) == {
        "uploads/u1/a/part.stl",
        "uploads/u1/b/part.gcode",
        "uploads/u2/c/x.3mf",
        "uploads-not/d.stl",
    }
    assert set(_listed(store, "")) == set(_listed(store, "uploads")) | {"gcode/j1.gcode"}


def test_listing_follows_replacement_and_deletion(store: ArtifactStore) -> None:
    store.put_bytes("uploads/u1/a/part.stl", b"first version", content_type="model/stl")
    store.put_bytes("uploads/u1/a/part.stl", b"second", content_type="model/stl")
    store.put_bytes("uploads/u1/b/other.stl", b"other", content_type="model/stl")
    assert _listed(store, "uploads/") == {"uploads/u1/a/part.stl": 6, "uploads/u1/b/other.stl": 5}

    store.delete("uploads/u1/a/part.stl")
    assert _listed(store, "uploads/") == {"uploads/u1/b/other.stl": 5}
    store.delete("uploads/u1/b/other.stl")
    assert _listed(store, "uploads/") == {}
    # What deleting left empty takes new artifacts again.
    store.put_bytes("uploads/u1/a/again.stl", b"again", content_type="model/stl")
    assert _listed(store, "uploads/u1/") == {"uploads/u1/a/again.stl": 5}


def test_listing_a_prefix_nothing_is_stored_under_is_empty(store: ArtifactStore) -> None:
    assert list(store.list_artifacts("nothing/here/")) == []
    assert list(store.list_artifacts("")) == []


def test_listing_many_artifacts_goes_past_one_page(store: ArtifactStore) -> None:
    for index in range(1005):  # an S3 listing page holds at most 1,000
        store.put_bytes(f"bulk/{index:04d}.txt", b"x", content_type="text/plain")

    listed = _listed(store, "bulk/")

    assert len(listed) == 1005
    assert set(listed.values()) == {1}


@pytest.mark.parametrize("prefix", ["../", "/abs", "cad//x", ".hidden", "cad/../../x", "a b"])
def test_listing_refuses_a_prefix_no_key_can_start_with(store: ArtifactStore, prefix: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        store.list_artifacts(prefix)
    assert caught.value.field == "artifact_prefix"


def test_folder_listing_leaves_out_writes_in_progress_and_stray_files(tmp_path: Path) -> None:
    folder = FolderArtifactStore(tmp_path / "artifacts")
    folder.put_bytes("uploads/u1/a/part.stl", b"solid", content_type="model/stl")
    (tmp_path / "artifacts" / "uploads" / "u1" / "a" / ".incoming-x1").write_bytes(b"half")
    (tmp_path / "artifacts" / "uploads" / "u1" / "a" / "with space.stl").write_bytes(b"?")

    assert _listed(folder, "uploads/") == {"uploads/u1/a/part.stl": 5}


def test_folder_delete_removes_the_folders_it_empties_and_no_others(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    folder = FolderArtifactStore(root)
    folder.put_bytes("uploads/u1/a/part.stl", b"solid", content_type="model/stl")
    folder.put_bytes("uploads/u1/b/keep.stl", b"solid", content_type="model/stl")

    folder.delete("uploads/u1/a/part.stl")

    assert not (root / "uploads" / "u1" / "a").exists()
    assert (root / "uploads" / "u1" / "b" / "keep.stl").is_file()
    folder.delete("uploads/u1/b/keep.stl")
    assert not (root / "uploads").exists()
    assert root.is_dir()


def test_s3_listing_stays_within_the_store_prefix(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    lab_a = bootstrap.artifact_store(_settings(seaweedfs, "s3://kittylab-list/lab-a", tmp_path))
    lab_ab = bootstrap.artifact_store(_settings(seaweedfs, "s3://kittylab-list/lab-ab", tmp_path))
    lab_a.put_bytes("uploads/u/a.stl", b"A", content_type="model/stl")
    lab_ab.put_bytes("uploads/u/b.stl", b"BB", content_type="model/stl")
    raw = _raw_client(seaweedfs)
    raw.put_object(Bucket="kittylab-list", Key="lab-a/uploads/u/stray name.stl", Body=b"?")  # type: ignore[attr-defined]

    assert _listed(lab_a, "") == {"uploads/u/a.stl": 1}
    assert _listed(lab_ab, "uploads/") == {"uploads/u/b.stl": 2}


# -- where the folder store lives ---------------------------------------------------------


def test_the_default_folder_store_is_beside_the_embedded_database_and_keeps_its_artifacts(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]
    store = bootstrap.artifact_store(settings)
    assert isinstance(store, FolderArtifactStore)
    store.put_bytes("gcode/j1.gcode", b"G28", content_type="text/x-gcode")

    # Where existing installs keep theirs: not moved, and outside PostgreSQL's folder.
    assert store.root == data_dir / "artifacts"
    assert (data_dir / "artifacts" / "gcode" / "j1.gcode").read_bytes() == b"G28"
    assert not store.root.is_relative_to(EmbeddedPostgres(data_dir).pgdata)
    assert _read(bootstrap.artifact_store(settings), "gcode/j1.gcode") == b"G28"
    assert store.min_free_bytes == settings.storage.min_free_bytes == 1 << 30


def test_a_store_folder_of_its_own_is_taken(tmp_path: Path) -> None:
    own = tmp_path / "disk2" / "artifacts"
    store = bootstrap.artifact_store(
        Settings(data_dir=tmp_path / "data", storage={"url": f"file://{own}"}, _env_file=None)  # type: ignore[call-arg, arg-type]
    )
    assert isinstance(store, FolderArtifactStore)
    assert store.root == own


@pytest.mark.parametrize("where", ["data/postgres", "data/postgres/artifacts", "data", "."])
def test_a_store_folder_overlapping_the_database_or_the_data_dir_is_refused(
    tmp_path: Path, where: str
) -> None:
    folder = (tmp_path / where).resolve()
    settings = Settings(
        data_dir=tmp_path / "data", storage={"url": f"file://{folder}"}, _env_file=None
    )  # type: ignore[call-arg, arg-type]

    with pytest.raises(ValidationFailed) as caught:
        bootstrap.artifact_store(settings)

    assert caught.value.field == "storage.url"
    assert "PostgreSQL" in caught.value.message


def test_folder_store_refuses_a_write_that_would_eat_its_free_space_reserve(
    tmp_path: Path,
) -> None:
    root = tmp_path / "artifacts"
    free = shutil.disk_usage(tmp_path).free
    roomy = FolderArtifactStore(root, min_free_bytes=free // 2)
    roomy.put_bytes("a/fits.bin", b"x" * 1000, content_type="x/y")
    tight = FolderArtifactStore(root, min_free_bytes=10 * free)  # other processes write too
    source = tmp_path / "part.stl"
    source.write_bytes(b"solid" * 100)

    with pytest.raises(ArtifactStoreFull, match=r"storage\.min_free_bytes"):
        tight.put_bytes("a/b.bin", b"x", content_type="x/y")
    with pytest.raises(ArtifactStoreFull):
        tight.put_file("a/c.stl", source, content_type="model/stl")

    assert _listed(tight, "") == {"a/fits.bin": 1000}
    assert [p.name for p in (root / "a").iterdir()] == ["fits.bin"]  # no half-written file


# -- presigned URLs -----------------------------------------------------------------------


def test_folder_store_gives_no_presigned_url(tmp_path: Path) -> None:
    folder = FolderArtifactStore(tmp_path / "artifacts")
    folder.put_bytes("snap/a.jpg", b"jpeg", content_type="image/jpeg")

    assert folder.presigned_url("snap/a.jpg", 60) is None


def test_s3_presigned_url_serves_the_artifact_without_credentials(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    store = bootstrap.artifact_store(_settings(seaweedfs, "s3://kittylab-presign/p", tmp_path))
    data = secrets.token_bytes(200_000)
    store.put_bytes("cad/j1/part.stl", data, content_type="model/stl")

    url = store.presigned_url("cad/j1/part.stl", 300)

    assert url is not None
    assert seaweedfs.secret_access_key not in url
    assert "X-Amz-Signature=" in url  # SigV4, the only presigning AWS still accepts
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "model/stl"
    tampered = url.replace("/cad/j1/part.stl", "/cad/j1/other.stl")
    assert httpx.get(tampered, timeout=10).status_code == 403


def test_s3_presigned_url_stops_working_when_it_expires(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    store = bootstrap.artifact_store(_settings(seaweedfs, "s3://kittylab-presign/e", tmp_path))
    store.put_bytes("snap/x.jpg", b"jpeg bytes", content_type="image/jpeg")
    url = store.presigned_url("snap/x.jpg", 1)
    assert url is not None

    time.sleep(2.1)

    assert httpx.get(url, timeout=10).status_code == 403


@pytest.mark.parametrize("seconds", [0, -5, 7 * 24 * 3600 + 1])
def test_s3_presigned_expiry_outside_sigv4_limits_is_refused(
    seaweedfs: SeaweedFS, tmp_path: Path, seconds: int
) -> None:
    store = bootstrap.artifact_store(_settings(seaweedfs, "s3://kittylab-presign/l", tmp_path))
    with pytest.raises(ValidationFailed) as caught:
        store.presigned_url("snap/x.jpg", seconds)
    assert caught.value.field == "expires_seconds"


# -- S3 specifics -----------------------------------------------------------------------


def test_s3_store_creates_a_missing_bucket_on_first_use(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    bucket = f"kittylab-new-{secrets.token_hex(4)}"
    raw = _raw_client(seaweedfs)
    with pytest.raises(ClientError):
        raw.head_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    store = bootstrap.artifact_store(_settings(seaweedfs, f"s3://{bucket}", tmp_path))

    store.put_bytes("first.txt", b"hello", content_type="text/plain")

    raw.head_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    head = raw.head_object(Bucket=bucket, Key="first.txt")  # type: ignore[attr-defined]
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"]["sha256"] == hashlib.sha256(b"hello").hexdigest()


def test_s3_bucket_removed_behind_the_store_is_made_again_on_the_next_write(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    bucket = f"kittylab-gone-{secrets.token_hex(4)}"
    store = bootstrap.artifact_store(_settings(seaweedfs, f"s3://{bucket}", tmp_path))
    store.put_bytes("a.txt", b"a", content_type="text/plain")
    raw = _raw_client(seaweedfs)
    raw.delete_object(Bucket=bucket, Key="a.txt")  # type: ignore[attr-defined]
    raw.delete_bucket(Bucket=bucket)  # type: ignore[attr-defined]

    with pytest.raises(ArtifactStoreError, match="NoSuchBucket") as caught:
        store.put_bytes("b.txt", b"b", content_type="text/plain")
    assert not isinstance(caught.value, ArtifactMissing)
    store.put_bytes("b.txt", b"b", content_type="text/plain")

    assert _read(store, "b.txt") == b"b"


def test_s3_prefixes_keep_two_stores_in_one_bucket_apart(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    lab_a = bootstrap.artifact_store(_settings(seaweedfs, "s3://kittylab-shared/lab-a", tmp_path))
    lab_b = bootstrap.artifact_store(_settings(seaweedfs, "s3://kittylab-shared/lab-b/", tmp_path))
    lab_a.put_bytes("gcode/1.gcode", b"A", content_type="text/x-gcode")

    assert not lab_b.exists("gcode/1.gcode")
    raw = _raw_client(seaweedfs)
    body = raw.get_object(Bucket="kittylab-shared", Key="lab-a/gcode/1.gcode")["Body"]  # type: ignore[attr-defined]
    assert body.read() == b"A"


def test_s3_wrong_credentials_are_a_store_error_that_never_shows_the_secret(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    wrong = "not-the-secret-" + secrets.token_hex(8)
    store = bootstrap.artifact_store(
        _settings(seaweedfs, "s3://kittylab-contract/creds", tmp_path, secret_access_key=wrong)
    )

    for operation in (
        lambda: store.put_bytes("a.txt", b"a", content_type="text/plain"),
        lambda: store.read_chunks("a.txt"),
        lambda: store.exists("a.txt"),
    ):
        with pytest.raises(ArtifactStoreError) as caught:
            operation()
        assert not isinstance(caught.value, ArtifactMissing)
        assert "credentials" in str(caught.value)
        assert wrong not in str(caught.value)
        assert seaweedfs.secret_access_key not in str(caught.value)


def test_s3_unreachable_server_is_a_store_error_within_the_timeouts(tmp_path: Path) -> None:
    closed = SeaweedFS("http://127.0.0.1:9", "k", "s", tmp_path)  # discard port: refused
    store = bootstrap.artifact_store(
        _settings(closed, "s3://kittylab-down", tmp_path, max_attempts=2)
    )

    started = time.monotonic()
    with pytest.raises(ArtifactStoreError, match=r"S3 could not reach bucket kittylab-down"):
        store.put_bytes("a.txt", b"a", content_type="text/plain")
    assert time.monotonic() - started < 10


def test_s3_server_dying_mid_stream_is_a_store_error_not_a_foreign_one(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    with SeaweedFS.start(tmp_path_factory.mktemp("seaweedfs-doomed")) as doomed:
        store = bootstrap.artifact_store(
            _settings(doomed, "s3://kittylab-doomed", tmp_path, max_attempts=1)
        )
        store.put_bytes("big.bin", secrets.token_bytes(24 * MiB), content_type="x/y")
        chunks = store.read_chunks("big.bin", chunk_size=64 * 1024)
        next(chunks)

        doomed.kill()

        with pytest.raises(ArtifactStoreError) as caught:
            for _ in chunks:
                pass
        assert not isinstance(caught.value, ArtifactMissing)
        assert "S3 could not read s3://kittylab-doomed/big.bin" in str(caught.value)
        with pytest.raises(ArtifactStoreError, match="S3 could not look up"):
            store.exists("big.bin")
