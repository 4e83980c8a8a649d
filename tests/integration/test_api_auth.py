import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import ApiToken, User
from kittylab.cli.main import app as cli_app
from kittylab.config import TokenSettings
from kittylab.domain.clock import utcnow
from kittylab.domain.errors import ValidationFailed
from kittylab.people import identity
from tests.integration.conftest import Person


def test_api_routes_need_a_bearer_token(client: TestClient) -> None:
    response = client.get("/api/devices")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401


def test_unknown_or_malformed_tokens_are_refused(client: TestClient, admin: Person) -> None:
    for token in ("kl_not-a-real-token-at-all-xxxxxxxxxx", "garbage"):
        response = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401


def test_health_and_metrics_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "migrations": "ok"}
    client.get("/api/devices")
    metrics = client.get("/metrics").text
    assert 'kittylab_http_requests_total{method="GET",route="/api/devices",status="401"}' in metrics
    assert "kittylab_job_queue_depth" in metrics


def test_me_returns_the_token_owner(client: TestClient, operator: Person) -> None:
    body = client.get("/api/me", headers=operator.headers).json()
    assert body["username"] == "olivia"
    assert body["roles"] == ["operator"]


def test_only_admin_creates_users(client: TestClient, admin: Person, operator: Person) -> None:
    new = {"username": "erin", "displayName": "Erin", "roles": ["engineer"]}
    assert client.post("/api/users", json=new, headers=operator.headers).status_code == 403
    created = client.post("/api/users", json=new, headers=admin.headers)
    assert created.status_code == 201
    assert created.json()["roles"] == ["engineer"]
    again = client.post("/api/users", json=new, headers=admin.headers)
    assert again.status_code == 409
    assert again.json()["field"] == "username"


