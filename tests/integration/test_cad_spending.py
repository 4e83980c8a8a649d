"""Online CAD spending has a ceiling (issue 15): each Zoo call is priced from the settings'
table, held on the person's daily budget while it runs, settled after, recorded on the job,
counted with the routing tiers' spend, and refused past the budget with the offline build
offered — in the API, the CLI's words and the conversation's reply. Zoo is the local
contract server speaking its documented protocol."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.cad.worker import CadWorkerPool
from kittylab.adapters.cad.zoo import ZooProvider
from kittylab.adapters.db.tables import CADCharge
from kittylab.cad import spending
from kittylab.cad.errors import CadBudgetExceeded
from kittylab.cad.planning import PolicyMode
from kittylab.cad.runs import CadService, GenerateRequest
from kittylab.conversation.actions import ConversationCad
from kittylab.conversation.lab import spent_today
from kittylab.domain.enums import CADJobStatus, CADProvider
from tests.integration.cad_contract_servers import ContractServer, zoo_server
from tests.integration.conftest import Person

ZOO_TOKEN = "zoo-contract-token"
PRICE = Decimal("0.40")
BUDGET = Decimal("1.00")


class _Queue:
    def __init__(self) -> None:
        self.deferred: list[UUID] = []

    def defer_cad_job(self, job_id: UUID) -> None:
        self.deferred.append(job_id)

    def defer_notification(self, notification_id: UUID, *, delay_seconds: float = 0) -> None:
        pass


@pytest.fixture(scope="module")
def pool() -> Iterator[CadWorkerPool]:
    workers = CadWorkerPool(size=1)
    yield workers
    workers.close()


@pytest.fixture
def zoo() -> Iterator[ContractServer]:
    with zoo_server(ZOO_TOKEN) as server:
        yield server


@pytest.fixture
def cad(zoo: ContractServer, container: bootstrap.Container, pool: CadWorkerPool) -> CadService:
    """Zoo (the contract server) then CadQuery, Zoo priced at $0.40 a call, $1.00 a day."""
    settings = container.settings.model_copy(deep=True)
    settings.cad.online_prices_usd = {"zoo": PRICE}
    settings.query.daily_budget_usd = BUDGET
    service = bootstrap.cad_service(settings, container.database, container.artifacts, pool, None)
    zoo_provider = ZooProvider(ZOO_TOKEN, base_url=zoo.url, poll_seconds=0.05, deadline_seconds=10)
    service.providers = [
        zoo_provider,
        *(p for p in service.providers if p.name.value == "cadquery"),
    ]
    service.queue = _Queue()
    container.cad = service
    return service


def _auto(cad: CadService, person: Person, prompt: str = "a 20 mm cube") -> UUID:
    queued = cad.generate(
        GenerateRequest(prompt=prompt, policy_mode=PolicyMode.AUTO, requested_by=person.user_id)
    )
    return queued.job.id


def _charges(container: bootstrap.Container, person: Person) -> list[tuple[str, Decimal]]:
    with container.database.unit_of_work() as session:
        rows = session.scalars(
            select(CADCharge).where(CADCharge.user_id == person.user_id).order_by(CADCharge.id)
        )
        return [(row.status, row.cost_usd) for row in rows]


def _spend(container: bootstrap.Container, person: Person) -> Decimal:
    with container.database.unit_of_work() as session:
        return spent_today(session, person.user_id, container.clock())


def test_a_zoo_call_is_priced_settled_recorded_on_the_job_and_counted_in_the_budget(
    cad: CadService, container: bootstrap.Container, operator: Person
) -> None:
    done = cad.run_job(_auto(cad, operator))
    assert done.job.status is CADJobStatus.COMPLETED
    (attempt,) = done.job.details["attempts"]
    assert attempt["provider"] == "zoo" and attempt["outcome"] == "succeeded"
    assert Decimal(attempt["estimateUsd"]) == PRICE
    assert Decimal(attempt["costUsd"]) == PRICE
    assert Decimal(done.job.details["costUsd"]) == PRICE
    assert _charges(container, operator) == [("settled", PRICE)]
    # The routing tiers' budget counts it: the same spend, the same person.
    assert _spend(container, operator) == PRICE


def test_the_estimate_is_held_while_the_call_runs_so_two_jobs_cannot_overshoot_together(
    cad: CadService, container: bootstrap.Container, operator: Person
) -> None:
    first, second, third = (_auto(cad, operator) for _ in range(3))
    with container.database.unit_of_work() as session:
        held = [
            spending.hold(
                session, cad.budget, job_id=job, provider=CADProvider.ZOO,
                user_id=operator.user_id, now=container.clock(),
            ).id
            for job in (first, second)
        ]  # fmt: skip
    assert _spend(container, operator) == 2 * PRICE  # held, not yet spent, but counted
    with container.database.unit_of_work() as session, pytest.raises(CadBudgetExceeded):
        spending.hold(
            session, cad.budget, job_id=third, provider=CADProvider.ZOO,
            user_id=operator.user_id, now=container.clock(),
        )  # fmt: skip
    # A call that never reached Zoo releases its hold, and the budget has room again.
    with container.database.unit_of_work() as session:
        spending.close(session, held[0], spent=False, now=container.clock())
    assert _spend(container, operator) == PRICE
    assert sorted(_charges(container, operator)) == [("held", PRICE), ("released", Decimal(0))]


def test_past_the_budget_the_request_is_refused_and_the_offline_build_offered(
    cad: CadService,
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    zoo: ContractServer,
) -> None:
    for _ in range(2):
        cad.run_job(_auto(cad, operator))
    assert _spend(container, operator) == 2 * PRICE  # $0.20 left: Zoo costs $0.40
    calls = len(zoo.recorded.requests)

    with pytest.raises(CadBudgetExceeded) as refused:
        _auto(cad, operator)
    assert refused.value.offline_offer is True
    assert "daily budget of $1.00 would be exceeded" in str(refused.value)

    answer = client.post(
        "/api/cad/generate", json={"prompt": "a 20 mm cube"}, headers=operator.headers
    )
    assert answer.status_code == 402, answer.text
    problem = answer.json()
    assert problem["type"].endswith("/cad-budget-exceeded")
    assert problem["field"] == "policyMode"
    assert problem["offline"] == {"policyMode": "offline"}
    assert "built offline here at no cost" in problem["detail"]

    reply = ConversationCad(cad).start(
        "a 40 mm washer", operator.user_id, _conversation(container, operator), offline=False
    )
    assert reply.startswith("I didn't ask zoo: zoo costs about $0.40 a call")
    assert 'say "make a 40 mm washer offline"' in reply
    # Taking up the offer builds it offline, at no cost.
    built = ConversationCad(cad).start(
        "a 40 mm washer offline", operator.user_id, _conversation(container, operator),
        offline=False,
    )  # fmt: skip
    assert "washer: completed" in built
    assert len(zoo.recorded.requests) == calls  # Zoo was never asked
    assert _spend(container, operator) == 2 * PRICE

    # The offline build offered through the API works too.
    offline = client.post(
        "/api/cad/generate",
        json={"prompt": "a 20 mm cube", "policyMode": "offline"},
        headers=operator.headers,
    )
    assert offline.status_code == 202, offline.text


def test_a_prompt_only_an_online_provider_reads_is_refused_without_an_offline_offer(
    cad: CadService, operator: Person
) -> None:
    for _ in range(2):
        cad.run_job(_auto(cad, operator))
    with pytest.raises(CadBudgetExceeded) as refused:
        _auto(cad, operator, "a small vase")
    assert refused.value.offline_offer is False
    assert "cannot build this prompt" in str(refused.value)


def test_a_job_whose_budget_ran_out_before_it_ran_falls_back_offline_without_calling_zoo(
    cad: CadService, container: bootstrap.Container, operator: Person, zoo: ContractServer
) -> None:
    waiting = [_auto(cad, operator) for _ in range(3)]  # accepted while the budget had room
    for job in waiting[:2]:
        cad.run_job(job)
    calls = len(zoo.recorded.requests)
    done = cad.run_job(waiting[2])
    assert done.job.status is CADJobStatus.COMPLETED
    attempts = [(a["provider"], a["outcome"]) for a in done.job.details["attempts"]]
    assert attempts == [("zoo", "refused"), ("cadquery", "succeeded")]
    assert "would be exceeded" in done.job.details["attempts"][0]["error"]
    assert Decimal(done.job.details["costUsd"]) == 0
    assert len(zoo.recorded.requests) == calls


def test_a_provider_missing_from_the_price_table_is_refused(
    cad: CadService, operator: Person
) -> None:
    cad.budget = spending.Budget(prices={}, daily_usd=BUDGET)
    with pytest.raises(CadBudgetExceeded, match="no entry in the CAD price table"):
        _auto(cad, operator)


def _conversation(container: bootstrap.Container, person: Person) -> UUID:
    from kittylab.adapters.db.tables import ConversationSession

    with container.database.unit_of_work() as session:
        row = ConversationSession(context_key=f"test:{uuid4()}", state={})
        session.add(row)
        session.flush()
        return row.id
