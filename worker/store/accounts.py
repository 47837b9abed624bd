"""A member's account inside one ledger transaction: lock, change in memory, write back.

Every write helper here appends ledger entries and moves lots; nothing updates or deletes an
entry. The balance row is written once, at the end, and checked against the deltas applied.
Tiers change here too, and only here: after an event (`close`), at a calendar review
(`review_tiers`) and when an operator sets a floor (`set_floor`), each with its tier_changes
row, under the program's tier settings (`engine.rules_of(program).tiers`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Text, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain import engine, merges
from worker.domain.decisions import Origin
from worker.domain.engine import Award, Downgrade, EngineProgram, TierFloor, tiering, validate_state
from worker.domain.errors import InvariantViolation
from worker.domain.lots import Lot, take_earliest_expiring
from worker.domain.program import Program
from worker.store.staged import Staged


def imported(member: str) -> str:
    """SQL: whether the member `member` (an SQL expression) came from another program: imported
    (worker/services/imports.py), or the member kept by a merge with one that was."""
    return (
        f"(EXISTS (SELECT 1 FROM import_members i WHERE i.member_id = {member})"
        f" OR EXISTS (SELECT 1 FROM members a JOIN import_members i ON i.member_id = a.member_id"
        f" WHERE a.merged_into = {member}))"
    )


# With a locked members row: whether the member was imported from a previous program
# (`loyalty import members`), an existing customer to the rules (worker/domain/earning.py).
IMPORTED = f"{imported('m.member_id')} AS imported"

_LOCK_MEMBER = text(
    f"""
    INSERT INTO members AS m (member_id, tier) VALUES (:member_id, :tier)
    ON CONFLICT (member_id) DO UPDATE SET updated_at = now()
    RETURNING m.*, {IMPORTED}
    """
)

_WRITE_EARN = text(
    """
    WITH entry AS (
        INSERT INTO ledger_entries
            (member_id, kind, points, pending_points, qualifying_points, source, event_id, event_type, rules, occurred_at)
        VALUES (:member_id, 'earn', :available, :pending, :points, :source, :event_id, :event_type, :rules, :occurred_at)
        RETURNING entry_id
    )
    INSERT INTO lots (member_id, entry_id, points, remaining, earned_at, expires_at, pending_until)
    SELECT :member_id, entry_id, :points, :points, :occurred_at, :expires_at, :pending_until FROM entry
    RETURNING lot_id, entry_id
    """
).bindparams(bindparam("rules", type_=JSONB))

_OPEN_LOTS = text(
    """
    SELECT lot_id, remaining, expires_at, pending_until FROM lots
    WHERE member_id = :member_id AND remaining > 0
    ORDER BY expires_at, lot_id
    """
)

_WRITE_ENTRY = text(
    """
    INSERT INTO ledger_entries
        (member_id, kind, points, pending_points, qualifying_points, source, event_id, event_type, rules, occurred_at)
    VALUES (:member_id, :kind, :points, :pending, :qualifying, :source, :event_id, :event_type, :rules, :occurred_at)
    RETURNING entry_id
    """
).bindparams(bindparam("rules", type_=JSONB))

_TAKE_FROM_LOTS = text(
    """
    WITH taken AS (
        UPDATE lots SET remaining = lots.remaining - t.points
        FROM unnest(:lot_ids, :points) AS t(lot_id, points)
        WHERE lots.lot_id = t.lot_id
        RETURNING lots.lot_id, t.points
    )
    INSERT INTO lot_takes (entry_id, lot_id, points) SELECT :entry_id, lot_id, points FROM taken
    """
).bindparams(bindparam("lot_ids", type_=ARRAY(BigInteger)), bindparam("points", type_=ARRAY(BigInteger)))

_WRITE_MEMBER = text(
    """
    UPDATE members SET
        tier = :tier, available_points = :available_points, pending_points = :pending_points,
        qualifying_points = :qualifying_points, lifetime_points = :lifetime_points,
        qualifying_amount = :qualifying_amount, tier_floor = :tier_floor, tier_floor_ends_on = :tier_floor_ends_on,
        birthday = :birthday, locale = :locale, signed_up_at = :signed_up_at,
        first_purchase_at = :first_purchase_at, labels = :labels, rule_state = :rule_state,
        latest_event_at = :latest_event_at, latest_event_source = :latest_event_source,
        latest_event_id = :latest_event_id, updated_at = now()
    WHERE member_id = :member_id
    """
).bindparams(bindparam("rule_state", type_=JSONB), bindparam("labels", type_=ARRAY(Text)))

# The balance row and the outbox rows in one round trip (notification ids keep list order).
_OUTBOX_PART = """
    outbox AS (
        INSERT INTO notifications (member_id, kind, params, dedupe_key, source, event_id)
        SELECT n.note ->> 'member_id', n.note ->> 'kind', n.note -> 'params', n.note ->> 'dedupe_key',
               n.note ->> 'source', n.note ->> 'event_id'
        FROM jsonb_array_elements(:notifications) WITH ORDINALITY AS n(note, position)
        ORDER BY n.position
        ON CONFLICT (dedupe_key) DO NOTHING
    )"""
_RECORD_PART = """
    outcome AS (
        UPDATE processed_events SET status = :record_status, result = :record_result
        WHERE source = :record_source AND event_id = :record_event_id
    )"""

# Events' outcomes recorded again after a re-evaluation (worker/services/replay.py).
_RECORD_OUTCOMES = text(
    """
    UPDATE processed_events p SET status = s.status, result = s.result
    FROM jsonb_to_recordset(:rows) AS s(source text, event_id text, status text, result jsonb)
    WHERE p.source = s.source AND p.event_id = s.event_id
    """
).bindparams(bindparam("rows", type_=JSONB))


def _member_write(notifications: bool, record: bool):
    """The balance row write, with the outbox rows and the event's recorded outcome in the same
    statement when there are any: one round trip to close a transaction."""
    parts = [part for part, wanted in ((_OUTBOX_PART, notifications), (_RECORD_PART, record)) if wanted]
    if not parts:
        return _WRITE_MEMBER
    statement = text("WITH" + ",".join(parts) + _WRITE_MEMBER.text).bindparams(
        bindparam("rule_state", type_=JSONB), bindparam("labels", type_=ARRAY(Text))
    )
    if notifications:
        statement = statement.bindparams(bindparam("notifications", type_=JSONB))
    if record:
        statement = statement.bindparams(bindparam("record_result", type_=JSONB))
    return statement


_MEMBER_WRITES = {(n, r): _member_write(n, r) for n in (False, True) for r in (False, True)}

_WRITE_TIER_CHANGE = text(
    """
    INSERT INTO tier_changes (member_id, from_tier, to_tier, reason, source, event_id, occurred_at)
    VALUES (:member_id, :from_tier, :to_tier, :reason, :source, :event_id, :occurred_at)
    """
)
# A review's downgrades of one chunk, executed as one batch per statement (the members are
# locked by the review's candidate query).
_WRITE_REVIEWED = text(
    """
    UPDATE members SET tier = :to_tier,
        qualifying_baseline = coalesce(CAST(:baseline AS bigint), qualifying_baseline),
        qualifying_amount_baseline = coalesce(CAST(:amount_baseline AS numeric), qualifying_amount_baseline),
        updated_at = now()
    WHERE member_id = :member_id
    """
)
_NOTIFY_REVIEWED = text(
    """
    INSERT INTO notifications (member_id, kind, params, dedupe_key, source, event_id)
    VALUES (:member_id, 'tier_downgraded',
            jsonb_build_object('from_tier', CAST(:from_tier AS text), 'to_tier', CAST(:to_tier AS text)),
            'tier_downgraded:' || :member_id || ':' || :event_id, :source, :event_id)
    ON CONFLICT (dedupe_key) DO NOTHING
    """
)
_WRITE_FLOOR = text(
    """
    INSERT INTO tier_floors (member_id, tier, ends_on, reason, set_by)
    VALUES (:member_id, :tier, :ends_on, :reason, :set_by)
    RETURNING floor_id, set_at
    """
)
# The `source` of tier changes an operator's floor makes; their event id is `floor:<floor_id>`.
OPERATOR_SOURCE = "operator"


@dataclass
class Account:
    """One member, locked for the length of the transaction."""

    member_id: str
    tier: str
    tier_floor: str | None
    available: int
    pending: int
    qualifying: int
    lifetime: int
    # Money spent less refunded: the qualifying value on the amount basis.
    qualifying_amount: Decimal
    profile: dict[str, Any]
    # Every stateful rule's counters, streaks and missions, keyed by rule id (engine/state.py).
    rule_state: dict[str, Any]
    opened: dict[str, int] = field(default_factory=dict)
    notifications: list[dict] = field(default_factory=list)
    # Qualifying points below this do not count towards tiers (moved by a tier review);
    # amount_baseline is the same for money spent.
    baseline: int = 0
    amount_baseline: Decimal = Decimal(0)
    # The operator's floor lasts until this local date, included (None: without end).
    tier_floor_ends_on: date | None = None
    # (entry kind, points) and (from tier, to tier) written in this transaction, for the
    # metrics counted once it commits.
    movements: list[tuple[str, int]] = field(default_factory=list)
    tier_moves: list[tuple[str, str]] = field(default_factory=list)
    # The occurrence key (occurred_at, source, event_id) of the latest event applied.
    latest: tuple[datetime, str, str] | None = None
    # Where earns, tier changes and the balance row go in a group transaction (staged.py);
    # None: each is its own statement, as everything else is.
    staged: Staged | None = None

    def next_event(self) -> None:
        """Start the next event of the same locked account: what one event opened with and
        wrote (the notifications are written by then) is that event's alone."""
        self.opened = {"available": self.available, "pending": self.pending, "qualifying": self.qualifying}
        self.movements = []
        self.tier_moves = []

    def direct(self) -> None:
        """Refuse to go on while rows are staged: the caller flushes and unstages first."""
        if self.staged is not None:
            raise RuntimeError(f"member {self.member_id}: a staged account cannot read or move lots")

    @property
    def points_changed(self) -> int:
        return self.available - self.opened["available"]

    def is_late(self, origin: Origin) -> bool:
        """Whether the event comes before one the member has already had, in occurrence order."""
        return self.latest is not None and (origin.occurred_at, origin.source, origin.event_id) < self.latest

    def saw(self, origin: Origin) -> None:
        key = (origin.occurred_at, origin.source, origin.event_id)
        if self.latest is None or key > self.latest:
            self.latest = key

    @property
    def floor(self) -> TierFloor | None:
        return TierFloor(tier=self.tier_floor, ends_on=self.tier_floor_ends_on) if self.tier_floor else None

    def tier_value(self, rules: EngineProgram) -> int | Decimal:
        """What counts towards tiers now: qualifying points or money above the review baseline."""
        return engine.tier_value(rules, self.qualifying, self.qualifying_amount, self.baseline, self.amount_baseline)


