"""The artifact store on any S3-compatible server (AWS S3, SeaweedFS, MinIO, Ceph RGW) via boto3.

An artifact ``key`` is the object ``<prefix>/<key>`` in one bucket. The bucket is created on
first use when the server says it does not exist (an identity that may not list or create
buckets simply skips that step). Every request has a connect timeout, a read timeout and a
bounded number of tries (botocore's ``standard`` retry mode), and botocore's exceptions
become :class:`ArtifactStoreError` or :class:`ArtifactMissing` here: nothing from boto
reaches the services. Messages name the bucket and key, never a credential.

Large files move in pieces: ``put_file`` and ``download_to`` use multipart transfers of
``_PART`` bytes, ``read_chunks`` streams the response body; no call holds a whole artifact in
memory except ``put_bytes``, whose caller already does.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from kittylab.config import StorageSettings
from kittylab.domain.errors import ValidationFailed
from kittylab.records.ports import (
    ArtifactInfo,
    ArtifactMissing,
    ArtifactStoreError,
    StoredArtifact,
    is_valid_key,
    validate_key,
    validate_prefix,
)

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3.client import S3Client

_CHUNK = 1 << 16
_PART = 8 << 20
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})
_MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the SigV4 limit


def s3_client(storage: StorageSettings) -> S3Client:
    """A boto3 S3 client for ``storage``. Creating it opens no connection."""
    style = storage.addressing_style
    if style == "auto":
        # Self-hosted servers rarely have wildcard DNS for bucket subdomains.
        style = "path" if storage.endpoint_url else "virtual"
    config = Config(
        region_name=storage.region,
        signature_version="s3v4",
        connect_timeout=storage.connect_timeout_seconds,
        read_timeout=storage.read_timeout_seconds,
        retries={"max_attempts": storage.max_attempts, "mode": "standard"},
        s3={"addressing_style": style},
    )
    key_id = storage.access_key_id.get_secret_value() if storage.access_key_id else None
    secret = storage.secret_access_key.get_secret_value() if storage.secret_access_key else None
    with _session_lock:
        # One session per process: it caches the parsed service models, so later clients
        # cost milliseconds instead of most of a second. Credentials are per client.
        session = _session()
        return session.client(
            "s3",
            endpoint_url=storage.endpoint_url,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=config,
        )


_session_lock = threading.Lock()


@functools.cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


class S3ArtifactStore:
    """Implements the ``ArtifactStore`` port on one bucket (and optional key prefix)."""

    def __init__(
        self, client: S3Client, bucket: str, prefix: str = "", *, region: str = "us-east-1"
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._region = region
        self._bucket_checked = False
        self._bucket_lock = threading.Lock()
        self._transfer = TransferConfig(
            multipart_threshold=2 * _PART,
            multipart_chunksize=_PART,
            max_concurrency=4,
            io_chunksize=_CHUNK * 4,
            # Downloaded pieces waiting for the disk: at most 32 x 256 KiB in memory.
            max_io_queue=32,
        )

    @classmethod
    def from_settings(cls, storage: StorageSettings) -> S3ArtifactStore:
        return cls(s3_client(storage), storage.bucket, storage.prefix, region=storage.region)

    # -- the port -----------------------------------------------------------------------

    def put_file(self, key: str, path: Path, *, content_type: str) -> StoredArtifact:
        name = self._name(key)
        # One pass to hash, then a (multipart) upload that reads the file in parts again:
        # parts go up concurrently, so they cannot be hashed in order as they are sent.
        digest, size = _hash_file(path)
        self._ensure_bucket()
        with self._errors("store", key):
            self._client.upload_file(
                str(path),
                self.bucket,
                name,
                ExtraArgs={"ContentType": content_type, "Metadata": {"sha256": digest}},
                Config=self._transfer,
            )
        return StoredArtifact(key, size, digest, content_type)

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> StoredArtifact:
        name = self._name(key)
        digest = hashlib.sha256(data).hexdigest()
        self._ensure_bucket()
        with self._errors("store", key):
            self._client.put_object(
                Bucket=self.bucket,
                Key=name,
                Body=data,
                ContentType=content_type,
                Metadata={"sha256": digest},
            )
        return StoredArtifact(key, len(data), digest, content_type)

    def read_chunks(self, key: str, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        name = self._name(key)
        self._ensure_bucket()
        with self._errors("read", key, reading=True):
            response = self._client.get_object(Bucket=self.bucket, Key=name)
        # Requested before returning, so a missing key fails here and not mid-stream.
        return self._stream(response["Body"], key, chunk_size)

    def download_to(self, key: str, path: Path) -> None:
        name = self._name(key)
        self._ensure_bucket()
        # s3transfer writes a temporary file beside ``path`` and renames it into place.
        with self._errors("read", key, reading=True):
            self._client.download_file(self.bucket, name, str(path), Config=self._transfer)

    def exists(self, key: str) -> bool:
        name = self._name(key)
        self._ensure_bucket()
        try:
            with self._errors("look up", key, reading=True):
                self._client.head_object(Bucket=self.bucket, Key=name)
        except ArtifactMissing:
            return False
        return True

    def presigned_url(self, key: str, expires_seconds: int) -> str | None:
        name = self._name(key)
        if not 1 <= expires_seconds <= _MAX_PRESIGN_SECONDS:
            raise ValidationFailed(
                "expires_seconds", f"must be between 1 and {_MAX_PRESIGN_SECONDS}"
            )
        with self._errors("sign a URL for", key):
            return self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": name},
                ExpiresIn=expires_seconds,
            )

    def delete(self, key: str) -> None:
        name = self._name(key)
        self._ensure_bucket()
        with self._errors("delete", key):
            self._client.delete_object(Bucket=self.bucket, Key=name)

    def list_artifacts(self, prefix: str) -> Iterator[ArtifactInfo]:
        validate_prefix(prefix)
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ArtifactInfo]:
        # ListObjectsV2, a page (up to 1,000 objects) at a time: only one page is held.
        self._ensure_bucket()
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self._name_prefix(prefix))
        with self._errors("list", None):
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][strip:]
                    if is_valid_key(key):  # not one of ours: a stranger's object in the bucket
                        modified = item["LastModified"].astimezone(UTC)
                        yield ArtifactInfo(key, item["Size"], modified)

    # -- internals ----------------------------------------------------------------------

    def _name_prefix(self, prefix: str) -> str:
        return f"{self.prefix}/{prefix}" if self.prefix else prefix

    def _name(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{self._name(key)}" if key else f"bucket {self.bucket}"

    def _ensure_bucket(self) -> None:
        """Create the bucket when the server says it does not exist, once per store."""
        if self._bucket_checked:
            return
        with self._bucket_lock:
            if self._bucket_checked:
                return
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _status(exc) == 404 or _code(exc) == "NoSuchBucket":
                    self._create_bucket()
                elif _status(exc) != 403:
                    # 403: this identity may not list the bucket; its objects may still be
                    # readable and writable, so carry on and let the real request decide.
                    raise self._translate(exc, "reach", None) from exc
            except (BotoCoreError, Boto3Error) as exc:
                raise self._translate(exc, "reach", None) from exc
            self._bucket_checked = True

    def _create_bucket(self) -> None:
        arguments: dict[str, Any] = {"Bucket": self.bucket}
        if self._region != "us-east-1":
            arguments["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        try:
            self._client.create_bucket(**arguments)
        except ClientError as exc:
            if _code(exc) != "BucketAlreadyOwnedByYou":  # created by a concurrent process
                raise self._translate(exc, "create", None) from exc
        except (BotoCoreError, Boto3Error) as exc:
            raise self._translate(exc, "create", None) from exc

    @contextmanager
    def _errors(self, action: str, key: str | None, *, reading: bool = False) -> Iterator[None]:
        """Translate boto's errors; when ``reading``, "not found" means ``ArtifactMissing``."""
        try:
            yield
        except (ClientError, BotoCoreError, Boto3Error) as exc:
            if isinstance(exc, ClientError) and _code(exc) == "NoSuchBucket":
                self._bucket_checked = False  # removed behind our back: make it again next time
            raise self._translate(exc, action, key, reading=reading) from exc

    def _translate(
        self, exc: Exception, action: str, key: str | None, *, reading: bool = False
    ) -> ArtifactStoreError:
        where = self._where(key)
        if isinstance(exc, ClientError):
            code = _code(exc)
            if reading and key is not None and (code in _MISSING_CODES or _status(exc) == 404):
                return ArtifactMissing(f"no artifact stored under {key}")
            if _status(exc) == 403 or code in {"AccessDenied", "SignatureDoesNotMatch"}:
                return ArtifactStoreError(
                    f"S3 refused to {action} {where} ({code or 403}): check the storage "
                    "credentials and their permissions"
                )
            return ArtifactStoreError(f"S3 could not {action} {where}: {code or exc}")
        return ArtifactStoreError(f"S3 could not {action} {where}: {type(exc).__name__}: {exc}")

    def _stream(self, body: StreamingBody, key: str, chunk_size: int) -> Iterator[bytes]:
        try:
            with self._errors("read", key, reading=True):
                yield from body.iter_chunks(chunk_size)
        finally:
            body.close()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as source:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise ArtifactStoreError(f"cannot read {path}: {exc.strerror}") from exc
    return digest.hexdigest(), size
