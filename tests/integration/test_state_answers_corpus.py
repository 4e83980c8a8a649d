"""A sample of the held-out state-question corpus, asked through ``POST /api/query``
against the demo lab on PostgreSQL with a known state (tests/state_answers_corpus.py);
the whole corpus is scored by benchmarks/state_answers_bench.py. The target is the
issue's: at least 95 % answered with the right kind, device or zone and values."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, RoutingDecision, Zone
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.people import identity
from tests import state_answers_corpus as corpus

SAMPLE = int(os.environ.get("KITTYLAB_STATE_SAMPLE", "15"))


def test_a_sample_of_the_held_out_state_questions_is_answered_right(
    container: bootstrap.Container, client: TestClient, database: Database, demo_lab_path: Path
) -> None:
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), container.clock())
    with database.unit_of_work() as s:
        corpus.seed(s, container.clock())
        token = identity.issue_token(s, identity.find_user_by_username(s, corpus.ASKER)).token
        devices = {
            d.external_id: (d.kind.value, zone)
            for d, zone in s.execute(
                select(Device, Zone.name).join(Zone, Zone.id == Device.zone_id)
            )
        }
    held = client.post(
        "/api/query",
        json={"channel": "cli", "input": {"text": "unlock the laser door"}},
        headers={"Authorization": f"Bearer {_olivia(database)}"},
    )
    assert held.status_code == 202, held.text
    entries = corpus.load()
    step = max(1, len(entries) // SAMPLE)
    sample = entries[::step][:SAMPLE]
    scores = []
    for entry in sample:
        r = client.post(
            "/api/query",
            json={"channel": "cli", "input": {"text": entry.text}},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        with database.unit_of_work() as s:
            decision = s.get(RoutingDecision, body["routing"]["decisionId"])
            assert decision is not None
            answer = decision.details.get("answer")
        scores.append(corpus.score(entry, body["replies"][0]["text"], answer, devices))
    wrong = [s for s in scores if not s.right]
    assert len(wrong) <= len(scores) * 0.05, [(w.text, w.missing, w.reply) for w in wrong]


def _olivia(database: Database) -> str:
    with database.unit_of_work() as s:
        return identity.issue_token(s, identity.find_user_by_username(s, "olivia")).token
