"""Re-evaluate a member's history after a late event, and book the differences.

A member's earning is a function of their accepted events taken in occurrence order
(occurred_at, then source, then event_id), each decided by the program version in force at
its occurred_at (the version stored as having applied it plays no part). An event earlier than the latest one the member
has had is applied as usual, and then the member's stored events are replayed in order in
memory (worker/services/fold.py). What each event earns there is what it should have
earned; every difference to what the member's ledger says is booked as a correcting entry
of the late event that names the event it corrects. Nothing in the ledger is updated or
deleted; spending, holds and expiry are facts of their moment and are not replayed.

The member's tier, rule state and profile are then those of the replay, and the per-order,
per-refund and per-review rows the handlers read are made equal to the replay's, so the next
event on the fast path sees exactly the state the replay would have given it. Each event's
recorded outcome (processed_events status and result, which the API and `member history
--all` show) is made the ledger's too: its net points after the corrections, and `applied`
for a refund or review the replay applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain import reevaluation, referrals
from worker.domain.engine import Award, rules_of
from worker.domain.program import Program
from worker.domain.program_timeline import ProgramTimeline, timeline_of
from worker.services.fold import History, Opening, RefereeFacts, opening_of, replay
from worker.store import accounts
from worker.store import decisions as store_decisions
from worker.store.accounts import Account, Origin

log = structlog.get_logger(__name__)

# A member's stored history, booked entries and referrals won, for any number of members in
# four statements (a group re-evaluates all its late members at once), with what imported
# members started with.
_HISTORY = text(
    """
    SELECT member_id, source, event_id, event_type, payload, status, result FROM processed_events
    WHERE member_id = ANY(:member_ids) AND event_type = ANY(:types)
    """
).bindparams(bindparam("types"), bindparam("member_ids"))
_ENTRIES = text(
    """
    SELECT e.member_id, e.source, e.event_id, e.kind, e.qualifying_points, e.rules, l.lot_id
    FROM ledger_entries e LEFT JOIN lots l ON l.entry_id = e.entry_id AND e.kind = 'earn'
    WHERE e.member_id = ANY(:member_ids) AND e.kind IN ('earn', 'reverse', 'transfer')
    ORDER BY e.entry_id
    """
).bindparams(bindparam("member_ids"))
# What imported members started with (worker/services/imports.py); none for the others.
# The openings of imported members: each member's own, then those of the members merged into it.
_OPENINGS = text(
    """
    SELECT coalesce(a.merged_into, i.member_id) AS member_id, a.merged_into IS NOT NULL AS absorbed, i.tier,
        i.qualifying_points, i.birthday, i.locale, i.labels
    FROM import_members i JOIN members a ON a.member_id = i.member_id
    WHERE i.member_id = ANY(:member_ids) OR a.merged_into = ANY(:member_ids)
    ORDER BY 1, 2, i.member_id
    """
).bindparams(bindparam("member_ids"))
# With each referral, what decides whether it pays (ledger.referee_is_new): the referee's own
# events before it, as they are stored now, so both halves of a referral replay alike; an
# imported referee purchased before (in the previous program).
_REFERRALS_WON = text(
    f"""
    SELECT m.id AS member_id, r.source, r.event_id, f.first_event_at, f.purchased_before
    FROM unnest(CAST(:member_ids AS text[])) AS m(id)
    JOIN referrals r ON r.referrer_member_id = m.id OR r.referee_member_id = m.id
    JOIN processed_events p ON p.source = r.source AND p.event_id = r.event_id
    CROSS JOIN LATERAL (
        SELECT min(e.occurred_at) AS first_event_at,
               coalesce(bool_or(e.event_type = 'purchase'), false)
               OR {accounts.imported("r.referee_member_id")} AS purchased_before
        FROM processed_events e
        WHERE e.member_id = r.referee_member_id AND e.occurred_at < p.occurred_at
          AND e.event_type = ANY(CAST(:enrolment_types AS text[]))
    ) f
    """
)


@dataclass(frozen=True)
class Replayed:
    """What a re-evaluation found and booked."""

    events: int
    corrected: int  # events whose points changed
    points: int  # net points booked
    seconds: float
    own_points: int = 0  # of which for the late event itself

    def as_json(self) -> dict:
        return {"events": self.events, "corrected_events": self.corrected, "points": self.points}


@dataclass
class Stored:
    """What a re-evaluation reads of one member: stored events, booked entries, referrals won."""

    events: list[Any] = field(default_factory=list)  # processed_events rows
    entries: list[dict] = field(default_factory=list)
    referrals_won: set[tuple[str, str]] = field(default_factory=set)
    # referral -> the referee's first event before it and whether one of them was a purchase
    referees: dict[tuple[str, str], RefereeFacts] = field(default_factory=dict)
    # An imported member's opening state, then those of imported members merged into it: the
    # replay starts from them (fold.opening_of).
    openings: list[Opening] = field(default_factory=list)


async def load(
    conn: AsyncConnection,
    member_ids: list[str],
    types: tuple[str, ...],
) -> dict[str, Stored]:
    """The members' stored histories, in four statements whatever their number."""
    found = {member_id: Stored() for member_id in member_ids}
    ids = {"member_ids": list(member_ids)}
    for row in await conn.execute(_HISTORY, {**ids, "types": list(types)}):
        found[row.member_id].events.append(row)
    for entry in (await conn.execute(_ENTRIES, ids)).mappings():
        found[entry["member_id"]].entries.append(dict(entry))
    for row in await conn.execute(_REFERRALS_WON, {**ids, "enrolment_types": list(referrals.ENROLMENT_TYPES)}):
        found[row.member_id].referrals_won.add((row.source, row.event_id))
        found[row.member_id].referees[(row.source, row.event_id)] = RefereeFacts(
            row.first_event_at, row.purchased_before
        )
    for row in await conn.execute(_OPENINGS, ids):
        found[row.member_id].openings.append(
            Opening(row.tier, row.qualifying_points, row.birthday, row.locale, frozenset(row.labels), row.absorbed)
        )
    return found


