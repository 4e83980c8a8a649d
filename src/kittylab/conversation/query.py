"""The conversation use case: understand a request, route it to the cheapest tier that is
confident enough, act or answer, and record exactly one routing decision for it.

A turn runs in three steps so that no database transaction stays open while a model
thinks: (1) a short transaction reads the session, the lab and today's spend; (2) the
text is understood and, for questions, answered by the chosen tier (mcp or frontier, with
fallback when one fails); (3) a second transaction records the device command (through
the ``CommandSubmitter`` port), the new context and the decision. Once it commits, the
command's follow-ups run (its dispatch job, or a held command's announcement on
``kitty/safety/<eventId>``) and the context is published through the ``ContextPublisher``
port, when one is wired: all registered on the turn's unit of work.

Hazardous requests (``door_unlock``, ``power_on`` and whatever an access policy governs)
are never executed here: the answer carries ``pending_hazard`` describing what approval
they need (``safety.held.HeldCommand.pending_hazard``, the command route's shape too),
and nothing is sent to the device (fail closed).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db import change_signal
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import ConversationSession, Device, DeviceCommand, Zone
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.config import QuerySettings
from kittylab.conversation import metrics
from kittylab.conversation.answers.facts import Answer, Image
from kittylab.conversation.answers.questions import lab_names_in
from kittylab.conversation.answers.service import StateAnswers
from kittylab.conversation.heard import choose
from kittylab.conversation.lab import spent_today, vocabulary_from_database
from kittylab.conversation.ports import (
    Alternative,
    Answerer,
    CadStarter,
    CommandSubmitter,
    ContextPublisher,
    LabStopper,
    TierAnswer,
)
from kittylab.conversation.routing.cache import AnswerCache, CacheKey, asker_scope
from kittylab.conversation.routing.cost import Price, check_budget, estimate_tokens
from kittylab.conversation.routing.tiers import choose_tier
from kittylab.conversation.routing_log import normalize_input, record_routing_decision
from kittylab.conversation.understanding import signals
from kittylab.conversation.understanding.context import ConversationContext
from kittylab.conversation.understanding.model import ModelUnavailable
from kittylab.conversation.understanding.normalize import normalize
from kittylab.conversation.understanding.pipeline import Understander
from kittylab.conversation.understanding.types import (
    ASK,
    CAD_GENERATE,
    STOP,
    AskKind,
    Understanding,
)
from kittylab.conversation.understanding.vocabulary import LabVocabulary
from kittylab.domain.devices import describe_intent
from kittylab.domain.enums import CommandStatus, Tier
from kittylab.domain.errors import DomainError, NotFound, PermissionDenied
from kittylab.domain.principal import Principal
from kittylab.domain.sanitize import sanitize_text
from kittylab.fabrication import print_requests
from kittylab.fabrication.print_requests import PrintQueued
from kittylab.safety.held import PendingHazard
from kittylab.safety.stop import StopResult

log = logging.getLogger(__name__)

VOCABULARY_TTL_SECONDS = 5.0

EMPTY_INPUT_MARKER = "<empty>"
"""What an empty request is recorded (hashed) as: a decision needs an input hash."""

CHANNELS = ("mac", "ipad", "wall_terminal", "remote", "cli")


class Outcome:
    COMMAND = "command_recorded"
    PENDING_HAZARD = "pending_hazard"
    ANSWERED = "answered"
    CLARIFY = "clarification"
    REFUSED = "refused"
    REJECTED_INPUT = "rejected_input"
    UNAVAILABLE = "unavailable"
    CAD_STARTED = "cad_started"
    STOPPED = "stopped"
    PRINT_QUEUED = "print_queued"
    """A ``print_start`` became a print job (issue 16)."""


@dataclass(frozen=True)
class QueryRequest:
    text: str
    channel: str
    conversation_id: UUID | None = None
    force_tier: Tier | None = None
    request_id: UUID = field(default_factory=uuid.uuid4)
    voice: dict[str, Any] | None = None
    """Set by ``conversation.voice`` for a spoken turn (the transcript, the audio's length):
    recorded as the decision's ``details.voice``."""
    alternatives: tuple[Alternative, ...] = ()
    """A spoken turn's other readings of the same speech (``text`` is the recogniser's
    best). A spoken turn (``voice`` set) runs on the reading ``conversation.heard``
    chooses."""


@dataclass
class QueryResult:
    conversation_id: UUID
    request_id: UUID
    replies: list[str]
    decision_id: UUID
    tier: Tier
    confidence: float
    factors: dict[str, Any]
    cost: Decimal
    latency_ms: int
    escalation_reason: str | None
    outcome: str
    intent: str | None
    device: str | None
    args: dict[str, Any]
    hazardous: bool
    cache: str
    context: dict[str, Any] = field(default_factory=dict)
    pending_hazard: PendingHazard | None = None
    command: DeviceCommand | None = None
    images: list[Image] = field(default_factory=list)
    """Pictures the replies link (a camera's snapshot), for clients that show them."""
    heard: str | None = None
    """For a spoken turn: the reading it ran on."""


class TurnHooks(Protocol):
    """Issue 16 (``conversation.memory.TurnMemory``): a turn's words stored with its
    decision, and its reply completed once it has committed."""

    def recorded(
        self, session: UnitOfWork, caller: Principal, request: QueryRequest, result: QueryResult
    ) -> None:
        """In the transaction recording the turn's decision."""

    def answered(self, result: QueryResult) -> QueryResult:
        """After the commit: the result as the person hears it."""
        ...


@dataclass
class _Turn:
    """What step 2 decided, for step 3 to record."""

    tier: Tier = Tier.LOCAL
    replies: list[str] = field(default_factory=list)
    outcome: str = Outcome.ANSWERED
    reasons: list[str] = field(default_factory=list)
    cost: Decimal = Decimal(0)
    cache: str = "bypass"
    requested_tier: Tier | None = None
    model: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    reserved: Decimal = Decimal(0)
    """Budget held for this turn's paid call until its decision is recorded."""
    cad_reply: str | None = None
    """Set when step 2 started CAD generation (outside any transaction: a build can take
    a minute, and the conversation row is locked while step 3 records the turn)."""
    cad_refusal: str | None = None
    """Set instead when the person may not start CAD generation."""
    print_job_id: UUID | None = None
    """Set when a ``print_start`` became a print job (issue 16)."""
    answer: Answer | None = None
    """Set when step 2 answered a question about the lab's state (``answers``)."""
    command: DeviceCommand | None = None
    """The fresh read that answer asked for, when it asked for one."""


class QueryService:
    def __init__(
        self,
        *,
        database: Database,
        settings: QuerySettings,
        understander: Understander,
        submitter: CommandSubmitter,
        clock: Callable[[], datetime],
        mcp: Sequence[Answerer] = (),
        frontier: Answerer | None = None,
        publisher: ContextPublisher | None = None,
        cache: AnswerCache | None = None,
        cad: CadStarter | None = None,
        stopper: LabStopper | None = None,
        hooks: TurnHooks | None = None,
        answers: StateAnswers | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.understander = understander
        self.submitter = submitter
        self.clock = clock
        self.mcp = list(mcp)
        self.frontier = frontier
        self.publisher = publisher
        self.cad = cad
        self.stopper = stopper
        self.hooks = hooks  # issue 16: memory and replies that close the loop
        self.answers = answers
        self._vocabulary_lock = threading.Lock()
        # Paid calls under way, per person: the budget counts them before their decisions
        # are recorded, so concurrent questions cannot overshoot it together.
        self._budget_lock = threading.Lock()
        self._in_flight: dict[UUID, Decimal] = {}
        self._cached_vocabulary: tuple[float, int, LabVocabulary] | None = None
        self.cache = cache or AnswerCache(
            settings.cache_max_entries, settings.cache_ttl_seconds, time.monotonic
        )

    # -- the turn ----------------------------------------------------------------------

    def handle(self, caller: Principal, request: QueryRequest) -> QueryResult:
        started = time.perf_counter()
        # JSON may carry lone surrogates; nothing downstream (hashing, the model) takes them.
        request = replace(request, text=request.text.encode("utf-8", "replace").decode())
        with self.database.unit_of_work() as session:
            conversation = self._conversation(session, caller, request.conversation_id)
            conversation_id = conversation.id
            context = ConversationContext.from_state(conversation.state.get("context"))
            vocabulary = self._vocabulary(session)
        text = request.text
        turn = _Turn(requested_tier=request.force_tier)
        understanding: Understanding | None = None
        if not normalize_input(text):
            turn.replies.append('I didn\'t hear anything. Try "pause the Prusa".')
            turn.outcome = Outcome.REJECTED_INPUT
            turn.reasons.append("empty input")
        elif len(text) > self.settings.max_text_chars:
            turn.replies.append(
                f"That is too long for me ({len(text)} characters; the limit is "
                f"{self.settings.max_text_chars}). Please ask one thing at a time."
            )
            turn.outcome = Outcome.REJECTED_INPUT
            turn.reasons.append(f"input over {self.settings.max_text_chars} characters")
        elif request.voice is not None or request.alternatives:
            request, understanding = self._hear(request, vocabulary, context)
            text = request.text
            understanding = self._gate_model_reading(understanding)
        else:
            understanding = self.understander.understand(text, vocabulary, context)
            understanding = self._gate_model_reading(understanding)
        try:
            if understanding is not None:
                # Issue 16: a question about the lab's own state is answered from its
                # records (``conversation.answers``) before any escalation.
                if not self._answer_state(
                    caller, request, conversation_id, understanding, turn, vocabulary, context
                ):
                    self._route(text, understanding, turn, caller, vocabulary)
                self._start_cad(understanding, turn, caller, conversation_id)
            with self.database.unit_of_work() as session:
                result = self._record(
                    session, caller, request, conversation_id, understanding, turn, context,
                    vocabulary, started,
                )  # fmt: skip
                if self.hooks is not None:  # issue 16: the turn's words, with its decision
                    self.hooks.recorded(session, caller, request, result)
                # After the turn's own follow-ups (its command's dispatch or announcement).
                session.after_commit(self._publish, result.conversation_id, result.context)
        finally:
            # Recorded (its cost now counts in the database), or failed: either way the
            # hold is over.
            self._release(caller.user_id, turn)
        if request.voice is not None or request.alternatives:
            result = replace(result, heard=request.text)
        if self.hooks is not None:  # issue 16: a command's reply says how it went
            result = self.hooks.answered(result)
        metrics.observe(result.tier, result.outcome, result.latency_ms / 1000, result.cost)
        return result

    def _hear(
        self, request: QueryRequest, vocabulary: LabVocabulary, context: ConversationContext
    ) -> tuple[QueryRequest, Understanding]:
        """A spoken turn: the reading of its speech to run on (``conversation.heard``), the
        request as that reading, and its understanding. Readings are compared without the
        local model (seconds each); the one chosen gets it when it needs it."""
        heard = choose(
            request.text,
            request.alternatives,
            lambda t: self.understander.understand(t, vocabulary, context, use_model=False),
        )
        u = heard.understanding
        if not u.actionable and not u.clarify and self.understander.model is not None:
            u = self.understander.understand(heard.text, vocabulary, context)
        voice = dict(request.voice or {})
        if heard.chosen:
            voice["transcript"] = sanitize_text(heard.text, 500)
            voice["best_reading"] = sanitize_text(request.text, 500)
        voice["reading"] = heard.chosen
        voice["readings"] = len(heard.readings)
        return replace(request, text=heard.text, voice=voice), u

    def _answer_state(
        self,
        caller: Principal,
        request: QueryRequest,
        conversation_id: UUID,
        u: Understanding,
        turn: _Turn,
        vocabulary: LabVocabulary,
        context: ConversationContext,
    ) -> bool:
        """Answer a state question locally (recorded as the local tier, never cached);
        False when the turn is not one, or the caller forced a tier that answers in words."""
        if self.answers is None or not self.settings.answers.enabled:
            return False
        if turn.requested_tier is not None and turn.requested_tier is not Tier.LOCAL:
            return False
        question = self.answers.question(request.text, u, vocabulary, context)
        if question is None:
            return False
        answered = self.answers.answer(
            caller, question, conversation_id=conversation_id, request_id=request.request_id
        )
        turn.answer = answered.answer
        turn.command = answered.command
        turn.tier = Tier.LOCAL
        turn.replies.append(answered.answer.reply)
        if answered.answer.refused:
            turn.outcome = Outcome.REFUSED
            turn.reasons.append("the caller may not read that device")
        return True

    def _start_cad(
        self, u: Understanding, turn: _Turn, caller: Principal, conversation_id: UUID
    ) -> None:
        if u.intent != CAD_GENERATE or u.problem is not None or self.cad is None:
            return
        if not caller.may_generate_cad:
            turn.cad_refusal = (
                "Starting CAD generation needs the engineer, operator or admin role; "
                "ask one of them, or an admin for the role."
            )
            return
        turn.cad_reply = self.cad.start(
            str(u.args.get("prompt", "")),
            caller.user_id,
            conversation_id,
            offline=self.settings.offline,
        )

    def _gate_model_reading(self, u: Understanding) -> Understanding:
        """A model reading below the threshold is never acted on."""
        if (
            u.stage.value == "model"
            and (u.is_device_intent or u.intent == CAD_GENERATE)
            and u.problem is None
            and u.confidence < self.settings.model_threshold
        ):
            return replace(
                u,
                problem=f"I'm not sure I understood (confidence {u.confidence:.2f}); "
                'please say it another way, e.g. "pause the Prusa"',
            )
        return u

    # -- step 2: route and answer ------------------------------------------------------

    def _route(
        self,
        text: str,
        u: Understanding,
        turn: _Turn,
        caller: Principal,
        vocabulary: LabVocabulary,
    ) -> None:
        user_id = caller.user_id
        choice = choose_tier(
            u,
            local_threshold=self.settings.local_threshold,
            local_answer_confidence=self.settings.local_answer_confidence,
            forced=turn.requested_tier,
        )
        if choice.reason:
            turn.reasons.append(choice.reason)
        if choice.tier is Tier.LOCAL:
            return  # local replies are built while recording (they may need the database)
        key = _cache_key(text, u, user_id, vocabulary)
        if turn.requested_tier is None:
            cached = self.cache.get(key)
            if cached is not None:
                metrics.CACHE_HITS.inc()
                turn.cache = "hit"
                turn.tier = Tier.CACHE  # no tier was asked: recorded as a hit, not as local
                turn.replies.append(cached.reply)
                turn.model = f"cache ({cached.tier.value})"
                return
            metrics.CACHE_MISSES.inc()
            turn.cache = "miss"
        # else: forceTier asks that tier now; its answer refreshes the cache.
        if self.settings.offline:
            turn.outcome = Outcome.REFUSED
            turn.reasons.append(f"offline mode: escalation to {choice.tier.value} refused")
            turn.replies.append(
                "The lab is in offline mode, so I can't look that up or ask a cloud model. "
                "I can still run the equipment."
            )
            return
        order: list[tuple[Tier, Answerer]] = []
        if choice.tier is Tier.MCP:
            order += [(Tier.MCP, a) for a in self.mcp]
            if not self.mcp:
                turn.reasons.append("no MCP server configured")
        if self.frontier is not None:
            order.append((Tier.FRONTIER, self.frontier))
        elif choice.tier is Tier.FRONTIER or not self.mcp:
            turn.reasons.append("no frontier model configured")
        for tier, answerer in order:
            allowed, estimate = self._affordable(tier, answerer, text, user_id, turn)
            if not allowed:
                continue
            try:
                answer = answerer.answer(text)
            except ModelUnavailable as exc:
                turn.reasons.append(f"{tier.value} {answerer.name} failed: {exc}")
                continue
            turn.tier = tier
            turn.model = answer.model
            turn.usage = {"input": answer.input_tokens, "output": answer.output_tokens}
            turn.cost = self._cost(tier, answerer, answer, estimate)
            turn.replies.append(answer.text)
            turn.outcome = Outcome.ANSWERED
            self.cache.put(key, answer.text, tier, turn.cost)
            return
        turn.outcome = Outcome.REFUSED if turn.outcome == Outcome.REFUSED else Outcome.UNAVAILABLE
        turn.replies.append(
            "I can't answer that right now: "
            + (turn.reasons[-1] if turn.reasons else "no tier is available")
            + "."
        )

    def _affordable(
        self, tier: Tier, answerer: Answerer, text: str, user_id: UUID, turn: _Turn
    ) -> tuple[bool, Decimal]:
        if answerer.cost_per_call is not None:
            estimate = answerer.cost_per_call
            if not estimate:
                return True, estimate
            return self._within_budget(estimate, tier, user_id, turn), estimate
        price = self._price(answerer.model)
        if price is None:
            turn.outcome = Outcome.REFUSED
            turn.reasons.append(
                f"frontier refused: model {answerer.model!r} has no entry in the price table"
            )
            return False, Decimal(0)
        frontier_max = self._frontier_max_tokens()
        estimate = price.cost(estimate_tokens(text) + 200, frontier_max)
        return self._within_budget(estimate, tier, user_id, turn), estimate

    def _within_budget(self, estimate: Decimal, tier: Tier, user_id: UUID, turn: _Turn) -> bool:
        """Whether today's recorded spend, the calls of this person still under way and
        ``estimate`` fit the budget; if so ``estimate`` is held for this turn."""
        with self.database.unit_of_work() as session:
            spent = spent_today(session, user_id, self.clock())
        with self._budget_lock:
            held = self._in_flight.get(user_id, Decimal(0)) - turn.reserved
            check = check_budget(spent + held, estimate, self.settings.daily_budget_usd)
            if check.allowed:
                # A turn that tries a second tier replaces its hold, never adds to it.
                self._in_flight[user_id] = held + estimate
                turn.reserved = estimate
        if not check.allowed:
            turn.outcome = Outcome.REFUSED
            turn.reasons.append(f"{tier.value} refused: {check.reason}")
        return check.allowed

    def _release(self, user_id: UUID, turn: _Turn) -> None:
        if not turn.reserved:
            return
        with self._budget_lock:
            left = self._in_flight.get(user_id, Decimal(0)) - turn.reserved
            if left > 0:
                self._in_flight[user_id] = left
            else:
                self._in_flight.pop(user_id, None)
        turn.reserved = Decimal(0)

    def _frontier_max_tokens(self) -> int:
        return self.settings.frontier.max_output_tokens

    def _price(self, model: str) -> Price | None:
        entry = self.settings.prices.get(model)
        if entry is None:
            return None
        return Price(entry.input_per_million, entry.output_per_million)

    def _cost(
        self, tier: Tier, answerer: Answerer, answer: TierAnswer, estimate: Decimal
    ) -> Decimal:
        if answer.fixed_cost is not None:
            return answer.fixed_cost
        price = self._price(answerer.model)
        if price is None:
            return estimate
        if answer.input_tokens == 0 and answer.output_tokens == 0:
            return estimate  # no usage reported: charge the estimate, never zero
        return price.cost(answer.input_tokens, answer.output_tokens)

    # -- step 3: record ------------------------------------------------------------------

    def _record(
        self,
        session: UnitOfWork,
        caller: Principal,
        request: QueryRequest,
        conversation_id: UUID,
        u: Understanding | None,
        turn: _Turn,
        context: ConversationContext,
        vocabulary: LabVocabulary,
        started: float,
    ) -> QueryResult:
        # FOR NO KEY UPDATE: turns of one conversation still go one at a time, but work done
        # meanwhile in other transactions (a CAD job) may reference the conversation (a
        # foreign key check takes KEY SHARE, which plain FOR UPDATE would block).
        locked = session.get(
            ConversationSession, conversation_id, with_for_update={"key_share": True}
        )
        if locked is None:  # deleted while the turn was being answered
            raise NotFound("conversation", conversation_id)
        conversation = locked
        pending_hazard: PendingHazard | None = None
        command: DeviceCommand | None = turn.command
        hazardous = False
        if u is not None and turn.tier is Tier.LOCAL and not turn.replies:
            hazardous, pending_hazard, command = self._act_locally(
                session, caller, request, conversation_id, u, turn, vocabulary
            )
        new_context = context
        answered = _answered_device(turn.answer, vocabulary)
        if answered is not None:
            new_context = context.after(
                device=answered.external_id, zone=answered.zone, intent=None
            )
        elif u is not None and u.device is not None:
            new_context = context.after(
                device=u.device.external_id,
                zone=u.device.zone,
                intent=u.intent if u.is_device_intent else None,
                args=u.args,
                job=u.args.get("file") if u.intent == "print_start" else None,
            )
        elif u is not None and u.zone is not None:
            new_context = context.after(device=None, zone=u.zone, intent=None)
        else:
            new_context = context.after(device=None, zone=None, intent=None)
        now = self.clock()
        conversation.state = {**conversation.state, "context": new_context.to_state()}
        conversation.last_message_at = now
        if caller.user_id not in conversation.active_participants:
            conversation.active_participants = [*conversation.active_participants, caller.user_id]
        latency_ms = int((time.perf_counter() - started) * 1000)
        factors = dict(u.factors) if u is not None else {}
        confidence = u.confidence if u is not None else 1.0
        details: dict[str, Any] = {
            "channel": request.channel,
            "outcome": turn.outcome,
            "intent": u.intent if u else None,
            "stage": u.stage.value if u else None,
            "device": u.device.external_id if u and u.device else None,
            "hazardous": hazardous,
            "cache": turn.cache,
            "requested_tier": turn.requested_tier.value if turn.requested_tier else None,
            "model": turn.model,
            "usage": turn.usage,
            "command_id": str(command.id) if command is not None else None,
            **({"print_job_id": str(turn.print_job_id)} if turn.print_job_id else {}),
            "corrections": len(u.corrections) if u else 0,
        }
        if turn.answer is not None:
            details["answer"] = {
                "kind": turn.answer.kind,
                "devices": turn.answer.devices,
                "zone": turn.answer.zone,
                "freshReads": len(turn.answer.fresh_reads),
                "refused": turn.answer.refused,
            }
        if request.voice is not None:
            details["voice"] = request.voice
        decision = record_routing_decision(
            session,
            conversation_id=conversation_id,
            request_id=request.request_id,
            input_text=request.text if normalize_input(request.text) else EMPTY_INPUT_MARKER,
            selected_tier=turn.tier,
            confidence=max(0.0, min(1.0, confidence)),
            confidence_factors=factors,
            cost_estimate=turn.cost,
            latency_ms=latency_ms,
            escalation_reason="; ".join(turn.reasons) or None,
            performed_by=caller.user_id,
            details=details,
        )
        return QueryResult(
            conversation_id=conversation_id,
            request_id=request.request_id,
            replies=turn.replies,
            decision_id=decision.id,
            tier=turn.tier,
            confidence=decision.confidence,
            factors=factors,
            cost=decision.cost_estimate,
            latency_ms=latency_ms,
            escalation_reason=decision.escalation_reason,
            outcome=turn.outcome,
            intent=u.intent if u else None,
            device=(
                answered.external_id
                if answered is not None
                else (u.device.external_id if u and u.device else None)
            ),
            args=dict(u.args) if u else {},
            hazardous=hazardous,
            cache=turn.cache,
            context=new_context.to_state(),
            pending_hazard=pending_hazard,
            command=command,
            images=list(turn.answer.images) if turn.answer is not None else [],
        )

    def _act_locally(
        self,
        session: UnitOfWork,
        caller: Principal,
        request: QueryRequest,
        conversation_id: UUID,
        u: Understanding,
        turn: _Turn,
        vocabulary: LabVocabulary,
    ) -> tuple[bool, PendingHazard | None, DeviceCommand | None]:
        if u.problem is not None:
            turn.outcome = Outcome.CLARIFY
            turn.replies.append(_sentence(u.problem))
            return False, None, None
        if u.intent == ASK:
            if u.ask_kind is AskKind.HELP:
                turn.replies.append(_help(vocabulary))
            else:
                turn.outcome = Outcome.UNAVAILABLE
                turn.replies.append("I can't answer questions locally; no local answer model.")
            return False, None, None
        if u.intent == CAD_GENERATE:
            prompt = str(u.args.get("prompt", ""))
            if turn.cad_refusal is not None:
                turn.outcome = Outcome.REFUSED
                turn.reasons.append("cad_generate needs engineer, operator or admin")
                turn.replies.append(turn.cad_refusal)
            elif turn.cad_reply is None:
                turn.outcome = Outcome.UNAVAILABLE
                turn.replies.append(
                    f"CAD generation is not available here; I understood you want: {prompt}."
                )
            else:
                turn.outcome = Outcome.CAD_STARTED
                turn.replies.append(turn.cad_reply)
            return False, None, None
        if u.intent == STOP:
            self._stop(session, caller, u, turn)
            return False, None, None
        assert u.device is not None
        device = session.scalar(
            select(Device).where(
                Device.external_id == u.device.external_id, Device.retired_at.is_(None)
            )
        )
        if device is None:
            turn.outcome = Outcome.CLARIFY
            turn.replies.append(f"{u.device.display_name} is no longer part of the lab.")
            return False, None, None
        name = device.display_name
        try:
            with session.begin_nested():
                # Hazards are checked here against the database (the vocabulary may be a few
                # seconds old): a hazardous request is held for approval, never sent.
                requested = self.submitter.submit(
                    session,
                    device=device,
                    intent=u.intent,
                    payload=dict(u.args),
                    requester=caller,
                    conversation_id=conversation_id,
                    correlation_id=str(request.request_id),
                )
        except (DomainError, PermissionDenied) as refusal:
            # The device's state or the lab's rules say no: that is an answer, not an error.
            turn.outcome = Outcome.REFUSED
            turn.reasons.append(f"command refused: {refusal}")
            turn.replies.append(f"I can't: {refusal}. Nothing was sent.")
            return vocabulary.is_hazardous(u.device, u.intent), None, None
        if isinstance(requested, PrintQueued):
            # Issue 16: a print is a job; the reply names it (no command exists yet).
            turn.outcome = Outcome.PRINT_QUEUED
            turn.print_job_id = requested.job.id
            turn.replies.append(print_requests.describe(requested, name))
            return False, None, None
        command = requested.command
        if requested.held is not None:
            turn.outcome = Outcome.PENDING_HAZARD
            pending = requested.held.pending_hazard()
            turn.replies.append(pending.message)
            return True, pending, command
        turn.outcome = Outcome.COMMAND
        if command.status is CommandStatus.PENDING:
            turn.replies.append(
                f"{describe_intent(u.intent, name, u.args)}: on its way (command "
                f"{str(command.id)[:8]}); it counts as done once {name} reports the change."
            )
        else:
            turn.replies.append(
                f"{describe_intent(u.intent, name, u.args)}: command {str(command.id)[:8]} is "
                f"{command.status.value}."
            )
        return False, None, command

    def _stop(self, session: UnitOfWork, caller: Principal, u: Understanding, turn: _Turn) -> None:
        """A zone's or the lab's stop, as the stop routes do it: every device put in its safe
        state, never held, audited (``stop.requested``) and announced; refused with the
        reason for a role that may not stop equipment (``domain.actuation``)."""
        where = u.zone.replace("-", " ") if u.zone else "the whole lab"
        if self.stopper is None:
            turn.outcome = Outcome.UNAVAILABLE
            turn.replies.append(
                f"I can't stop {where} from here; use kittylab stop or the machines' own "
                "emergency stops."
            )
            return
        zone_id = None
        if u.zone is not None:
            zone_id = session.scalar(select(Zone.id).where(Zone.name == u.zone))
            if zone_id is None:
                turn.outcome = Outcome.CLARIFY
                turn.replies.append(f"There is no zone called {where} any more.")
                return
        try:
            with session.begin_nested():
                result = self.stopper.stop(session, requester=caller, zone_id=zone_id)
        except PermissionDenied as refusal:
            held = ", ".join(sorted(r.value for r in caller.roles)) or "none"
            turn.outcome = Outcome.REFUSED
            turn.reasons.append(f"stop refused: {refusal}")
            turn.replies.append(
                f"I can't stop {where} for you: stopping equipment needs the operator, "
                f"safety or admin role, and yours is {held}. Ask one of them — and if "
                "someone is in danger, use the machine's own emergency stop. Nothing was "
                "stopped."
            )
            return
        turn.outcome = Outcome.STOPPED
        turn.replies.append(_stop_reply(where, result))

    # -- sessions and context -------------------------------------------------------------

    def _vocabulary(self, session: Session) -> LabVocabulary:
        """The lab vocabulary, read at most every ``VOCABULARY_TTL_SECONDS``, and again as
        soon as this process hears the lab changed (``change_signal``: a manifest apply
        here, or anywhere while the server listens). Devices are re-read and
        hazards re-checked against the database before anything is recorded."""
        now = time.monotonic()
        generation = change_signal.generation(change_signal.LAB)
        with self._vocabulary_lock:
            cached = self._cached_vocabulary
            if (
                cached is not None
                and cached[1] == generation
                and now - cached[0] < VOCABULARY_TTL_SECONDS
            ):
                return cached[2]
        vocabulary = vocabulary_from_database(session)
        with self._vocabulary_lock:
            self._cached_vocabulary = (now, generation, vocabulary)
        return vocabulary

    def _conversation(
        self, session: Session, caller: Principal, conversation_id: UUID | None
    ) -> ConversationSession:
        if conversation_id is None:
            row = ConversationSession(
                context_key=f"conv-{uuid.uuid4().hex[:16]}",
                active_participants=[caller.user_id],
                last_message_at=self.clock(),
            )
            session.add(row)
            session.flush()
            return row
        existing = session.get(ConversationSession, conversation_id)
        if existing is None:
            raise NotFound("conversation", conversation_id)
        if caller.user_id not in existing.active_participants and not caller.reads_all_records:
            raise PermissionDenied("only the conversation's participants can talk in it")
        return existing

    def _publish(self, conversation_id: UUID, context: dict[str, Any]) -> None:
        if self.publisher is None:
            return
        try:
            self.publisher.publish(conversation_id, context)
        except Exception:  # the turn is committed; a late publish must not fail it
            log.warning("context publish failed for %s", conversation_id, exc_info=True)


def _answered_device(answer: Answer | None, vocabulary: LabVocabulary) -> Any:
    """The one device a state answer was about (for the context and the result)."""
    if answer is None or len(answer.devices) != 1:
        return None
    return vocabulary.device(answer.devices[0])


def _cache_key(text: str, u: Understanding, asker: UUID, vocabulary: LabVocabulary) -> CacheKey:
    """Never the same key across a negation or a different device: both are part of it;
    nor across people when the answer may depend on who asks (``cache.asker_scope``)."""
    clean = normalize(text)
    devices = tuple(sorted({d.external_id for d in (u.device, *u.candidates) if d is not None}))
    named, zone = lab_names_in(text, vocabulary)
    return CacheKey(
        text=clean,
        devices=devices,
        negated=signals.is_negated(clean),
        asker=asker_scope(clean, devices or named, u.zone or zone, asker),
    )


def _sentence(text: str) -> str:
    text = text.strip()
    return text[0].upper() + text[1:] if text else text


def _stop_reply(where: str, result: StopResult) -> str:
    asked = len(result.commands)
    devices = len({c.device_id for c in result.commands})
    reply = (
        f"Stopping {where}: {asked} safe-direction command(s) to {devices} device(s) "
        "(pause prints, cool heaters, power off, lock doors), on their way now."
    )
    if result.refusals:
        names = ", ".join(sorted({r.device_name for r in result.refusals})[:6])
        reply += f" Not stopped: {names}; check them yourself."
    return reply


def _help(vocabulary: LabVocabulary) -> str:
    names = ", ".join(d.display_name for d in vocabulary.devices[:20]) or "no devices yet"
    return (
        "I run the lab's equipment and answer questions. Try \"dim the farm lights to 30 "
        'percent", "pause the Prusa" or "what do filament prices look like this week?". '
        f"Devices: {names}."
    )
