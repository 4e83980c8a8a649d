"""The console's projects pages on PostgreSQL (issue 18, item 4): ``/projects`` lists each
project with its summary line and counts; ``/projects/{id}`` shows its conversations (links
into the talk page), CAD jobs and artifacts (links into the studio), its prints and how they
ended, and the API's own summary. A conversation's words stay its participants'; an unknown
project is a 404."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.api.web_auth import SESSION_COOKIE, limits
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.people import web_sessions
from tests.integration.conftest import Person, _person
from tests.integration.test_projects_api import _made_in

LOCAL = {"Host": "localhost"}


@pytest.fixture
def demo(container: bootstrap.Container, database: Database, demo_lab_path: Path) -> None:
    manifest = replace(load_manifest(demo_lab_path), users=())
    with database.unit_of_work() as s:
        apply_manifest(s, manifest, container.clock())


def _signed_in(client: TestClient, container: bootstrap.Container, person: Person) -> None:
    with container.database.unit_of_work() as s:
        issued = web_sessions.start(
            s, person.user_id, passkey_id=None, limits=limits(container.settings.console),
            now=container.clock(),
        )  # fmt: skip
    client.cookies.set(SESSION_COOKIE, issued.token)


def _project(
    client: TestClient, container: bootstrap.Container, operator: Person
) -> tuple[str, str, UUID, UUID]:
    """Olivia's project: a conversation she had, the CAD job talked through in it, its STL
    and two prints of it (one completed, one failed)."""
    talk = client.post(
        "/api/query",
        json={"channel": "cli", "input": {"text": "what can you do about cable clips"}},
        headers=operator.headers,
    ).json()["conversationId"]
    job, artifact, _ = _made_in(container.database, talk, operator)
    created = client.post(
        "/api/projects",
        json={
            "name": "Cable clips",
            "description": "Clips for the bench",
            "conversationIds": [talk],
        },
        headers=operator.headers,
    )
    assert created.status_code == 201, created.text
    return created.json()["id"], talk, job, artifact


def test_the_pages_list_a_project_and_link_what_it_made(
    container: bootstrap.Container, client: TestClient, demo: None, operator: Person
) -> None:
    project, talk, job, artifact = _project(client, container, operator)
    _signed_in(client, container, operator)

    listed = client.get("/projects", headers=LOCAL)
    assert listed.status_code == 200, listed.text
    html = listed.text
    assert f'href="/projects/{project}"' in html and "Cable clips" in html
    assert "2 print job(s) (1 completed, 1 failed)" in html  # the API's summary line
    assert "<strong>1</strong> conversation<" in html and "<strong>2</strong> print jobs" in html
    assert 'href="/projects" aria-current="page"' in html  # its nav entry
    fragment = client.get("/console/projects/list", headers=LOCAL)
    assert fragment.status_code == 200 and f'href="/projects/{project}"' in fragment.text

    page = client.get(f"/projects/{project}", headers=LOCAL)
    assert page.status_code == 200, page.text
    html = page.text
    assert "Clips for the bench" in html
    assert f'href="/talk/{talk}"' in html and "what can you do about cable clips" in html
    assert f'href="/studio/jobs/{job}"' in html and "a 40 mm cable clip" in html
    assert f'href="/api/cad/artifacts/{artifact}/download"' in html
    assert 'class="badge status-completed">completed' in html
    assert 'class="badge status-failed">failed' in html
    api = client.get(f"/api/projects/{project}", headers=operator.headers).json()
    assert api["summary"]["text"] in html


def test_another_persons_conversation_words_stay_theirs_and_unknown_is_404(
    container: bootstrap.Container,
    client: TestClient,
    database: Database,
    demo: None,
    operator: Person,
    admin: Person,
) -> None:
    project, talk, job, _ = _project(client, container, operator)
    other = _person(database, "eve", ["engineer"])
    _signed_in(client, container, other)
    html = client.get(f"/projects/{project}", headers=LOCAL).text
    assert "Cable clips" in html  # projects are everyone's, as the API reads them
    assert f'href="/studio/jobs/{job}"' in html
    assert "what can you do about cable clips" not in html  # her words are hers
    assert f'href="/talk/{talk}"' not in html
    assert "A conversation of other people" in html
    # The API would not show eve the conversation either.
    denied = client.get(f"/api/conversations/{talk}/messages", headers=other.headers)
    assert denied.status_code == 403

    _signed_in(client, container, admin)  # the admin role reads every conversation
    assert f'href="/talk/{talk}"' in client.get(f"/projects/{project}", headers=LOCAL).text

    missing = client.get(f"/projects/{uuid4()}", headers=LOCAL)
    assert missing.status_code == 404
    assert "project" in missing.text