async def reevaluate(
    conn: AsyncConnection,
    programs: Program | ProgramTimeline,
    account: Account,
    late: Origin,
    *,
    types: tuple[str, ...],
    erased: bool,
    stored_event: Callable[[str, dict], Any],
    stored: Stored | None = None,
) -> Replayed | None:
    """Replay the member's history, each event with the version of `programs` in force at its
    occurred_at, and book what differs; None when it cannot be replayed (an event accepted
    before events were stored, or an erased member). `stored`: the member's history as `load`
    read it, after every event of the transaction was applied."""
    timeline = timeline_of(programs)
    program = timeline.at(late.occurred_at)
    started = time.perf_counter()
    if stored is None:
        stored = (await load(conn, [account.member_id], types))[account.member_id]
    rows = stored.events
    if erased or any(row.payload is None for row in rows):
        log.warning("replay_skipped", member_id=account.member_id, reason="erased" if erased else "history_not_stored")
        return None
    applied = sorted(((stored_event(r.event_type, r.payload), r) for r in rows), key=lambda p: _order(p[0]))
    history = [event for event, _ in applied]
    deciding = [timeline.at(event.occurred_at) for event in history]
    won = stored.referrals_won
    shadow = replay(
        program,
        account,
        events=history,
        programs=deciding,
        referrals_won=won,
        referees=stored.referees,
        opening=opening_of(stored.openings, program),
    )

    booked_entries = stored.entries
    booked = reevaluation.points_by_event(booked_entries)
    order = [(e.source, e.event_id) for e in history]
    in_history = set(order)  # once: a set per booked key made a long history's replay quadratic
    order += [key for key in booked if key not in in_history]
    found = reevaluation.corrections(shadow.points, booked, order)
    by_key = {(e.source, e.event_id): e for e in history}
    lots = {(r["source"], r["event_id"]): r["lot_id"] for r in booked_entries if r["lot_id"] is not None}
    net = 0
    own = sum(c.points for c in found if c.key == (late.source, late.event_id))
    for correction in found:
        event = by_key.get(correction.key)
        deciding_program = program if event is None else timeline.at(event.occurred_at)
        net += await _book(conn, deciding_program, account, late, correction, event, lots.get(correction.key))
    # Most late events change nothing: the fast path already gave the replay's points and
    # state. The per-order and per-review rows then agree too (a different order row or review
    # would have earned differently), so there is nothing to write back.
    unchanged = (
        not found
        and shadow.tier == account.tier
        and shadow.rule_state == account.rule_state
        and shadow.qualifying_amount == account.qualifying_amount
        and all(account.profile.get(key) == value for key, value in shadow.profile.items())
    )
    if not unchanged:
        await _adopt(conn, program, account, late, shadow)
    await _record_outcomes(conn, late, shadow, applied)
    if net:
        accounts.notify(
            account,
            "points_adjusted",
            late,
            dedupe_key=f"points_adjusted:{account.member_id}:{late.source}:{late.event_id}",
            points=f"{net:+d}",
            available_points=account.available,
            late_event_id=late.event_id,
        )
    replayed = Replayed(len(history), len(found), net, time.perf_counter() - started, own)
    log.info(
        "member_re_evaluated",
        member_id=account.member_id,
        late_event_id=late.event_id,
        **replayed.as_json(),
        ms=round(replayed.seconds * 1000, 1),
    )
    return replayed