async def lock_member(conn: AsyncConnection, program: Program, member_id: str) -> Account:
    """Enroll the member if new, and hold their row lock until the transaction ends."""
    row = (await conn.execute(_LOCK_MEMBER, {"member_id": member_id, "tier": program.tiers[0].name})).mappings().one()
    return account_from_row(member_id, row)


def account_from_row(member_id: str, row: Any) -> Account:
    """An Account from a locked members row (a mapping of its columns, and `imported` when
    the query adds IMPORTED: False without it)."""
    account = Account(
        member_id=member_id,
        tier=row["tier"],
        tier_floor=row["tier_floor"],
        available=row["available_points"],
        pending=row["pending_points"],
        qualifying=row["qualifying_points"],
        lifetime=row["lifetime_points"],
        profile={
            **{k: row[k] for k in ("birthday", "locale", "signed_up_at", "first_purchase_at")},
            "labels": frozenset(row["labels"]),
            "imported": bool(row.get("imported", False)),
        },
        rule_state=validate_state(row["rule_state"]),
        baseline=row["qualifying_baseline"],
        latest=(row["latest_event_at"], row["latest_event_source"], row["latest_event_id"])
        if row["latest_event_at"] is not None
        else None,
        qualifying_amount=row["qualifying_amount"],
        amount_baseline=row["qualifying_amount_baseline"],
        tier_floor_ends_on=row["tier_floor_ends_on"],
    )
    account.opened = {"available": account.available, "pending": account.pending, "qualifying": account.qualifying}
    return account


