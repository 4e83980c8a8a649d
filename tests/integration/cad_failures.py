"""CAD jobs that fail for real, for the tests of what follows a failure (the 502, the
operators' alert and its email): a worker pool that cannot even import CadQuery within its
memory limit, and an operator with an email address to be alerted at."""

from __future__ import annotations

from fastapi.testclient import TestClient
from httpx import Response

from kittylab import bootstrap
from kittylab.adapters.cad.worker import CadWorkerPool, WorkerLimits
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import User
from tests.integration.conftest import Person


def give_email(database: Database, person: Person, email: str) -> None:
    with database.unit_of_work() as session:
        user = session.get(User, person.user_id)
        assert user is not None
        user.email = email


def generate_with_a_starved_worker(
    container: bootstrap.Container, client: TestClient, who: Person, prompt: str
) -> Response:
    """Ask for an offline generation of ``prompt`` while the only CAD worker cannot import
    CadQuery within its memory limit, so the job fails; returns the API's answer."""
    starved = CadWorkerPool(size=1, limits=WorkerLimits(memory_bytes=64 * 1024 * 1024))
    container.cad = bootstrap.cad_service(
        container.settings, container.database, container.artifacts, starved, None
    )
    try:
        answer: Response = client.post(
            "/api/cad/generate",
            json={"prompt": prompt, "policyMode": "offline"},
            headers=who.headers,
        )
        return answer
    finally:
        starved.close()
