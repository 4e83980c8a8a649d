from fastapi.testclient import TestClient

from kittylab.adapters.db.engine import Database
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


def test_only_admin_mints_tokens(client: TestClient, admin: Person, operator: Person) -> None:
    own = f"/api/users/{operator.user_id}/tokens"
    assert client.post(own, json={}, headers=operator.headers).status_code == 403
    minted = client.post(own, json={"label": "laptop"}, headers=admin.headers)
    assert minted.status_code == 201
    fresh = minted.json()["token"]
    assert client.get("/api/me", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    too_long = client.post(own, json={"label": "x" * 101}, headers=admin.headers)
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
    from kittylab.adapters.jobs.worker import WorkerState

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
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


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