async def earn(
    conn: AsyncConnection,
    program: Program,
    account: Account,
    origin: Origin,
    awards: tuple[Award, ...],
    *,
    pending: bool = False,
    lifetime: bool = True,
) -> int | None:
    """Book awards as one earn entry and one lot; returns the lot id (None when 0 points).
    `lifetime=False`: points given back by a correction of a refund, not earned again."""
    points = sum(a.points for a in awards)
    if points <= 0:
        return None
    pending_until = origin.occurred_at + timedelta(days=program.pending.days) if pending else None
    row = {
        "member_id": account.member_id,
        "available": 0 if pending else points,
        "pending": points if pending else 0,
        "points": points,
        "source": origin.source,
        "event_id": origin.event_id,
        "event_type": origin.event_type,
        "rules": [a.as_json() for a in awards],
        "occurred_at": origin.occurred_at,
        "expires_at": origin.occurred_at + timedelta(days=program.expiry.days),
        "pending_until": pending_until,
    }
    if account.staged is not None:
        lot_id = account.staged.earn(row)
    else:
        lot_id = (await conn.execute(_WRITE_EARN, row)).one().lot_id
    if pending:
        account.pending += points
    else:
        account.available += points
    account.movements.append(("earn", points))
    account.qualifying += points
    if lifetime:
        account.lifetime += points
    return lot_id


