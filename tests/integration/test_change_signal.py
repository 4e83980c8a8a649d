"""Every process hears when the lab or its people change (issue 14), so the token cache
and the lab's followers never act on what was revoked or replaced."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select, text, update

from kittylab.adapters.db import change_signal
from kittylab.adapters.db.engine import Database, libpq_url
from kittylab.adapters.db.tables import ApiToken, Device
from kittylab.domain.clock import utcnow
from kittylab.domain.errors import AuthenticationRequired
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.people import identity
from kittylab.people.principal_cache import PrincipalCache
from kittylab.safety import policy, workflow

TOUCH = timedelta(minutes=1)


def _token(database: Database, username: str = "pia") -> tuple[str, identity.IssuedToken]:
    with database.unit_of_work() as s:
        user = identity.create_user(s, username=username, display_name="Pia", roles=["engineer"])
        issued = identity.issue_token(s, user)
    return issued.token, issued


def test_a_committed_revocation_moves_the_people_generation_and_a_report_does_not(
    database: Database,
) -> None:
    _, issued = _token(database)
    before = change_signal.generation(change_signal.PEOPLE)
    with database.unit_of_work() as s:
        s.execute(update(ApiToken).values(last_used_at=utcnow()))  # a touch, not a change
        s.execute(update(Device).values(online_state="online"))  # a report
    assert change_signal.generation(change_signal.PEOPLE) == before
    with database.unit_of_work() as s:
        user = identity.find_user_by_username(s, "pia")
        identity.revoke_token(s, user.id, issued.token_id, utcnow())
        s.rollback()  # rolled back: nothing changed
    assert change_signal.generation(change_signal.PEOPLE) == before
    with database.unit_of_work() as s:
        user = identity.find_user_by_username(s, "pia")
        identity.revoke_token(s, user.id, issued.token_id, utcnow())
    assert change_signal.generation(change_signal.PEOPLE) == before + 1


def test_the_listener_hears_a_lab_applied_by_another_connection(
    database: Database, database_url: str, demo_lab_path: Path
) -> None:
    heard: list[str] = []

    async def scenario() -> None:
        async def lab() -> None:
            heard.append("lab")

        listener = asyncio.create_task(
            change_signal.listen(libpq_url(database_url), {change_signal.LAB: lab})
        )
        try:
            await _until(lambda: heard == ["lab"])  # once on connecting
            assert change_signal.listening()
            # Another process's transaction: only the notification can tell this one.
            await asyncio.to_thread(_apply_elsewhere, database_url, demo_lab_path)
            await _until(lambda: len(heard) == 2)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        assert not change_signal.listening()

    asyncio.run(scenario())


def _apply_elsewhere(database_url: str, lab: Path) -> None:
    script = (
        "import sys; from kittylab.adapters.db.engine import Database, make_engine;"
        "from kittylab.manifest import apply_manifest, load_manifest;"
        "from kittylab.domain.clock import utcnow;"
        "db = Database(make_engine(sys.argv[1], pool_size=1));"
        "s = db.unit_of_work().__enter__();"
        "from pathlib import Path;"
        "apply_manifest(s, load_manifest(Path(sys.argv[2])), utcnow()); s.commit()"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, database_url, str(lab)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


async def _until(check: object, seconds: float = 10) -> None:
    assert callable(check)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        assert loop.time() < deadline, "not within the time"
        await asyncio.sleep(0.02)


def test_without_a_listener_every_request_reads_the_token_afresh(database: Database) -> None:
    token, _ = _token(database)
    cache = PrincipalCache()
    assert cache.authenticate(database, token, utcnow(), TOUCH).username == "pia"
    _revoke_behind_the_orms_back(database, token)
    with pytest.raises(AuthenticationRequired):
        cache.authenticate(database, token, utcnow(), TOUCH)


def test_while_listening_a_token_is_remembered_and_forgotten_when_revoked_anywhere(
    database: Database, database_url: str
) -> None:
    token, _ = _token(database)
    cache = PrincipalCache(ttl_seconds=60)

    async def scenario() -> None:
        listener = asyncio.create_task(change_signal.listen(libpq_url(database_url), {}))
        try:
            await _until(change_signal.listening)
            assert cache.authenticate(database, token, utcnow(), TOUCH).username == "pia"
            # Changed with no notification at all: the cache still answers (it is one).
            await asyncio.to_thread(_revoke_behind_the_orms_back, database, token)
            assert cache.authenticate(database, token, utcnow(), TOUCH).username == "pia"
            # Revoked for real by another process: heard, forgotten, refused.
            generation = change_signal.generation(change_signal.PEOPLE)
            await asyncio.to_thread(_revoke_elsewhere, database_url, token)
            await _until(lambda: change_signal.generation(change_signal.PEOPLE) > generation)
            with pytest.raises(AuthenticationRequired):
                cache.authenticate(database, token, utcnow(), TOUCH)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    asyncio.run(scenario())


def test_a_cached_token_still_expires_on_time(database: Database, database_url: str) -> None:
    token, _ = _token(database)
    cache = PrincipalCache(ttl_seconds=60)
    with database.unit_of_work() as s:
        s.execute(text("UPDATE api_tokens SET expires_at = now() + interval '1 hour'"))

    async def scenario() -> None:
        listener = asyncio.create_task(change_signal.listen(libpq_url(database_url), {}))
        try:
            await _until(change_signal.listening)
            cache.authenticate(database, token, utcnow(), TOUCH)
            with pytest.raises(AuthenticationRequired):
                cache.authenticate(database, token, utcnow() + timedelta(hours=2), TOUCH)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    asyncio.run(scenario())


def _revoke_behind_the_orms_back(database: Database, token: str) -> None:
    """Plain SQL on a plain connection: no unit of work, so no signal."""
    with database.engine.begin() as conn:
        conn.execute(
            text("UPDATE api_tokens SET revoked_at = now() WHERE token_hash = :h"),
            {"h": identity.hash_token(token)},
        )


def _revoke_elsewhere(database_url: str, token: str) -> None:
    script = (
        "import sys; from sqlalchemy import select;"
        "from kittylab.adapters.db.engine import Database, make_engine;"
        "from kittylab.adapters.db.tables import ApiToken;"
        "from kittylab.people import identity; from kittylab.domain.clock import utcnow;"
        "db = Database(make_engine(sys.argv[1], pool_size=1));"
        "s = db.unit_of_work().__enter__();"
        "h = identity.hash_token(sys.argv[2]);"
        "row = s.scalar(select(ApiToken).where(ApiToken.token_hash == h));"
        "row.revoked_at = utcnow(); s.commit()"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, database_url, token],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_while_listening_a_policy_applied_by_another_process_holds_the_very_next_request(
    database: Database, database_url: str, demo_lab_path: Path, tmp_path: Path
) -> None:
    """The zone's policies are remembered between requests (``safety.zone_facts``), and a
    policy that another process adds must still hold the next hazardous request."""
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), utcnow())
        ada = identity.find_user_by_username(s, "ada").id
    lab = yaml.safe_load(demo_lab_path.read_text())
    lab["policies"].append(
        {
            "name": "farm-lights-need-a-word",
            "zone": "print-farm",
            "intents": ["light_set_brightness"],
            "required_roles": ["safety"],
            "requires_dual_confirm": False,
            "requires_presence": False,
        }
    )
    stricter = tmp_path / "lab.yaml"
    stricter.write_text(yaml.safe_dump(lab, sort_keys=False))

    def decide() -> policy.Decision:
        with database.unit_of_work() as s:
            light = s.scalars(select(Device).where(Device.external_id == "farm-lights")).one()
            return workflow.evaluate(s, light, "light_set_brightness", ada, utcnow())

    async def scenario() -> None:
        listener = asyncio.create_task(change_signal.listen(libpq_url(database_url), {}))
        try:
            await _until(change_signal.listening)
            assert isinstance(decide(), policy.Allow)
            assert isinstance(decide(), policy.Allow)  # now from memory
            generation = change_signal.generation(change_signal.LAB)
            await asyncio.to_thread(_apply_elsewhere, database_url, stricter)
            await _until(lambda: change_signal.generation(change_signal.LAB) > generation)
            assert isinstance(decide(), policy.NeedsApproval)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    asyncio.run(scenario())
