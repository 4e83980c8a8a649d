"""Answering a state question from the lab's records, locally, with no model.

``StateAnswers.question`` decides whether a turn is a state question (an ``ask`` reading,
one of the read intents ``sensor_read``, ``printer_status``, ``camera_snapshot``, or a
device reading of a sentence shaped as a question, "is the CNC door open", which a model
or a fuzzy match may have taken for a request: answering it acts on nothing);
``StateAnswers.answer`` answers it:

1. **Who may read.** A device the caller may not read (``access.read_refusal``) is
   refused by name, or left out of a group with a note; nothing of its state is said.
2. **Stale readings.** A printer, sensor or camera whose newest state is older than its
   reporting interval (plus a grace) is asked for a fresh one through the ordinary
   command path (``CommandSubmitter``, the read intent, in its own short unit of work, so
   the dispatch job is deferred on commit). The answer then waits, polling the records,
   up to ``fresh_read_wait_seconds`` and answers with what it has, saying when a reading
   did not come in time.
3. **Words.** ``wording`` puts the facts into a reply with their age.

No transaction stays open while waiting: each read and each poll is its own short unit of
work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import select

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, DeviceCommand
from kittylab.conversation.answers import reading, wording
from kittylab.conversation.answers.access import READ_INTENTS, read_refusal
from kittylab.conversation.answers.facts import Answer, DeviceFact, Image, SnapshotFact
from kittylab.conversation.answers.questions import (
    DEVICE_KINDS,
    AnswerKind,
    Person,
    StateQuestion,
    asks_about_state,
    recognize,
)
from kittylab.conversation.ports import CommandSubmitter
from kittylab.conversation.understanding.context import ConversationContext
from kittylab.conversation.understanding.types import ASK, AskKind, Understanding
from kittylab.conversation.understanding.vocabulary import DeviceEntry, LabVocabulary
from kittylab.devices.requests import Requested
from kittylab.devices.telemetry import latest_state
from kittylab.domain.enums import CommandStatus, DeviceKind
from kittylab.domain.errors import KittyLabError
from kittylab.domain.principal import Principal
from kittylab.monitoring.camera_pictures import CameraPictures

READ_INTENT_NAMES = frozenset(READ_INTENTS.values())
PEOPLE_TTL_SECONDS = 5.0
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class AnswerPolicy:
    """The answer settings the service needs (``config.AnswerSettings`` and the report
    intervals of the integrations)."""

    fresh_read_wait_seconds: float
    stale_grace_seconds: float
    intervals: reading.ReportIntervals
    presence_ttl: timedelta


@dataclass
class Answered:
    answer: Answer
    command: DeviceCommand | None = None
    """The fresh read asked for, when there was exactly one."""


class StateAnswers:
    def __init__(
        self,
        *,
        database: Database,
        submitter: CommandSubmitter,
        clock: Callable[[], datetime],
        policy: AnswerPolicy,
        sleep: Callable[[float], None] = time.sleep,
        pictures: CameraPictures | None = None,
    ) -> None:
        self.pictures = pictures
        """Takes a camera's picture now for "show me the laser camera" (issue 16)."""
        self.database = database
        self.submitter = submitter
        self.clock = clock
        self.policy = policy
        self._sleep = sleep
        self._people_lock = threading.Lock()
        self._people: tuple[float, list[Person]] | None = None

    # -- is it a state question? -------------------------------------------------------

    def question(
        self,
        text: str,
        understanding: Understanding,
        vocabulary: LabVocabulary,
        context: ConversationContext,
    ) -> StateQuestion | None:
        u = understanding
        if u.intent == ASK:
            if u.ask_kind is AskKind.HELP:
                return None  # greetings, help, and what tries to talk the lab out of its rules
        elif u.intent not in READ_INTENT_NAMES and not asks_about_state(text):
            return None  # a request to act is never read as a question
        found = recognize(
            text,
            vocabulary,
            self._known_people(),
            context_device=context.device,
            context_zone=context.zone,
        )
        if u.intent == ASK:
            return found
        # A read intent: the grammar's device is the one asked about.
        if u.device is None:
            return found if found is not None and found.devices else None
        if found is not None and u.device in found.devices:
            return replace(found, devices=(u.device,), zone=u.device.zone)
        return _question_about(u.device, found)

    def _known_people(self) -> list[Person]:
        now = time.monotonic()
        with self._people_lock:
            if self._people is not None and now - self._people[0] < PEOPLE_TTL_SECONDS:
                return self._people[1]
        with self.database.unit_of_work() as session:
            found = reading.people(session)
        with self._people_lock:
            self._people = (now, found)
        return found

    # -- the answer ----------------------------------------------------------------------

    def answer(
        self,
        caller: Principal,
        question: StateQuestion,
        *,
        conversation_id: UUID,
        request_id: UUID,
    ) -> Answered:
        kind = question.kind
        if kind in DEVICE_KINDS:
            return self._about_devices(caller, question, conversation_id, request_id)
        with self.database.unit_of_work() as session:
            now = self.clock()
            owner = _owner(caller, question)
            scope = _scope(question, owner)
            ids = [d.external_id for d in question.devices]
            if kind is AnswerKind.LOCK_HOLDERS:
                held = reading.held_locks(
                    session, device_external_ids=ids, zone=question.zone, owner_id=owner
                )
                text, values = wording.locks(held, scope, now)
            elif kind is AnswerKind.PRESENCE:
                rooms = reading.presence(session, question.zone, now, self.policy.presence_ttl)
                name = question.person.display_name if question.person else None
                text, values = wording.presence(rooms, name)
            elif kind is AnswerKind.PRINT_QUEUE:
                jobs = reading.queued_jobs(
                    session, printers=ids, zone=question.zone, owner_id=owner
                )
                text, values = wording.queue(jobs, scope, now)
            elif kind is AnswerKind.LAST_JOB:
                job = reading.last_finished_job(
                    session, printers=ids, zone=question.zone, owner_id=owner
                )
                text, values = wording.last_job(job, scope, now)
            else:
                items = reading.pending_approvals(
                    session, caller, zone=question.zone, device_external_ids=ids, now=now
                )
                where = (
                    wording.the(question.devices[0].display_name)
                    if question.devices
                    else (wording.zone_words(question.zone) if question.zone else None)
                )
                text, values = wording.approvals(items, where, now)
        return Answered(Answer(kind.value, text, devices=ids, zone=question.zone, values=values))

    def _about_devices(
        self, caller: Principal, question: StateQuestion, conversation_id: UUID, request_id: UUID
    ) -> Answered:
        ids = [d.external_id for d in question.devices]
        with self.database.unit_of_work() as session:
            attributes = reading.device_attributes(session, ids)
        allowed: list[DeviceEntry] = []
        refusals: list[str] = []
        for device in question.devices:
            why = read_refusal(caller, device.kind, attributes.get(device.external_id, {}))
            if why is None:
                allowed.append(device)
            else:
                refusals.append(f"{wording.the(device.display_name)} ({why})")
        if not allowed:
            reply = (
                f"I can't tell you about {wording.join(refusals)}. Nothing was read."
                if refusals
                else "That device is no longer part of the lab."
            )
            return Answered(
                Answer(question.kind.value, reply, devices=ids, zone=question.zone, refused=True)
            )
        facts, commands = self._fresh(caller, allowed, conversation_id, request_id)
        now = self.clock()
        images: list[Image] = []
        if question.kind is AnswerKind.CAMERA and facts:
            text, values, images = self._cameras(facts, now)
        else:
            text, values = self._words(question, facts, now)
        if refusals:
            text += f" Left out, as you may not read them: {wording.join(refusals)}."
        answer = Answer(
            question.kind.value,
            text,
            devices=[f.external_id for f in facts],
            zone=question.zone,
            values=values,
            fresh_reads=[c.id for c in commands],
            images=images,
        )
        return Answered(answer, commands[0] if len(commands) == 1 else None)

    def _words(
        self, question: StateQuestion, facts: Sequence[DeviceFact], now: datetime
    ) -> tuple[str, wording.Values]:
        kind = question.kind
        if not facts:
            return "That device is no longer part of the lab.", {}
        if kind is AnswerKind.SENSOR_READING:
            return wording.sensors(facts, question.aspects, now)
        if kind is AnswerKind.PRINTER_STATUS:
            return wording.printers(facts, question.aspects, now)
        if kind is AnswerKind.DOOR_STATE:
            return wording.doors(facts, now)
        return wording.switches(facts, now)

    def _cameras(
        self, facts: Sequence[DeviceFact], now: datetime
    ) -> tuple[str, wording.Values, list[Image]]:
        """Each camera's picture taken now and kept as an artifact (``pictures``), else
        the newest snapshot on record; the images this server serves, for the client."""
        shots: list[tuple[DeviceFact, SnapshotFact | None]] = []
        for fact in facts:
            picture = self.pictures.take(fact.id, fact.external_id) if self.pictures else None
            if picture is not None and picture.url is not None:
                shots.append((fact, SnapshotFact(picture.url, picture.taken_at, wording.TAKEN_NOW)))
                continue
            if picture is not None and picture.unavailable and fact.note is None:
                fact = replace(fact, note=f"no picture now: {picture.unavailable}")
            with self.database.unit_of_work() as session:
                shots.append((fact, reading.latest_snapshot(session, fact)))
        texts = [wording.camera(f, shot, now) for f, shot in shots]
        images = [
            Image(shot.link, fact.external_id, shot.taken_at)
            for fact, shot in shots
            if shot is not None and shot.link.startswith("/api/")
        ]
        if len(texts) == 1:
            text, values = texts[0]
        else:
            text = " ".join(t for t, _ in texts)
            values = {f.external_id: v for (f, _), (_, v) in zip(shots, texts, strict=True)}
        return text, values, images

    # -- fresh readings ----------------------------------------------------------------

    def _stale(self, fact: DeviceFact, now: datetime) -> bool:
        intent = READ_INTENTS.get(DeviceKind(fact.kind))
        if intent is None or intent not in fact.capabilities:
            return False
        age = fact.age_seconds(now)
        return age is None or age > fact.interval_seconds + self.policy.stale_grace_seconds

    def _fresh(
        self,
        caller: Principal,
        devices: Sequence[DeviceEntry],
        conversation_id: UUID,
        request_id: UUID,
    ) -> tuple[list[DeviceFact], list[DeviceCommand]]:
        """The devices' facts, after asking the stale ones for a fresh reading and waiting
        for it (bounded)."""
        ids = [d.external_id for d in devices]
        with self.database.unit_of_work() as session:
            facts = reading.device_facts(session, ids, self.policy.intervals)
        now = self.clock()
        stale = [f for f in facts if self._stale(f, now)]
        if not stale or self.policy.fresh_read_wait_seconds <= 0:
            return facts, []
        commands: dict[str, DeviceCommand] = {}
        notes: dict[str, str] = {}
        for fact in stale:
            try:
                with self.database.unit_of_work() as session:
                    device = session.scalar(select(Device).where(Device.id == fact.id))
                    if device is None:
                        continue
                    requested = self.submitter.submit(
                        session,
                        device=device,
                        intent=READ_INTENTS[DeviceKind(fact.kind)],
                        payload={},
                        requester=caller,
                        conversation_id=conversation_id,
                        correlation_id=f"{request_id}:{fact.external_id}",
                    )
                    if isinstance(requested, Requested):  # a read is never a print job
                        commands[fact.external_id] = requested.command
            except KittyLabError as refusal:
                notes[fact.external_id] = f"a fresh reading was refused: {refusal}"
        waited = self._wait(stale, commands)
        with self.database.unit_of_work() as session:
            fresh = {
                f.external_id: f for f in reading.device_facts(session, ids, self.policy.intervals)
            }
            final = {
                external_id: session.get(DeviceCommand, command.id) or command
                for external_id, command in commands.items()
            }
        bound = f"{self.policy.fresh_read_wait_seconds:g} s"
        out = []
        for fact in facts:
            now_fact = fresh.get(fact.external_id, fact)
            if fact.external_id in notes:
                now_fact = replace(now_fact, note=notes[fact.external_id])
            elif fact.external_id in commands and fact.external_id not in waited:
                command = final[fact.external_id]
                if command.status is CommandStatus.FAILED:
                    why = command.failure_reason or "the device did not answer"
                    now_fact = replace(now_fact, note=f"a fresh reading failed: {why}")
                else:
                    now_fact = replace(
                        now_fact,
                        note=f"a fresh reading is asked for but did not come within {bound}",
                    )
            out.append(now_fact)
        return out, list(final.values())

    def _wait(self, stale: Sequence[DeviceFact], commands: dict[str, DeviceCommand]) -> set[str]:
        """Poll until each asked device has reported after it was asked (or its command
        ended), for at most the bound; the external ids that did report."""
        deadline = time.monotonic() + self.policy.fresh_read_wait_seconds
        before = {f.external_id: f.reported_at for f in stale}
        waiting = {f.external_id: f.id for f in stale if f.external_id in commands}
        done: set[str] = set()
        while waiting and time.monotonic() < deadline:
            self._sleep(POLL_SECONDS)
            with self.database.unit_of_work() as session:
                for external_id, device_id in list(waiting.items()):
                    event = latest_state(session, device_id)
                    seen = before[external_id]
                    if event is not None and (seen is None or event.recorded_at > seen):
                        done.add(external_id)
                        del waiting[external_id]
                        continue
                    status = session.scalar(
                        select(DeviceCommand.status).where(
                            DeviceCommand.id == commands[external_id].id
                        )
                    )
                    if status is CommandStatus.FAILED:
                        del waiting[external_id]
        return done


def _question_about(device: DeviceEntry, found: StateQuestion | None) -> StateQuestion:
    kind = {v: k for k, v in DEVICE_KINDS.items()}[device.kind]
    aspects = found.aspects if found is not None and found.kind is kind else frozenset()
    return StateQuestion(
        kind, devices=(device,), zone=device.zone, aspects=aspects, named_devices=True
    )


def _owner(caller: Principal, question: StateQuestion) -> UUID | None:
    if question.person is not None:
        return question.person.user_id
    return caller.user_id if question.about_asker else None


def _scope(question: StateQuestion, owner: UUID | None) -> str:
    if question.devices:
        return wording.join([wording.the(d.display_name) for d in question.devices])
    if owner is not None:
        return question.person.display_name if question.person else "you"
    return wording.zone_words(question.zone)