async def open_lots(conn: AsyncConnection, member_id: str) -> list[dict]:
    return [dict(r) for r in (await conn.execute(_OPEN_LOTS, {"member_id": member_id})).mappings()]


async def reverse(
    conn: AsyncConnection,
    account: Account,
    origin: Origin,
    points: int,
    *,
    own_lot_id: int | None,
    rules: list[dict],
    correction: bool = False,
) -> dict:
    """Take back `points` of earned points: from the order's own lot first (pending or not),
    then from available lots earliest-expiring first. Qualifying points drop by the full amount
    (and lifetime points too for a `correction` of what an event earned); what was already
    spent cannot be taken back and is reported as `unrecovered`.
    """
    staged = account.staged
    lots = staged.open_lots(account.member_id) if staged is not None else await open_lots(conn, account.member_id)
    candidates = [
        Lot(r["lot_id"], r["remaining"], r["expires_at"])
        for r in lots
        if r["pending_until"] is None or r["lot_id"] == own_lot_id
    ]
    takes = take_earliest_expiring(candidates, points, first=own_lot_id)
    pending_ids = {r["lot_id"] for r in lots if r["pending_until"] is not None}
    from_pending = sum(t for lot_id, t in takes if lot_id in pending_ids)
    from_available = sum(t for lot_id, t in takes if lot_id not in pending_ids)
    unrecovered = points - from_pending - from_available
    detail = {
        "points_due": points,
        "from_available": from_available,
        "from_pending": from_pending,
        "unrecovered": unrecovered,
    }
    entry = {
        "member_id": account.member_id,
        "kind": "reverse",
        "points": -from_available,
        "pending": -from_pending,
        "qualifying": -points,
        "source": origin.source,
        "event_id": origin.event_id,
        "event_type": origin.event_type,
        "rules": [*rules, detail],
        "occurred_at": origin.occurred_at,
    }
    if staged is not None:
        staged.take(account.member_id, staged.entry(entry), takes)
    else:
        entry_id = (await conn.execute(_WRITE_ENTRY, entry)).scalar_one()
        await take_from_lots(conn, entry_id, takes)
    account.available -= from_available
    account.pending -= from_pending
    account.movements.append(("reverse", from_available + from_pending))
    account.qualifying -= points
    if correction:  # points an event should never have earned: not earned in its lifetime either
        account.lifetime -= points
    return detail


def count_spend(account: Account, amount: Decimal) -> None:
    """Money towards tiers on the amount basis: a purchase's amount, a refund's (negative) share
    of it that was not refunded before. Kept on every basis, so a program may change basis."""
    account.qualifying_amount += amount


async def take_from_lots(conn: AsyncConnection, entry_id: int, takes: list[tuple[int, int]]) -> None:
    if takes:
        await conn.execute(
            _TAKE_FROM_LOTS,
            {"entry_id": entry_id, "lot_ids": [t[0] for t in takes], "points": [t[1] for t in takes]},
        )


def notify(account: Account, kind: str, origin: Origin | None, dedupe_key: str | None = None, **params: Any) -> None:
    account.notifications.append(
        {
            "member_id": account.member_id,
            "kind": kind,
            "params": params,
            "dedupe_key": dedupe_key,
            "source": origin.source if origin else None,
            "event_id": origin.event_id if origin else None,
        }
    )