def _order(event: Any) -> reevaluation.OrderKey:
    return reevaluation.order_key(event.occurred_at, event.source, event.event_id)


async def _book(
    conn,
    program: Program,
    account: Account,
    late: Origin,
    correction: reevaluation.Correction,
    event: Any,
    own_lot_id: int | None,
) -> int:
    """One earn entry for what the event gains, one reversal for what it loses; both are
    entries of the late event, dated at the corrected event so its lots expire as its own
    (`program`: the version deciding the corrected event)."""
    source, event_id = correction.key
    event_type = event.type if event is not None else "event"
    occurred_at = event.occurred_at if event is not None else late.occurred_at
    origin = Origin(late.source, late.event_id, event_type, occurred_at)
    note = reevaluation.correction_note(event_type, event_id, late.event_type, late.event_id, correction.points)
    corrects = {"source": source, "event_id": event_id, "event_type": event_type}
    # A refund's reversal moves no lifetime points, and neither does a correction of one.
    refund = all(rule == "refund" for rule, _ in (*correction.add, *correction.take))
    if correction.add:
        pending = (
            program.pending.days > 0
            and event_type == "purchase"
            and occurred_at + timedelta(days=program.pending.days) > datetime.now(UTC)
        )
        awards = tuple(Award(rule, points, {"corrects": corrects, "note": note}) for rule, points in correction.add)
        await accounts.earn(conn, program, account, origin, awards, pending=pending, lifetime=not refund)
    if correction.take:
        items = [
            {"rule": rule, "points": points, "corrects": corrects, "note": note} for rule, points in correction.take
        ]
        await accounts.reverse(
            conn,
            account,
            origin,
            -sum(p for _, p in correction.take),
            own_lot_id=own_lot_id,
            rules=items,
            correction=not refund,
        )
    return correction.points


async def _record_outcomes(conn, late: Origin, shadow: History, applied: list[tuple[Any, Any]]) -> None:
    """Each replayed event's processed_events outcome made the ledger's (now that the
    corrections are booked, what the replay gave it): a refund or review the replay applied
    reads applied with its points, an event whose points were corrected reads its net. The
    late event itself is recorded by its own close, with its re-evaluation."""
    waiting = {(r["source"], r["event_id"]) for r in (*shadow.refunds, *shadow.reviews) if r["status"] == "waiting"}
    recorded = [
        reevaluation.Recorded(
            (row.source, row.event_id), (event.source, event.event_id), row.event_type, row.status, row.result
        )
        for event, row in applied
        if (event.source, event.event_id) != (late.source, late.event_id)
    ]
    await accounts.record_outcomes(conn, reevaluation.outcome_updates(recorded, shadow.points, waiting))


async def _adopt(conn, program: Program, account: Account, late: Origin, shadow: History) -> None:
    """The member's tier, rule state, profile and per-order rows as the replay left them."""
    member_id = account.member_id
    account.rule_state = shadow.rule_state
    account.profile.update(shadow.profile)
    # Money spent less refunded, as the orders say once the replay's refunds are in them.
    account.qualifying_amount = shadow.qualifying_amount
    tier = shadow.tier
    # A tier review moves the qualifying baseline; a member reviewed keeps the reviewed tier
    # (upgrades still apply when the account closes), see docs/reliability.md. A tier the
    # account's close would reach anyway is left to it (an upgrade, with its notification).
    reviewed = account.baseline or account.amount_baseline
    if tier not in (account.tier, accounts.next_tier(program, account, late)) and not reviewed:
        await accounts.change_tier(conn, rules_of(program), account, tier, "re-evaluation", late)
    await store_decisions.adopt_rows(conn, member_id, shadow.orders, shadow.reviews, shadow.refunds)
