"""Requests from outside the lab's trusted networks read, and nothing more (issue 13).

A token copied off a tablet and used from the internet — an operator's, a safety lead's,
an admin's — cannot actuate on any path (the command route, the conversation), cannot
approve, and cannot change the lab; it still reads. A client-declared ``channel`` never
grants anything. Behind a reverse proxy, ``X-Forwarded-For`` counts only from a
configured proxy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from ipaddress import ip_network
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import AuditEntry, DeviceCommand, SafetyEvent
from kittylab.api.app import create_app
from kittylab.domain.enums import Role, SafetyStatus
from kittylab.domain.errors import PermissionDenied
from kittylab.domain.principal import Principal
from kittylab.safety import workflow
from tests.integration import test_safety_workflow
from tests.integration.test_safety_workflow import Lab

# The safety workflow's lab: the demo lab online, its people with tokens and approval keys.
lab = test_safety_workflow.lab
INTERNET = ("203.0.113.7", 40000)
OUTSIDE = "https://kittylab.dev/problems/outside-trusted-networks"


@pytest.fixture
def internet(container: bootstrap.Container) -> Iterator[TestClient]:
    """The same server, reached from a public address."""
    with TestClient(create_app(container), raise_server_exceptions=False, client=INTERNET) as c:
        yield c


def _commands(database: Database) -> int:
    with database.unit_of_work() as s:
        return int(s.scalar(select(func.count()).select_from(DeviceCommand)) or 0)


def _refused_from_outside(response: Any) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == OUTSIDE, body
    assert "trusted networks" in body["detail"]


@pytest.mark.parametrize("who", ["olivia", "sam", "ada"])
def test_a_remote_network_token_cannot_actuate_through_the_command_route(
    lab: Lab, internet: TestClient, who: str
) -> None:
    for device, intent in [("welding-lights", "light_on"), ("prusa-mk4", "print_pause")]:
        response = internet.post(
            f"/api/device/{lab.devices[device]}/command",
            json={"intent": intent},
            headers=lab.people[who].headers,
        )
        _refused_from_outside(response)
    assert _commands(lab.database) == 0
    # The same token from the lab's network works.
    assert lab.request(who, "welding-lights", "light_on")["_status"] == 202


@pytest.mark.parametrize("channel", ["mac", "ipad", "wall_terminal", "remote", "cli"])
def test_a_remote_network_token_cannot_actuate_through_the_conversation_whatever_the_channel(
    lab: Lab, internet: TestClient, channel: str
) -> None:
    response = internet.post(
        "/api/query",
        json={"channel": channel, "input": {"text": "turn on the welding bay lights"}},
        headers=lab.people["ada"].headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["routing"]["intent"] == "light_on"
    assert body["routing"]["outcome"] == "refused"
    assert body["command"] is None
    assert "trusted networks" in body["replies"][0]["text"]
    assert _commands(lab.database) == 0


def test_a_remote_network_token_still_reads(lab: Lab, internet: TestClient) -> None:
    headers = lab.people["olivia"].headers
    assert internet.get("/api/devices", headers=headers).status_code == 200
    asked = internet.post(
        "/api/query",
        json={"channel": "remote", "input": {"text": "status of the voron"}},
        headers=headers,
    ).json()
    assert asked["routing"]["intent"] == "printer_status"
    assert asked["routing"]["outcome"] == "command_recorded", asked


def test_a_declared_channel_grants_an_engineer_nothing(lab: Lab) -> None:
    for channel in ["wall_terminal", "cli", "mac"]:
        body = lab.client.post(
            "/api/query",
            json={"channel": channel, "input": {"text": "turn on the welding bay lights"}},
            headers=lab.people["erin"].headers,
        ).json()
        assert body["routing"]["outcome"] == "refused", body
    assert _commands(lab.database) == 0


def test_a_remote_network_token_cannot_approve_nor_deny(lab: Lab, internet: TestClient) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    assert asked["_status"] == 202, asked
    event_id = asked["hazardEventId"]
    body = lab.signed("sam", event_id)
    response = internet.post(
        f"/api/safety/events/{event_id}/approve",
        json=body,
        headers=lab.people["sam"].headers,
    )
    _refused_from_outside(response)
    denied = internet.post(
        f"/api/safety/events/{event_id}/deny",
        json={"reason": "from the beach"},
        headers=lab.people["sam"].headers,
    )
    _refused_from_outside(denied)
    assert lab.event(event_id)["status"] == "pending"
    assert lab.dispatch_jobs() == []
    # The same signed approval from the lab's network counts.
    status, approved = lab.approve("sam", event_id, body)
    assert status == 200 and approved["status"] == "approved", approved


def test_the_approval_workflow_itself_refuses_a_remote_approver_on_the_record(
    lab: Lab,
) -> None:
    """Below the API too: any future path that builds a remote principal cannot approve."""
    asked = lab.request("olivia", "cnc-spindle")
    event_id = UUID(asked["hazardEventId"])
    body = lab.signed("sam", str(event_id))
    sam = lab.people["sam"]
    remote = Principal(sam.user_id, "sam", frozenset({Role.SAFETY}), remote=True)
    with (
        pytest.raises(PermissionDenied, match="trusted networks"),
        lab.database.unit_of_work() as s,
    ):
        workflow.approve(
            s,
            event_id,
            remote,
            workflow.ApprovalRequest(
                nonce=body["nonce"],
                signature=body["signature"],
                signed_payload=body["signedPayload"],
            ),
            lab.container.clock(),
            bootstrap.safety_context(lab.container.settings),
            jobs=lab.container.jobs,
        )
    with lab.database.unit_of_work() as s:
        event = s.get(SafetyEvent, event_id)
        assert event is not None and event.status is SafetyStatus.PENDING
        last = s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).one()
        assert last.action == "safety.approval_refused"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/devices/{device}/locks"),
        ("POST", "/api/presence"),
        ("POST", "/api/lab/apply"),
        ("POST", "/api/users"),
        ("POST", "/api/lab/stop"),
    ],
)
def test_a_remote_admin_changes_nothing_in_the_lab(
    lab: Lab, internet: TestClient, method: str, path: str
) -> None:
    url = path.format(device=lab.devices["cnc-spindle"])
    response = internet.request(method, url, json={}, headers=lab.people["ada"].headers)
    _refused_from_outside(response)


def _behind(container: bootstrap.Container, peer: str, **http: Any) -> TestClient:
    settings = container.settings.model_copy(
        update={"http": container.settings.http.model_copy(update=http)}
    )
    return TestClient(
        create_app(replace(container, settings=settings)),
        raise_server_exceptions=False,
        client=(peer, 40000),
    )


def _light_on(client: TestClient, lab: Lab, forwarded: str | None) -> Any:
    headers = dict(lab.people["olivia"].headers)
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    return client.post(
        f"/api/device/{lab.devices['welding-lights']}/command",
        json={"intent": "light_on"},
        headers=headers,
    )


def test_forwarded_for_is_believed_only_from_a_configured_proxy(lab: Lab) -> None:
    # A reverse proxy on the same host that nobody configured: every request it forwards
    # would look like loopback; its header is not believed and the origin is unknown.
    with _behind(lab.container, "127.0.0.1") as unconfigured:
        _refused_from_outside(_light_on(unconfigured, lab, "10.0.0.5"))
    proxy = [ip_network("127.0.0.1/32")]
    with _behind(lab.container, "127.0.0.1", trusted_proxies=proxy) as proxied:
        _refused_from_outside(_light_on(proxied, lab, "203.0.113.7"))
        # The client wrote the lab address itself; the proxy appended the real one.
        _refused_from_outside(_light_on(proxied, lab, "10.0.0.5, 203.0.113.7"))
        _refused_from_outside(_light_on(proxied, lab, None))  # the proxy named nobody
        assert _light_on(proxied, lab, "10.0.0.5").status_code == 202
    # From a public peer, a forwarded lab address changes nothing.
    with _behind(lab.container, INTERNET[0], trusted_proxies=proxy) as direct:
        _refused_from_outside(_light_on(direct, lab, "10.0.0.5"))


def test_the_trusted_networks_are_the_labs_to_set(lab: Lab) -> None:
    only_lab = [ip_network("10.20.0.0/16")]
    with _behind(lab.container, "192.168.1.9", trusted_networks=only_lab) as wifi:
        _refused_from_outside(_light_on(wifi, lab, None))
    with _behind(lab.container, "10.20.3.4", trusted_networks=only_lab) as bench:
        assert _light_on(bench, lab, None).status_code == 202