def next_tier(program: Program, account: Account, origin: Origin) -> str:
    """The tier the account closes an event with (the re-evaluation's replay decides it so too)."""
    rules = engine.rules_of(program)
    on = origin.occurred_at.astimezone(rules.zone).date()
    return engine.tier_after(rules, account.tier, account.tier_value(rules), on=on, floor=account.floor)


async def close(
    conn: AsyncConnection, program: Program, account: Account, origin: Origin | None, record: dict | None = None
) -> None:
    """Settle the tier, queue nudges, write the balance row and the outbox rows, and the event's
    outcome (`record`: status, result, source, event_id of its processed_events row) if given.

    Without an origin (a points payment) nothing that counts towards tiers moved, so the tier
    is left as it is."""
    rules = engine.rules_of(program)
    if origin is not None:
        new_tier = next_tier(program, account, origin)
        if new_tier != account.tier:
            reason = "upgrade" if rules.rank(new_tier) > rules.rank(account.tier) else "downgrade"
            await change_tier(conn, rules, account, new_tier, reason, origin)
    nudge = tiering.nudge(
        rules,
        account.tier,
        account.opened["qualifying"] - account.baseline,
        account.qualifying - account.baseline,
        program.nudge.window_points,
    )
    if nudge is not None:
        notify(
            account,
            "tier_nudge",
            origin,
            # One per approach: the event that brought the member within the window names it, so
            # a member who falls back and comes close again is nudged again (the dispatcher
            # keeps the program's quiet period between two nudges).
            dedupe_key=f"tier_nudge:{account.member_id}:{nudge.tier}:{origin.source}:{origin.event_id}"
            if origin is not None
            else None,
            tier=nudge.tier,
            points_away=nudge.points_away,
        )
    await _write_back(conn, account, record)


async def change_tier(
    conn: AsyncConnection, rules: EngineProgram, account: Account, to_tier: str, reason: str, origin: Origin
) -> None:
    """Move the member to `to_tier` with a tier_changes row saying why, and tell them."""
    change = {
        "member_id": account.member_id,
        "from_tier": account.tier,
        "to_tier": to_tier,
        "reason": reason,
        "source": origin.source,
        "event_id": origin.event_id,
        "occurred_at": origin.occurred_at,
    }
    if account.staged is not None:
        account.staged.tier_change(change)
    else:
        await conn.execute(_WRITE_TIER_CHANGE, change)
    kind = "tier_upgraded" if rules.rank(to_tier) > rules.rank(account.tier) else "tier_downgraded"
    notify(account, kind, origin, from_tier=account.tier, to_tier=to_tier)
    account.tier_moves.append((account.tier, to_tier))
    account.tier = to_tier


async def record_outcomes(conn: AsyncConnection, outcomes: list[dict[str, Any]]) -> None:
    """Record events' outcomes again (each with source, event_id, status, result), in one
    statement; nothing when there are none."""
    if outcomes:
        await conn.execute(_RECORD_OUTCOMES, {"rows": outcomes})


async def _write_back(conn: AsyncConnection, account: Account, record: dict | None) -> None:
    if account.available < 0 or account.pending < 0:
        raise InvariantViolation(
            f"member {account.member_id}: balance would go negative "
            f"(available {account.available}, pending {account.pending})"
        )
    member = {
        "member_id": account.member_id,
        "tier": account.tier,
        "available_points": account.available,
        "pending_points": account.pending,
        "qualifying_points": account.qualifying,
        "lifetime_points": account.lifetime,
        "qualifying_amount": account.qualifying_amount,
        "tier_floor": account.tier_floor,
        "tier_floor_ends_on": account.tier_floor_ends_on,
        "birthday": account.profile["birthday"],
        "locale": account.profile["locale"],
        "signed_up_at": account.profile["signed_up_at"],
        "first_purchase_at": account.profile["first_purchase_at"],
        "labels": sorted(account.profile["labels"]),
        # Checked again on the way out: what the engine wrote must read back next time.
        "rule_state": validate_state(account.rule_state),
        "latest_event_at": account.latest[0] if account.latest else None,
        "latest_event_source": account.latest[1] if account.latest else None,
        "latest_event_id": account.latest[2] if account.latest else None,
    }
    notifications, account.notifications = account.notifications, []
    if account.staged is not None:
        account.staged.member(member, notifications, record)
        return
    params = dict(member)
    if notifications:
        params["notifications"] = notifications
    if record is not None:
        params.update({f"record_{key}": value for key, value in record.items()})
    await conn.execute(_MEMBER_WRITES[(bool(notifications), record is not None)], params)


