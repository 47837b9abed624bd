"""From a raw queued event to a final outcome: applied, duplicate, deferred or rejected.

Nothing is lost: input that fails validation is stored in rejected_events with the reason
and the raw text; everything else is applied in one transaction per member.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worker import metrics
from worker.domain.errors import InvalidEvent, MemberMerged
from worker.domain.events import (
    EVENT_BYTES_MAX,
    check_against_program,
    check_size,
    decode_event,
    event_size_bytes,
    parse_event,
    safe_text,
)
from worker.domain.program import Program
from worker.domain.program_timeline import ProgramTimeline, timeline_of
from worker.services import audit, group_apply, group_each, identities
from worker.services.erasure import ERASED_RAW
from worker.services.group_apply import Applied
from worker.services.ledger import (
    RefereeBonus,
    ReferrerCheck,
    Result,
    apply_event,
    check_due,
    checks_due,
    follow_ups,
    referral_checks,
)

# A batch message is one POS end-of-day upload or one backfill page; larger ones are split
# by the producer (`loyalty publish --batch`).
BATCH_EVENTS_MAX = 1000
# A batch message's encoded size limit: 1,000 ordinary events take well under 1 MB, and a
# worker holds the whole message in memory while it applies it.
BATCH_BYTES_MAX = 4 * 1024 * 1024


def batch_problem(raws: Any) -> str | None:
    """Why a batch message is refused whole, or None."""
    if not isinstance(raws, list):
        return "batch: must be a JSON array of events"
    if len(raws) > BATCH_EVENTS_MAX:
        return f"batch: {len(raws)} events is over the limit of {BATCH_EVENTS_MAX}"
    size = event_size_bytes(raws)
    if size > BATCH_BYTES_MAX:
        return f"batch: {size} bytes is over the limit of {BATCH_BYTES_MAX} bytes"
    return None


# Members whose shares of a batch commit in one transaction: each member's share is still
# all-or-nothing, and a BEGIN/COMMIT (with its WAL flush) is paid per group, not per member.
# Small enough to keep locks short; members are locked in sorted order so that concurrent
# batches cannot deadlock on each other.
BATCH_MEMBERS_PER_TRANSACTION = 50

_RECORD_REJECTED = text(
    """
    INSERT INTO rejected_events AS r (raw_hash, source, event_id, member_id, event_type, reason, raw)
    VALUES (
        :raw_hash, :source, :event_id, :member_id, :event_type, :reason,
        -- An erased member's data is not taken in again with a refused event of theirs.
        CASE WHEN EXISTS (SELECT 1 FROM members WHERE member_id = :member_id AND erased_at IS NOT NULL)
             THEN :erased_raw ELSE :raw END
    )
    ON CONFLICT (raw_hash) DO UPDATE SET
        attempts = r.attempts + 1, last_seen_at = now(), reason = EXCLUDED.reason, status = 'open'
    RETURNING rejected_id
    """
)
# How much of a rejected message's raw text is kept: a whole valid event always fits.
RAW_STORED_MAX = EVENT_BYTES_MAX
_SAFE_TEXT = re.compile(r"^[\x20-\x7e]{1,128}$")
# SQLSTATE class 22 (data exception) and check violations: the event's values, not the
# database, are at fault, and a retry would fail the same way.
_DATA_SQLSTATE_CLASS = "22"
_CHECK_VIOLATION = "23514"


def data_error_reason(error: BaseException) -> str | None:
    """The rejection reason for a database error caused by an event's values, or None for an
    outage (connection lost, serialization failure, deadlock), which is retried. The reason
    names the error's code only: the driver's message may quote the value."""
    if not isinstance(error, DBAPIError):
        return None
    code = str(getattr(error.orig, "sqlstate", "") or "")
    if not (code.startswith(_DATA_SQLSTATE_CLASS) or code == _CHECK_VIOLATION):
        return None
    cause = type(getattr(error.orig, "__cause__", None) or error.orig).__name__
    return f"event: a value was refused by the database (SQLSTATE {code}, {cause})"


@dataclass(frozen=True)
class Outcome:
    status: str  # applied | duplicate | deferred | rejected
    member_id: str | None = None
    event_type: str | None = None
    source: str | None = None
    points: int = 0
    reason: str | None = None
    note: str | None = None
    detail: dict = field(default_factory=dict)


def raw_text(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    if isinstance(raw, str):
        return raw
    return json.dumps(raw, ensure_ascii=True, separators=(",", ":"), default=str)


def _stored_raw(body: str) -> str:
    """The raw text as kept in rejected_events: cut at RAW_STORED_MAX characters, since a
    hostile producer can send megabytes and the reason already says what was wrong."""
    if len(body) <= RAW_STORED_MAX:
        return body
    return f"{body[:RAW_STORED_MAX]}...[{len(body) - RAW_STORED_MAX} more characters not kept]"


def _label(raw: Any, key: str) -> str | None:
    """A field of an invalid event, kept for listing only when it is plain printable text."""
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, str) and _SAFE_TEXT.match(value) else None


async def record_rejected(engine: AsyncEngine, raw: Any, reason: str) -> int:
    body = raw_text(raw)
    async with engine.begin() as conn:
        return (
            await conn.execute(
                _RECORD_REJECTED,
                {
                    "raw_hash": hashlib.sha256(body.encode()).hexdigest(),
                    "source": _label(raw, "source"),
                    "event_id": _label(raw, "event_id"),
                    "member_id": _label(raw, "member_id"),
                    "event_type": _label(raw, "type"),
                    "reason": safe_text(str(reason)),
                    # PostgreSQL text cannot hold NUL; the JSON encoding above escapes it.
                    "raw": _stored_raw(body.replace("\x00", "\\u0000")),
                    "erased_raw": ERASED_RAW,
                },
            )
        ).scalar_one()


def validate(raw: Any, programs: Program | ProgramTimeline, now: datetime) -> Any:
    """The validated event, or InvalidEvent with a reason naming the field. Its currency,
    amount and activity kind are checked against the version that decides it: the one in
    force at its occurred_at."""
    if isinstance(raw, (str, bytes)):
        event = decode_event(raw)
    else:
        check_size(raw)
        event = parse_event(raw)
    check_against_program(event, timeline_of(programs).at(event.occurred_at), now)
    return event


def _outcome(event: Any, result: Result) -> Outcome:
    return Outcome(
        result.status, result.member_id, event.type, event.source, result.points, note=result.note, detail=result.detail
    )


def count_committed(event: Any, result: Result) -> None:
    """The metrics of a committed event: what it wrote and how late it was applied."""
    if result.status in ("applied", "deferred"):
        _count_written(result)
        metrics.observe_lag(event.type, event.occurred_at)


def _count_written(result: Result) -> None:
    """Bump the ledger and tier metrics for what a committed event wrote."""
    by_kind: dict[str, list[int]] = {}
    for kind, points in result.movements:
        totals = by_kind.setdefault(kind, [0, 0])
        totals[0] += points
        totals[1] += 1
    metrics.count_ledger((kind, points, entries) for kind, (points, entries) in by_kind.items())
    metrics.count_tier_changes(result.tier_moves)


# A merge committing between an event's resolution and its ledger transaction sends it round
# once more; each round follows one more merge of its member.
MERGED_ROUNDS_MAX = 5


async def _apply_one(engine: AsyncEngine, programs: ProgramTimeline, event: Any, strict: bool) -> Result:
    """Resolve the event to its member (identity, merges) and apply it, in one transaction."""
    for _ in range(MERGED_ROUNDS_MAX):
        try:
            async with engine.begin() as conn:
                event = (await identities.resolve_many(conn, programs, [event]))[0]
                result = await apply_event(conn, programs, event)
                if strict and result.status in ("applied", "deferred"):
                    await audit.assert_member_consistent(conn, result.member_id)
            break
        except MemberMerged as merged:
            event = identities.land_on(event, merged.survivor_id)
    else:
        raise MemberMerged(event.member_id, event.member_id)
    count_committed(event, result)
    return result


# How one validated event reaches the ledger: by default a transaction of its own; a worker
# passes its GroupCommit's `apply`, which commits the events in flight together. Either way
# the result is returned after COMMIT, and a refusal raises InvalidEvent (or a data error).
# The event is decided by the version of the timeline in force at its occurred_at.
Apply = Callable[[ProgramTimeline, Any], Awaitable[Result]]


def own_transaction(engine: AsyncEngine, strict: bool) -> Apply:
    """The Apply that gives each event a transaction of its own."""

    def apply(programs: ProgramTimeline, event: Any) -> Awaitable[Result]:
        return _apply_one(engine, programs, event, strict)

    return apply


def refusal(error: BaseException) -> str | None:
    """Why the ledger refused an event for its data (never retried), or None for an outage."""
    if isinstance(error, InvalidEvent):
        return error.reason
    return data_error_reason(error)


def _conflict_reason(event: Any) -> str:
    return f"event_id: {event.event_id!r} from source {event.source!r} was already used with a different payload"


async def process(
    engine: AsyncEngine,
    programs: Program | ProgramTimeline,
    raw: Any,
    *,
    now: datetime,
    strict: bool = False,
    apply: Apply | None = None,
) -> Outcome:
    """Apply one raw event; every path ends in exactly one recorded outcome. The event (and
    what follows from it) is decided by the version in force at its occurred_at; a single
    program decides everything."""
    timeline = timeline_of(programs)
    outcome = await _process(engine, timeline, raw, now=now, apply=apply or own_transaction(engine, strict))
    metrics.count_outcome(outcome.event_type, outcome.source, outcome.status)
    return outcome


async def _reject(engine: AsyncEngine, raw: Any, reason: str, event: Any = None) -> Outcome:
    await record_rejected(engine, raw, reason)
    if event is None:
        return Outcome(
            "rejected", _label(raw, "member_id"), _label(raw, "type"), _label(raw, "source"), reason=safe_text(reason)
        )
    return Outcome("rejected", event.member_id, event.type, event.source, reason=safe_text(reason))


async def _process(engine: AsyncEngine, programs: ProgramTimeline, raw: Any, *, now: datetime, apply: Apply) -> Outcome:
    try:
        event = validate(raw, programs, now)
    except InvalidEvent as error:
        return await _reject(engine, raw, error.reason)
    try:
        result = await apply(programs, event)
    except (InvalidEvent, DBAPIError) as error:
        if (reason := refusal(error)) is None:
            raise
        return await _reject(engine, raw, reason, event)
    if result.member_id != event.member_id:  # named by an identity, or merged: where it landed
        event = identities.landed(event, result.member_id)
    if result.status == "conflict":
        return await _reject(engine, raw, _conflict_reason(event), event)
    await _apply_follow_ups(engine, programs, raw, follow_ups(event), apply)
    await _apply_follow_ups(engine, programs, raw, await _referral_checks(engine, result), apply)
    return _outcome(event, result)


async def _referral_checks(engine: AsyncEngine, result: Result) -> list:
    """The referrer checks a late event asks for (ledger.referral_checks); a duplicate asks too,
    since it may be the redelivery of a late event whose checks were not applied before a crash."""
    if result.status != "duplicate" and "re_evaluated" not in result.detail:
        return []
    async with engine.connect() as conn:
        return await referral_checks(conn, result.member_id)


def _member_groups(events: list[tuple[int, Any]]) -> list[list[tuple[str, list[tuple[int, Any]]]]]:
    """A batch's (index, event) pairs as the groups it applies: members in id order,
    BATCH_MEMBERS_PER_TRANSACTION to a group, each member's events in occurrence order (so a
    batch by itself never makes a late event)."""
    by_member: dict[str, list[tuple[int, Any]]] = {}
    for index, event in events:
        by_member.setdefault(event.member_id, []).append((index, event))
    for items in by_member.values():
        items.sort(key=lambda item: (item[1].occurred_at, item[1].source, item[1].event_id))
    member_ids = sorted(by_member)
    return [
        [(m, by_member[m]) for m in member_ids[start : start + BATCH_MEMBERS_PER_TRANSACTION]]
        for start in range(0, len(member_ids), BATCH_MEMBERS_PER_TRANSACTION)
    ]


async def _apply_batch_follow_ups(
    engine: AsyncEngine, programs: ProgramTimeline, effects: list[tuple[Any, list]], strict: bool
) -> None:
    """A batch's follow-ups as `_apply_follow_ups` applies each event's, with a fixed number of
    statements: the referee bonuses in groups of members (each after the batch's own groups
    committed), then the referrer checks, which are asked whether they are due all at once and
    applied (rarely) one by one."""
    bonuses = [(raw, e) for raw, follow in effects for e in follow if isinstance(e, RefereeBonus)]
    checks = [(raw, e) for raw, follow in effects for e in follow if isinstance(e, ReferrerCheck)]
    if bonuses:
        async with engine.begin() as conn:
            resolved = await identities.resolve_many(conn, programs, [bonus for _, bonus in bonuses])
        async with engine.connect() as conn:
            for group in _member_groups(list(enumerate(resolved))):
                for applied in await apply_group(conn, programs, group, strict):
                    if applied.result is None:
                        raw = bonuses[applied.index][0]
                        await record_rejected(engine, raw, f"{applied.event.type}: {applied.reason}")
                    else:
                        count_committed(applied.event, applied.result)
    if checks:
        async with engine.connect() as conn:
            due = await checks_due(conn, programs, [check for _, check in checks])
        apply = own_transaction(engine, strict)
        for (raw, check), is_due in zip(checks, due, strict=True):
            if is_due:
                await _apply_follow_ups(engine, programs, raw, [check], apply, checked=True)


async def _apply_follow_ups(
    engine: AsyncEngine, programs: ProgramTimeline, raw: Any, effects: list, apply: Apply, *, checked: bool = False
) -> None:
    """Apply an event's follow-ups in order, each in its own transaction (`checked`: the
    referrer checks among them are known to be due)."""
    for effect in effects:
        if isinstance(effect, ReferrerCheck) and not checked:  # decided after the effects before it are committed
            async with engine.connect() as conn:
                if not await check_due(conn, programs.at(effect.occurred_at), effect):
                    continue
        try:
            await apply(programs, effect)
        except (InvalidEvent, DBAPIError) as error:
            if (reason := refusal(error)) is None:
                raise
            await record_rejected(engine, raw, f"{effect.type}: {reason}")


async def apply_group(
    conn: AsyncConnection, programs: Program | ProgramTimeline, shares: list[tuple[str, list]], strict: bool
) -> list[Applied]:
    """One transaction for a group of members, each event decided by the version in force at
    its occurred_at. The fast path applies them with a handful of statements (group_apply.py);
    if the ledger refuses one event, the group is rolled back and applied again with a
    savepoint per event, so one bad event never blocks the others (and is the only one
    rejected)."""
    timeline = timeline_of(programs)
    try:
        async with conn.begin():
            if group_apply.can_apply(shares):
                return await group_apply.apply_group(conn, timeline, shares, strict)
            return await group_each.apply_in_order(conn, timeline, shares, strict)
    except (InvalidEvent, DBAPIError) as error:
        if refusal(error) is None:
            raise
    async with conn.begin():
        return await group_each.apply_in_order(conn, timeline, shares, strict, refusal=refusal)


async def process_batch(
    engine: AsyncEngine,
    programs: Program | ProgramTimeline,
    raws: Iterable[Any],
    *,
    now: datetime,
    strict: bool = False,
) -> list[Outcome]:
    """Apply up to BATCH_EVENTS_MAX events, each member's in occurrence order and each decided
    by the version in force at its occurred_at; members commit in transactions of up to
    BATCH_MEMBERS_PER_TRANSACTION, each member's share all-or-nothing except for events the
    ledger refuses, which end rejected on their own."""
    timeline = timeline_of(programs)
    raws = list(raws)
    if len(raws) > BATCH_EVENTS_MAX:
        raise InvalidEvent(f"batch: {len(raws)} events is over the limit of {BATCH_EVENTS_MAX}")
    outcomes: list[Outcome | None] = [None] * len(raws)
    valid: list[tuple[int, Any]] = []
    resolved_events: list[tuple[int, Any]] = []
    for index, raw in enumerate(raws):
        try:
            valid.append((index, validate(raw, timeline, now)))
        except InvalidEvent as error:
            outcomes[index] = await _reject(engine, raw, error.reason)
    # Identities and merges resolved in one short transaction of their own: a new identity is
    # recorded (and its member enrolled) even if the member's share then waits for a retry.
    if valid:
        async with engine.begin() as conn:
            resolved = await identities.resolve_many(conn, timeline, [event for _, event in valid])
        resolved_events = [(index, event) for (index, _), event in zip(valid, resolved, strict=True)]
    effects = []
    settled: list[tuple[Any, Result]] = []  # for the referrer checks, once the batch's connection is back
    refused: list[tuple[int, Any, str]] = []
    # One connection for the whole batch (no checkout per member), one transaction per group.
    async with engine.connect() as conn:
        for group in _member_groups(resolved_events):
            for applied in await apply_group(conn, timeline, group, strict):
                result, event = applied.result, applied.event
                if result is None:
                    refused.append((applied.index, event, applied.reason or ""))
                    continue
                count_committed(event, result)  # after commit: metrics count what is durable
                if result.status == "conflict":
                    refused.append((applied.index, event, _conflict_reason(event)))
                else:
                    outcomes[applied.index] = _outcome(event, result)
                    effects.append((raws[applied.index], follow_ups(event)))
                    settled.append((raws[applied.index], result))
    for index, event, reason in refused:
        outcomes[index] = await _reject(engine, raws[index], reason, event)
    for raw, result in settled:
        effects.append((raw, await _referral_checks(engine, result)))
    await _apply_batch_follow_ups(engine, timeline, effects, strict)
    final = [o for o in outcomes if o is not None]
    for outcome in final:
        metrics.count_outcome(outcome.event_type, outcome.source, outcome.status)
    return final
