"""The answer cache knows who asks (issue 16, item 4): an answer that depends on the asker
or on the lab's live state is never replayed to someone else, ``forceTier`` always asks the
tier, and a hit is recorded as a cache hit, not as the local tier. Each test here failed
before the fix (one person's answer replayed to another, a forced tier served from the
cache, a hit recorded as ``local``)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from kittylab.adapters.db.tables import RoutingDecision
from tests.integration import test_query_api
from tests.integration.conftest import Person
from tests.integration.test_query_api import Lab

lab = test_query_api.lab  # the same fixture: the demo lab with fake mcp and frontier tiers

QUESTION = "explain why petg strings more than pla"


def _tiers(lab: Lab) -> list[str]:
    with lab.database.unit_of_work() as s:
        rows = s.scalars(select(RoutingDecision).order_by(RoutingDecision.created_at))
        return [r.selected_tier.value for r in rows]


def test_a_personal_answer_is_never_replayed_to_someone_else(
    lab: Lab, operator: Person, admin: Person
) -> None:
    lab.frontier.reply = "Your last three prints were PETG."
    first = lab.ask(operator, "why did my last prints string so much").json()
    other = lab.ask(admin, "why did my last prints string so much").json()
    assert first["routing"]["cache"] == "miss"
    assert other["routing"]["cache"] == "miss", other["routing"]
    assert len(lab.frontier.calls) == 2
    again = lab.ask(operator, "why did my last prints string so much").json()
    assert again["routing"]["cache"] == "hit"  # the same person may get their own answer


def test_an_answer_about_a_device_of_the_lab_is_not_shared_between_people(
    lab: Lab, operator: Person, admin: Person
) -> None:
    lab.ask(operator, "explain what the voron is doing wrong with its first layer")
    other = lab.ask(admin, "explain what the voron is doing wrong with its first layer").json()
    assert other["routing"]["cache"] == "miss"
    assert len(lab.frontier.calls) == 2


def test_a_general_answer_is_still_shared(lab: Lab, operator: Person, admin: Person) -> None:
    lab.ask(operator, QUESTION)
    other = lab.ask(admin, QUESTION).json()
    assert other["routing"]["cache"] == "hit"
    assert len(lab.frontier.calls) == 1


def test_force_tier_bypasses_the_cache(lab: Lab, operator: Person) -> None:
    lab.ask(operator, QUESTION)
    forced = lab.ask(operator, QUESTION, forceTier="frontier").json()
    assert forced["routing"]["cache"] == "bypass", forced["routing"]
    assert forced["routing"]["selectedTier"] == "frontier"
    assert len(lab.frontier.calls) == 2
    assert Decimal(str(forced["routing"]["costEstimate"])) > 0


def test_a_hit_is_recorded_as_a_cache_hit_not_as_the_local_tier(
    lab: Lab, operator: Person, admin: Person
) -> None:
    lab.ask(operator, QUESTION)
    hit = lab.ask(operator, QUESTION).json()
    assert hit["routing"]["cache"] == "hit"
    assert hit["routing"]["selectedTier"] == "cache", hit["routing"]
    assert _tiers(lab) == ["frontier", "cache"]
    summary = lab.client.get("/api/routing/summary", headers=admin.headers).json()
    assert {t["tier"] for t in summary["tiers"]} == {"frontier", "cache"}
    assert summary["localShare"] == 0


def test_force_tier_cache_is_a_problem_naming_the_field(lab: Lab, operator: Person) -> None:
    r = lab.client.post(
        "/api/query",
        json={"channel": "cli", "input": {"text": QUESTION}, "forceTier": "cache"},
        headers=operator.headers,
    )
    assert r.status_code == 422
    assert r.json()["field"].startswith("forceTier")