# ---------------------------------------------------------------- operators' adjustments

_WRITE_CREDIT = text(
    """
    WITH entry AS (
        INSERT INTO ledger_entries
            (member_id, kind, points, pending_points, qualifying_points, source, event_id, event_type, rules, occurred_at)
        VALUES (:member_id, 'adjust', :points, 0, :qualifying, :source, :event_id, :event_type, :rules, :occurred_at)
        RETURNING entry_id
    )
    INSERT INTO lots (member_id, entry_id, points, remaining, earned_at, expires_at, pending_until)
    SELECT :member_id, entry_id, :points, :points, :occurred_at, :expires_at, NULL FROM entry
    RETURNING lot_id, entry_id
    """
).bindparams(bindparam("rules", type_=JSONB))
# The lots a debit may take from at its time: available, not past their expiry (the expiry job
# may not have swept them yet), as a redemption spends them.
_SPENDABLE_LOTS = text(
    """
    SELECT lot_id, remaining, expires_at FROM lots
    WHERE member_id = :member_id AND remaining > 0 AND pending_until IS NULL AND expires_at > :at
    ORDER BY expires_at, lot_id
    """
)


async def spendable_lots(conn: AsyncConnection, member_id: str, at: datetime) -> list[Lot]:
    """The member's available lots not past their expiry at `at`, earliest-expiring first."""
    rows = await conn.execute(_SPENDABLE_LOTS, {"member_id": member_id, "at": at})
    return [Lot(r.lot_id, r.remaining, r.expires_at) for r in rows]


async def adjust(
    conn: AsyncConnection,
    account: Account,
    origin: Origin,
    points: int,
    *,
    qualifying: int,
    expires_at: datetime | None,
    rules: list[dict],
) -> tuple[int, int | None]:
    """One `adjust` entry: a credit with a lot of its own expiring at `expires_at`, or a debit
    taking its points from the spendable lots earliest-expiring first (the caller has checked
    that they hold them). Qualifying points move by `qualifying`, lifetime points never.
    Returns the entry id and the credit's lot id."""
    account.direct()
    row = {
        "member_id": account.member_id,
        "points": points,
        "qualifying": qualifying,
        "source": origin.source,
        "event_id": origin.event_id,
        "event_type": origin.event_type,
        "rules": rules,
        "occurred_at": origin.occurred_at,
    }
    lot_id = None
    if points > 0:
        lot_id, entry_id = (await conn.execute(_WRITE_CREDIT, {**row, "expires_at": expires_at})).one()
    else:
        takes = take_earliest_expiring(await spendable_lots(conn, account.member_id, origin.occurred_at), -points)
        if sum(taken for _, taken in takes) != -points:
            raise InvariantViolation(f"member {account.member_id}: lots hold less than the {-points} points debited")
        entry_id = (await conn.execute(_WRITE_ENTRY, {**row, "kind": "adjust", "pending": 0})).scalar_one()
        await take_from_lots(conn, entry_id, takes)
    account.available += points
    account.qualifying += qualifying
    account.movements.append(("adjust", abs(points)))
    return entry_id, lot_id


# ---------------------------------------------------------------- operator floors and reviews


@dataclass(frozen=True)
class FloorSet:
    floor_id: int
    # When it was recorded: the transaction's time, as tier_changes.changed_at.
    set_at: datetime
    tier_before: str
    tier: str


