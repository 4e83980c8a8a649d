"""Limits on what people send: request bodies past their route's limit (declared or
streamed), upload quotas per person and for the lab. Bodies are sent to a real uvicorn
server over a raw socket, so a chunked body is really chunked and the test sees when the
server answers."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.storage.folder import FolderArtifactStore
from kittylab.api.app import create_app
from kittylab.config import Settings
from kittylab.fabrication import uploads
from tests.integration.api_server import served
from tests.integration.conftest import Person, _person
from tests.integration.print_lab import PrintLab

KiB = 1024
MiB = 1024 * KiB
UPLOAD_LIMIT = 2 * MiB
PERSON_QUOTA = 64 * KiB
LAB_QUOTA = 160 * KiB


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        fabrication={
            "max_upload_bytes": UPLOAD_LIMIT,
            "upload_quota_person_bytes": PERSON_QUOTA,
            "upload_quota_lab_bytes": LAB_QUOTA,
        },
        _env_file=None,
    )  # type: ignore[call-arg]


@pytest.fixture
def server_port(container: bootstrap.Container) -> Iterator[int]:
    """The app served by uvicorn on a free port, on a thread."""
    with served(create_app(container)) as port:
        yield port


@pytest.fixture
def engineer(database: Database) -> Person:
    return _person(database, "erin", ["engineer"])


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int
    """Body bytes the client had sent when the answer came."""

    def json(self) -> dict[str, object]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


def send_chunked(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    *,
    size: int,
    finish: bool = False,
    chunk: int = 64 * KiB,
    timeout: float = 15.0,
) -> RawAnswer:
    """Send ``size`` bytes as a chunked body (no Content-Length), watching for an answer
    after every chunk; without ``finish`` the body is never ended, so an answer can only
    come from the server giving up on it."""
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        piece = b"x" * chunk
        try:
            while sent < size and not _readable(sock, 0):
                data = piece[: min(chunk, size - sent)]
                sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                sent += len(data)
            if finish:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed; the answer is in our buffer
        assert _readable(sock, timeout), f"no answer within {timeout} s of sending {sent} bytes"
        return _read_answer(sock, sent)
    finally:
        sock.close()


def _readable(sock: socket.socket, timeout: float) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


def _read_answer(sock: socket.socket, sent: int) -> RawAnswer:
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"the connection closed before a whole answer: {data!r}"
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    length = int(fields.get("content-length", "0"))
    while len(body) < length:
        more = sock.recv(65536)
        assert more, "the connection closed mid-answer"
        body += more
    return RawAnswer(int(status_line.split()[1]), fields, body[:length], sent)


def _assert_body_too_large(answer: RawAnswer, limit: int) -> None:
    assert answer.status == 413, answer.body
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["field"] == "body"
    assert str(limit) in str(problem["detail"])
    assert answer.headers["x-request-id"]


# -- bodies past their route's limit ------------------------------------------------------


def test_a_chunked_json_body_past_the_limit_is_413_before_it_ends(
    server_port: int, admin: Person, settings: Settings
) -> None:
    limit = settings.http.max_body_bytes
    answer = send_chunked(
        server_port,
        "POST",
        "/api/users",
        {**admin.headers, "Content-Type": "application/json"},
        size=limit + 256 * KiB,
    )

    _assert_body_too_large(answer, limit)


def test_a_chunked_upload_past_the_upload_limit_is_413_before_it_ends(
    server_port: int, operator: Person, container: bootstrap.Container
) -> None:
    container.settings.fabrication.upload_quota_person_bytes = 64 * MiB  # not the limit here
    container.settings.fabrication.upload_quota_lab_bytes = 64 * MiB
    answer = send_chunked(
        server_port,
        "PUT",
        "/api/fabrication/files/huge.gcode",
        operator.headers,
        size=UPLOAD_LIMIT + 256 * KiB,
    )

    _assert_body_too_large(answer, UPLOAD_LIMIT)
    assert list(container.artifacts.list_artifacts("uploads/")) == []


def test_a_chunked_json_body_of_exactly_the_limit_is_read_to_the_end(
    server_port: int, admin: Person, settings: Settings
) -> None:
    answer = send_chunked(
        server_port,
        "POST",
        "/api/users",
        {**admin.headers, "Content-Type": "application/json"},
        size=settings.http.max_body_bytes,
        finish=True,
    )

    # Read whole and parsed: not JSON, so 422 on the body, not 413.
    assert answer.status == 422, answer.body
    assert answer.json()["field"] == "body"


def test_chunked_bodies_within_their_limits_are_taken(
    server_port: int, operator: Person, container: bootstrap.Container
) -> None:
    answer = send_chunked(
        server_port,
        "PUT",
        "/api/fabrication/files/part.gcode",
        operator.headers,
        size=48 * KiB,
        chunk=16 * KiB,
        finish=True,
    )

    assert answer.status == 201, answer.body
    stored = answer.json()
    assert stored["size"] == 48 * KiB
    assert container.artifacts.exists(str(stored["fileKey"]))


# -- quotas -------------------------------------------------------------------------------


def put(client: TestClient, who: Person, name: str, size: int) -> Response:
    return client.put(f"/api/fabrication/files/{name}", content=b"G" * size, headers=who.headers)


def _assert_over_quota(answer: Response, setting: str, limit: int, used: int) -> None:
    assert answer.status_code == 413, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"].endswith("/upload-quota-exceeded")
    assert problem["field"] == "body"
    detail = problem["detail"]
    assert setting in detail
    assert f"quota of {limit} bytes" in detail
    assert f"{used} bytes are in use" in detail


def test_a_person_past_their_quota_is_refused_while_another_can_still_upload(
    client: TestClient, operator: Person, engineer: Person, container: bootstrap.Container
) -> None:
    first = put(client, operator, "one.gcode", 40 * KiB)
    assert first.status_code == 201, first.text
    assert first.json()["fileKey"].startswith(f"uploads/{operator.user_id}/")

    second = put(client, operator, "two.gcode", 40 * KiB)

    _assert_over_quota(second, "fabrication.upload_quota_person_bytes", PERSON_QUOTA, used=40 * KiB)
    keys = {info.key for info in container.artifacts.list_artifacts("uploads/")}
    assert keys == {first.json()["fileKey"]}
    other = put(client, engineer, "two.gcode", 40 * KiB)
    assert other.status_code == 201, other.text
    assert other.json()["fileKey"].startswith(f"uploads/{engineer.user_id}/")
    # What is left of the quota still takes a file that fits.
    assert put(client, operator, "fits.gcode", 24 * KiB).status_code == 201


def test_the_lab_quota_holds_across_people(
    client: TestClient,
    operator: Person,
    engineer: Person,
    admin: Person,
    container: bootstrap.Container,
) -> None:
    assert put(client, operator, "a.gcode", 60 * KiB).status_code == 201
    assert put(client, engineer, "b.gcode", 60 * KiB).status_code == 201

    third = put(client, admin, "c.gcode", 60 * KiB)  # 40 KiB of the lab's 160 KiB are left

    _assert_over_quota(third, "fabrication.upload_quota_lab_bytes", LAB_QUOTA, used=120 * KiB)
    assert put(client, admin, "c.gcode", 40 * KiB).status_code == 201
    assert sum(i.size for i in container.artifacts.list_artifacts("uploads/")) == LAB_QUOTA


def test_uploads_from_before_quotas_count_towards_the_lab_and_stay_printable(
    client: TestClient, operator: Person, container: bootstrap.Container, lab: PrintLab
) -> None:
    old_key = "uploads/20250101-0123456789ab/legacy.gcode"
    container.artifacts.put_bytes(old_key, b"G28\n" * (35 * KiB), content_type="x/y")

    refused = put(client, operator, "new.gcode", 30 * KiB)  # 140 KiB + 30 KiB > 160 KiB

    _assert_over_quota(refused, "fabrication.upload_quota_lab_bytes", LAB_QUOTA, used=140 * KiB)
    job = client.post(
        "/api/fabrication/jobs",
        json={"deviceId": str(lab["prusa-mk4"]), "fileKey": old_key},
        headers=operator.headers,
    )
    assert job.status_code == 202, job.text


def test_a_declared_upload_past_the_quota_is_refused_before_it_is_read(
    server_port: int, operator: Person, container: bootstrap.Container
) -> None:
    sock = socket.create_connection(("127.0.0.1", server_port), timeout=10)
    with sock:
        head = (
            "PUT /api/fabrication/files/big.gcode HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {operator.headers['Authorization']}\r\n"
            f"Content-Length: {PERSON_QUOTA + 1}\r\n\r\n"
        )
        sock.sendall(head.encode())  # and not one byte of the body
        assert _readable(sock, 10), "no answer to the declared length"
        answer = _read_answer(sock, 0)
    assert answer.status == 413
    assert "fabrication.upload_quota_person_bytes" in str(answer.json()["detail"])
    assert list(container.artifacts.list_artifacts("uploads/")) == []


def test_a_chunked_upload_past_the_quota_is_413_before_it_ends(
    server_port: int, operator: Person, container: bootstrap.Container
) -> None:
    answer = send_chunked(
        server_port,
        "PUT",
        "/api/fabrication/files/stream.gcode",
        operator.headers,
        size=PERSON_QUOTA + 64 * KiB,
        chunk=16 * KiB,
    )

    assert answer.status == 413, answer.body
    problem = answer.json()
    assert str(problem["type"]).endswith("/upload-quota-exceeded")
    assert "fabrication.upload_quota_person_bytes" in str(problem["detail"])
    assert list(container.artifacts.list_artifacts("uploads/")) == []


def test_an_upload_that_a_racing_one_pushed_past_the_quota_is_not_kept(
    container: bootstrap.Container, operator: Person
) -> None:
    quotas = uploads.Quotas(person_bytes=100, lab_bytes=1000)
    store = container.artifacts
    mine = uploads.new_key(operator.user_id, "a.gcode", container.clock())
    racing = uploads.new_key(operator.user_id, "b.gcode", container.clock())
    store.put_bytes(racing, b"x" * 60, content_type="x/y")  # landed while ours streamed
    store.put_bytes(mine, b"y" * 60, content_type="x/y")

    with pytest.raises(uploads.UploadQuotaExceeded) as caught:
        uploads.settle(store, mine, operator.user_id, 60, quotas)

    assert (caught.value.quota, caught.value.used) == ("person", 60)
    assert not store.exists(mine)
    assert store.exists(racing)
    uploads.settle(store, racing, operator.user_id, 60, quotas)  # alone, it fits


def test_an_upload_the_store_has_no_room_for_is_507_without_its_whereabouts(
    client: TestClient, operator: Person, container: bootstrap.Container, tmp_path: Path
) -> None:
    folder = tmp_path / "full-disk"
    container.artifacts = FolderArtifactStore(folder, min_free_bytes=1 << 62)

    answer = put(client, operator, "part.gcode", 4 * KiB)

    assert answer.status_code == 507, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"].endswith("/insufficient-storage")
    assert str(folder) not in answer.text
    assert list(container.artifacts.list_artifacts("")) == []