def test_user_validation_names_the_field(client: TestClient, admin: Person) -> None:
    cases = [
        ({"username": "x", "displayName": "X", "roles": []}, "roles"),
        ({"username": "x", "displayName": "X", "roles": ["janitor"]}, "roles.0"),
        ({"username": "x", "displayName": "  ", "roles": ["operator"]}, "display_name"),
        ({"username": "x", "displayName": "X", "roles": ["operator"], "email": "nope"}, "email"),
        ({"username": "x", "displayName": "X", "roles": ["operator"], "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        response = client.post("/api/users", json=body, headers=admin.headers)
        assert response.status_code == 422, body
        assert response.json()["field"] == field, response.json()


def test_only_the_owner_mints_tokens(client: TestClient, admin: Person, operator: Person) -> None:
    # Issue 13: not even an admin mints a token for someone else.
    own = f"/api/users/{operator.user_id}/tokens"
    assert client.post(own, json={}, headers=admin.headers).status_code == 403
    minted = client.post(own, json={"label": "laptop"}, headers=operator.headers)
    assert minted.status_code == 201
    fresh = minted.json()["token"]
    assert client.get("/api/me", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    too_long = client.post(own, json={"label": "x" * 101}, headers=operator.headers)
    assert too_long.status_code == 422
    assert too_long.json()["field"] == "label"


def test_people_from_the_manifest_are_changed_in_the_manifest(
    client: TestClient, admin: Person, operator: Person, database: Database
) -> None:
    from kittylab.adapters.db.tables import User

    with database.unit_of_work() as session:
        row = session.get(User, operator.user_id)
        assert row is not None
        row.managed_by_manifest = True
    response = client.patch(
        f"/api/users/{operator.user_id}", json={"active": False}, headers=admin.headers
    )
    assert response.status_code == 409
    assert "manifest" in response.json()["detail"]


def test_deactivated_user_loses_access(client: TestClient, admin: Person, operator: Person) -> None:
    response = client.patch(
        f"/api/users/{operator.user_id}", json={"active": False}, headers=admin.headers
    )
    assert response.status_code == 200
    assert client.get("/api/me", headers=operator.headers).status_code == 401


def test_malformed_json_and_bad_ids_are_422_not_500(client: TestClient, admin: Person) -> None:
    bad_json = client.post(
        "/api/users",
        content=b"{not json",
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert bad_json.status_code == 422
    bad_id = client.get("/api/devices/not-a-uuid", headers=admin.headers)
    assert bad_id.status_code == 422
    assert bad_id.json()["field"] == "device_id"
    bad_enum = client.get("/api/devices?kind=toaster", headers=admin.headers)
    assert bad_enum.status_code == 422
    assert bad_enum.json()["field"] == "kind"
    bad_cursor = client.get("/api/devices?cursor=%%%", headers=admin.headers)
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["field"] == "cursor"


def test_oversize_body_is_413(client: TestClient, admin: Person) -> None:
    response = client.post(
        "/api/users",
        content=b"x" * (2 * 1024 * 1024),
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert response.status_code == 413


def test_user_list_filters_by_role(client: TestClient, admin: Person, operator: Person) -> None:
    body = client.get("/api/users?role=operator", headers=admin.headers).json()
    assert [u["username"] for u in body["items"]] == ["olivia"]


def test_chunked_oversize_body_is_413_too(client: TestClient, admin: Person) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(80):
            yield b"x" * 65536  # 5 MiB in all, without a Content-Length

    response = client.post(
        "/api/telemetry",
        content=chunks(),
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def test_readyz_fails_while_the_job_worker_is_down(client: TestClient, container) -> None:  # type: ignore[no-untyped-def]
    from kittylab.worker.run import WorkerState

    container.worker_state = WorkerState(running=False)
    down = client.get("/readyz")
    assert down.status_code == 503
    assert down.json()["checks"]["workers"] == "restarting"
    container.worker_state.running = True
    assert client.get("/readyz").status_code == 200


def test_declared_oversize_body_is_a_problem_document(client: TestClient, admin: Person) -> None:
    response = client.post(
        "/api/lab/apply",
        content=b"{" + b" " * (1100 * 1024) + b"}",  # over 1 MiB
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == "body"
    assert response.headers["x-request-id"]


def test_a_body_that_is_not_json_names_the_body(client: TestClient, admin: Person) -> None:
    response = client.post(
        "/api/conversations",
        content=b'{"contextKey": "a\x00',
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["field"] == "body"


def test_made_up_methods_do_not_mint_metric_series(client: TestClient) -> None:
    for method in ("FOOBAR", "BAZQUX"):
        client.request(method, "/healthz")
    metrics = client.get("/metrics").text
    assert "FOOBAR" not in metrics and "BAZQUX" not in metrics
    assert 'method="other"' in metrics


def test_interactive_docs_are_served_without_a_cdn(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn." not in page.text
    # Swagger UI 5 (OpenAPI 3.1), vendored from npm (issue 17).
    bundle = client.get("/console/static/vendor/swagger-ui/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert "swagger-ui-bundle.js" in page.text


def test_an_unexpected_failure_is_a_500_problem_with_the_request_id(container) -> None:  # type: ignore[no-untyped-def]
    from kittylab.api.app import create_app

    app = create_app(container)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail kl_" + "Z" * 30)

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-ID": "req-boom-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "req-boom-1"
    body = response.json()
    assert body["requestId"] == "req-boom-1"
    assert "secret" not in response.text and "Traceback" not in response.text


# --- token expiry (issue 11) ---------------------------------------------------------------


def _mint(client: TestClient, owner: Person, user_id: object, **body: object) -> dict[str, Any]:
    """``owner`` mints a token for themselves (``user_id`` is theirs: only owners mint)."""
    response = client.post(f"/api/users/{user_id}/tokens", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    minted: dict[str, Any] = response.json()
    return minted


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_expired_token_is_refused_with_a_401_saying_it_expired(
    client: TestClient, container: bootstrap.Container, admin: Person, operator: Person
) -> None:
    start = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    container.clock = lambda: start
    minted = _mint(client, operator, operator.user_id, label="laptop", expiresInSeconds=3600)
    assert datetime.fromisoformat(minted["expiresAt"]) == start + timedelta(hours=1)
    assert client.get("/api/me", headers=_bearer(minted["token"])).status_code == 200

    container.clock = lambda: start + timedelta(hours=1)
    refused = client.get("/api/me", headers=_bearer(minted["token"]))

    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["www-authenticate"].startswith("Bearer")
    problem = refused.json()
    assert problem["type"].endswith("/token-expired")
    assert "expired" in problem["detail"]
    assert "2025-03-01T10:00:00" in problem["detail"]
    # The query route authenticates through the same dependency.
    query = client.post(
        "/api/query",
        json={"channel": "cli", "input": {"text": "hi"}},
        headers=_bearer(minted["token"]),
    )
    assert query.status_code == 401
    assert "expired" in query.json()["detail"]
    # The admin's token, without an expiry, goes on working.
    assert client.get("/api/me", headers=admin.headers).status_code == 200


def test_a_token_with_a_future_expiry_works_and_lists_its_expiry(
    client: TestClient, container: bootstrap.Container, admin: Person, operator: Person
) -> None:
    start = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    container.clock = lambda: start
    minted = _mint(client, operator, operator.user_id, expiresInSeconds=7 * 86_400)

    container.clock = lambda: start + timedelta(days=7) - timedelta(seconds=1)
    assert client.get("/api/me", headers=_bearer(minted["token"])).status_code == 200

    listed = client.get(f"/api/users/{operator.user_id}/tokens", headers=admin.headers).json()
    expiries = {t["id"]: t["expiresAt"] for t in listed["items"]}
    assert datetime.fromisoformat(expiries[minted["tokenId"]]) == start + timedelta(days=7)
    assert list(expiries.values()).count(None) == 1  # the fixture's token never expires


def test_a_token_minted_without_a_lifetime_takes_the_lab_default_and_null_means_never(
    client: TestClient, container: bootstrap.Container, admin: Person, operator: Person
) -> None:
    start = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    container.clock = lambda: start
    container.settings = container.settings.model_copy(
        update={"tokens": TokenSettings(default_lifetime_seconds=86_400)}
    )

    defaulted = _mint(client, operator, operator.user_id)
    forever = _mint(client, operator, operator.user_id, expiresInSeconds=None)

    assert datetime.fromisoformat(defaulted["expiresAt"]) == start + timedelta(days=1)
    assert forever["expiresAt"] is None
    container.clock = lambda: start + timedelta(days=400)
    assert client.get("/api/me", headers=_bearer(defaulted["token"])).status_code == 401
    assert client.get("/api/me", headers=_bearer(forever["token"])).status_code == 200


def test_the_lab_default_token_lifetime_is_ninety_days_and_can_be_turned_off() -> None:
    assert TokenSettings().default_lifetime_seconds == 90 * 86_400
    # What an environment variable can say for "no default lifetime".
    for word in ("never", "null", ""):
        assert (
            TokenSettings.model_validate(
                {"default_lifetime_seconds": word}
            ).default_lifetime_seconds
            is None
        )


@pytest.mark.parametrize("value", [0, 59, -3600, 3650 * 86_400 + 1, "30d", 3600.5, True])
def test_a_bad_token_lifetime_is_a_422_naming_the_field(
    client: TestClient, admin: Person, operator: Person, database: Database, value: object
) -> None:
    response = client.post(
        f"/api/users/{operator.user_id}/tokens",
        json={"expiresInSeconds": value},
        headers=operator.headers,
    )

    assert response.status_code == 422, response.text
    assert response.json()["field"] == "expiresInSeconds"
    with database.unit_of_work() as session:
        assert len(session.scalars(select(ApiToken).where(ApiToken.label == "api")).all()) == 0


def test_the_service_refuses_a_lifetime_under_a_minute(
    database: Database, operator: Person
) -> None:
    with database.unit_of_work() as session:
        user = session.get(User, operator.user_id)
        assert user is not None
        with pytest.raises(ValidationFailed) as caught:
            identity.issue_token(session, user, lifetime=timedelta(seconds=-1))
    assert caught.value.field == "expiresInSeconds"


# --- the on-host token: `kittylab users token` ----------------------------------------------


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("KITTYLAB_DATABASE_URL", database_url)
    monkeypatch.setenv("KITTYLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KITTYLAB_LOG_JSON", "false")
    # The CLI configures logging onto the runner's stream, closed afterwards.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield CliRunner()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_cli_token_never_expires_unless_asked_and_lists_show_expiry(
    cli: CliRunner, database: Database, operator: Person
) -> None:
    plain = cli.invoke(cli_app, ["users", "token", "olivia", "--label", "bootstrap"])
    timed = cli.invoke(cli_app, ["users", "token", "olivia", "--label", "ci", "--expires", "30d"])
    assert plain.exit_code == 0, plain.output
    assert timed.exit_code == 0, timed.output

    with database.unit_of_work() as session:
        rows = {
            t.label: t
            for t in session.scalars(select(ApiToken).where(ApiToken.user_id == operator.user_id))
        }
        assert rows["bootstrap"].expires_at is None
        lifetime = rows["ci"].expires_at - rows["ci"].created_at  # type: ignore[operator]
        assert abs(lifetime - timedelta(days=30)) < timedelta(minutes=1)
        assert identity.authenticate(session, timed.stdout.strip(), utcnow()).username == "olivia"

    listed = cli.invoke(cli_app, ["users", "tokens", "olivia"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    lines = {line.split()[1]: line for line in listed.stdout.splitlines()[1:]}
    assert lines["bootstrap"].rstrip().endswith("never")
    assert rows["ci"].expires_at.strftime("%Y-%m-%d %H:%M") in lines["ci"]  # type: ignore[union-attr]


@pytest.mark.parametrize("value", ["soon", "30", "0s", "59s", "11000d", "9999999999w"])
def test_the_cli_refuses_a_bad_lifetime_naming_the_option(
    cli: CliRunner, operator: Person, value: str
) -> None:
    result = cli.invoke(cli_app, ["users", "token", "olivia", "--expires", value])

    assert result.exit_code == 1
    assert "--expires" in result.output


def test_authentication_commits_before_the_handler_so_a_failing_request_still_records_the_use(
    client: TestClient, database: Database, operator: Person
) -> None:
    # The token lookup is its own short transaction: the handler's rollback (a 404 here)
    # does not undo it, and the token row is not held locked while the handler works.
    missing = client.get(f"/api/zones/{uuid.uuid4()}", headers=operator.headers)

    assert missing.status_code == 404
    with database.unit_of_work() as session:
        used = session.scalar(
            select(ApiToken.last_used_at).where(ApiToken.user_id == operator.user_id)
        )
    assert used is not None