async def set_floor(
    conn: AsyncConnection,
    program: Program,
    account: Account,
    floor: TierFloor | None,
    *,
    reason: str,
    by: str,
    now: datetime,
) -> FloorSet:
    """Record an operator's floor (None removes it) and, when it is in force on `now`'s local
    date and above the member's tier, raise the tier to it at once with the change's reason
    `operator floor: <reason>`.

    Removing or lowering a floor moves no tier here: the next review (or, with downgrade
    "automatic", the next event) lets the tier fall to what qualifying says.
    """
    floor_id, set_at = (
        await conn.execute(
            _WRITE_FLOOR,
            {
                "member_id": account.member_id,
                "tier": floor.tier if floor else None,
                "ends_on": floor.ends_on if floor else None,
                "reason": reason,
                "set_by": by,
            },
        )
    ).one()
    account.tier_floor = floor.tier if floor else None
    account.tier_floor_ends_on = floor.ends_on if floor else None
    rules = engine.rules_of(program)
    before = account.tier
    raised = tiering.raised_by_floor(rules, account.tier, floor, now.astimezone(rules.zone).date())
    if raised is not None:
        origin = Origin(OPERATOR_SOURCE, f"floor:{floor_id}", "set-tier", now)
        await change_tier(conn, rules, account, raised, f"operator floor: {reason}", origin)
    await _write_back(conn, account, None)
    return FloorSet(floor_id, set_at, before, account.tier)


async def review_tiers(conn: AsyncConnection, reviewed: list[Downgrade], origin: Origin) -> None:
    """Write a review's downgrades: tiers and baselines, tier_changes rows with reason
    `review`, and `tier_downgraded` notifications, one batched statement each. The caller
    holds the members' row locks."""
    if not reviewed:
        return
    await conn.execute(
        _WRITE_REVIEWED,
        [
            {
                "member_id": r.member_id,
                "to_tier": r.to_tier,
                "baseline": r.baseline,
                "amount_baseline": r.amount_baseline,
            }
            for r in reviewed
        ],
    )
    moves = [
        {
            "member_id": r.member_id,
            "from_tier": r.from_tier,
            "to_tier": r.to_tier,
            "reason": "review",
            "source": origin.source,
            "event_id": origin.event_id,
            "occurred_at": origin.occurred_at,
        }
        for r in reviewed
    ]
    await conn.execute(_WRITE_TIER_CHANGE, moves)
    await conn.execute(
        _NOTIFY_REVIEWED,
        [{k: m[k] for k in ("member_id", "from_tier", "to_tier", "source", "event_id")} for m in moves],
    )


# ---------------------------------------------------------------- points payments (HTTP API holds)
# Used by worker/services/holds.py only. The same entry and lot-take writers as above, so a
# hold, its capture and its release are entries and lot takes the audit already checks.

_LOCK_EXISTING_MEMBER = text(f"SELECT m.*, {IMPORTED} FROM members m WHERE member_id = :member_id FOR UPDATE")


async def lock_existing_member(conn: AsyncConnection, member_id: str) -> Account | None:
    """Like lock_member, but an unknown member stays unknown (None) instead of being enrolled."""
    row = (await conn.execute(_LOCK_EXISTING_MEMBER, {"member_id": member_id})).mappings().first()
    return account_from_row(member_id, row) if row is not None else None


async def move_points(
    conn: AsyncConnection, account: Account, origin: Origin, kind: str, takes: list[tuple[int, int]], rules: list[dict]
) -> int:
    """One entry of `kind` whose available points are minus the sum of `takes` (lot id, points),
    with those lot takes (a negative take puts points back into its lot); returns the entry id."""
    account.direct()
    points = -sum(p for _, p in takes)
    entry_id = (
        await conn.execute(
            _WRITE_ENTRY,
            {
                "member_id": account.member_id,
                "kind": kind,
                "points": points,
                "pending": 0,
                "qualifying": 0,
                "source": origin.source,
                "event_id": origin.event_id,
                "event_type": origin.event_type,
                "rules": rules,
                "occurred_at": origin.occurred_at,
            },
        )
    ).scalar_one()
    await take_from_lots(conn, entry_id, takes)
    account.available += points
    account.movements.append((kind, abs(points)))
    return entry_id


# ---------------------------------------------------------------- merges (worker/services/identities.py)

_ENROL = text(
    """
    INSERT INTO members (member_id, tier) VALUES (:member_id, :tier)
    ON CONFLICT (member_id) DO NOTHING
    """
)
_LOCK_MEMBERS = text(
    f"SELECT m.*, {IMPORTED} FROM members m WHERE member_id = ANY(:member_ids) ORDER BY member_id FOR UPDATE"
)
_ALL_OPEN_LOTS = text(
    """
    SELECT lot_id, remaining, earned_at, expires_at, pending_until FROM lots
    WHERE member_id = :member_id AND remaining > 0
    ORDER BY lot_id
    """
)
_COPY_LOTS = text(
    """
    INSERT INTO lots (member_id, entry_id, points, remaining, earned_at, expires_at, pending_until)
    SELECT :member_id, :entry_id, s.remaining, s.remaining, s.earned_at, s.expires_at, s.pending_until
    FROM jsonb_to_recordset(:lots) AS s(remaining bigint, earned_at timestamptz, expires_at timestamptz,
                                        pending_until timestamptz)
    """
).bindparams(bindparam("lots", type_=JSONB))


async def enrol(conn: AsyncConnection, program: Program, member_id: str) -> None:
    """Enrol the member if new, taking no lock on an existing member's row."""
    await conn.execute(_ENROL, {"member_id": member_id, "tier": program.tiers[0].name})


async def lock_members(conn: AsyncConnection, program: Program, member_ids: list[str]) -> dict[str, Any]:
    """Enrol the members that are new and lock all of their rows, in member-id order (the one
    order every transaction that locks two members takes, so that two of them cannot deadlock).
    Returns the rows by member id."""
    ordered = sorted(set(member_ids))
    for member_id in ordered:
        await enrol(conn, program, member_id)
    rows = (await conn.execute(_LOCK_MEMBERS, {"member_ids": ordered})).mappings().all()
    return {row["member_id"]: row for row in rows}


async def open_lots_to_move(conn: AsyncConnection, member_id: str) -> list[merges.OpenLot]:
    """Every open lot of a member, as a merge moves them."""
    rows = await conn.execute(_ALL_OPEN_LOTS, {"member_id": member_id})
    return [merges.OpenLot(r.lot_id, r.remaining, r.earned_at, r.expires_at, r.pending_until) for r in rows]


async def transfer(
    conn: AsyncConnection, absorbed: Account, survivor: Account, origin: Origin, moved: merges.Transfer
) -> None:
    """Write what a merge moves (`worker/domain/merges.py` decides it): the two `transfer`
    entries, the absorbed member's lots emptied and their copies for the survivor, and the
    survivor's balances, qualifying, lifetime and amount values and latest event."""
    entry_ids = {}
    for side in (moved.absorbed, moved.survivor):
        entry_ids[side.member_id] = (
            await conn.execute(
                _WRITE_ENTRY,
                {
                    "member_id": side.member_id,
                    "kind": "transfer",
                    "points": side.points,
                    "pending": side.pending,
                    "qualifying": side.qualifying,
                    "source": origin.source,
                    "event_id": origin.event_id,
                    "event_type": origin.event_type,
                    "rules": side.rules,
                    "occurred_at": origin.occurred_at,
                },
            )
        ).scalar_one()
    await take_from_lots(conn, entry_ids[absorbed.member_id], moved.emptied)
    if moved.copied:
        await conn.execute(
            _COPY_LOTS,
            {
                "member_id": survivor.member_id,
                "entry_id": entry_ids[survivor.member_id],
                "lots": [
                    {
                        "remaining": lot.remaining,
                        "earned_at": lot.earned_at.isoformat(),
                        "expires_at": lot.expires_at.isoformat(),
                        "pending_until": lot.pending_until.isoformat() if lot.pending_until else None,
                    }
                    for lot in moved.copied
                ],
            },
        )
    available, pending = moved.survivor.points, moved.survivor.pending
    survivor.available += available
    survivor.pending += pending
    survivor.qualifying += absorbed.qualifying
    survivor.lifetime += absorbed.lifetime
    survivor.qualifying_amount += absorbed.qualifying_amount
    if absorbed.latest is not None and (survivor.latest is None or absorbed.latest > survivor.latest):
        survivor.latest = absorbed.latest
    survivor.movements.append(("transfer", moved.points))
    absorbed.movements.append(("transfer", moved.points))
    absorbed.available = absorbed.pending = absorbed.qualifying = absorbed.lifetime = 0
    absorbed.qualifying_amount = Decimal(0)


async def write_back(conn: AsyncConnection, account: Account) -> None:
    """Write a locked account's balance row as it is, with no tier decision (a member absorbed
    by a merge keeps the tier it had, for its history)."""
    await _write_back(conn, account, None)
