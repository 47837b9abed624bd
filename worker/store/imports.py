"""What `loyalty import` writes: members, their identities, floors and opening balances.

A chunk of rows is read with two statements and written with three (members) or one (lots),
each over arrays (`unnest`), whatever the chunk's size; the service runs a chunk in one
transaction (worker/services/imports.py). Statements go to asyncpg as they are
(`exec_driver_sql`, `$n` parameters), so arrays of any length bind without per-row work.

Every point imported is a ledger entry of kind `import` the audit recomputes: a lot's entry
carries its points (available) and names its lot; a member's own entry carries the qualifying
points brought in, and its first rule item the lifetime points (as a merge's transfer does),
so that balances, entries and lots agree from the first moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

# The `source` of import entries; their event_id is the member id (a member's points) or the
# lot reference (a lot), their event_type says which.
IMPORT_SOURCE = "import"
FLOOR_REASON = "imported from the previous program"

_MEMBERS_KNOWN = """
    SELECT u.m AS member_id, i.row_hash, mb.member_id IS NOT NULL AS enrolled, mb.erased_at IS NOT NULL AS erased
    FROM unnest($1::text[]) AS u(m)
    LEFT JOIN import_members i ON i.member_id = u.m
    LEFT JOIN members mb ON mb.member_id = u.m
    WHERE i.member_id IS NOT NULL OR mb.member_id IS NOT NULL
"""
# The member each identity names now (the member kept, if its owner was merged).
_OWNERS = """
    SELECT i.kind, i.value, coalesce(m.merged_into, i.member_id) AS member_id
    FROM member_identities i
    JOIN unnest($1::text[], $2::text[]) AS w(kind, value) ON w.kind = i.kind AND w.value = i.value
    LEFT JOIN members m ON m.member_id = i.member_id
"""
# Labels travel as one `|`-joined text per member: unnest flattens an array of arrays. Both
# inserts count what they wrote in the database rather than returning a row per member.
_INSERT_MEMBERS = """
    WITH inserted AS (
        INSERT INTO members (member_id, tier, tier_floor, tier_floor_ends_on, qualifying_points, lifetime_points,
                             birthday, locale, labels, enrolled_at, updated_at)
        SELECT m, t, f, fe, q, l, b, lo, CASE WHEN la = '' THEN '{}'::text[] ELSE string_to_array(la, '|') END,
               coalesce(e, $11), $11
        FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::bigint[], $6::bigint[], $7::date[],
                    $8::text[], $9::text[], $10::timestamptz[]) AS u(m, t, f, fe, q, l, b, lo, la, e)
        ON CONFLICT (member_id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM inserted
"""
_INSERT_IDENTITIES = """
    WITH inserted AS (
        INSERT INTO member_identities (kind, value, member_id, created_at)
        SELECT k, v, m, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS u(k, v, m)
        ON CONFLICT (kind, value) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM inserted
"""
# The floors, the members' own import entries and the import records, in one round trip.
_RECORD_MEMBERS = f"""
    WITH floors AS (
        INSERT INTO tier_floors (member_id, tier, ends_on, reason, set_by, set_at)
        SELECT m, t, e, '{FLOOR_REASON}', 'import', $9 FROM unnest($1::text[], $2::text[], $3::date[]) AS f(m, t, e)
    ), entries AS (
        INSERT INTO ledger_entries (member_id, kind, points, pending_points, qualifying_points, source, event_id,
                                    event_type, rules, occurred_at)
        SELECT m, 'import', 0, 0, q, '{IMPORT_SOURCE}', m, 'import_member',
               jsonb_build_array(jsonb_build_object('rule', 'import', 'lifetime_points', l, 'qualifying_points', q)),
               $9
        FROM unnest($4::text[], $5::bigint[], $6::bigint[]) AS e(m, q, l)
    )
    INSERT INTO import_members (member_id, row_hash, tier, qualifying_points, birthday, locale, imported_at)
    SELECT m, h, t, q, b, lo, $9
    FROM unnest($7::text[], $8::text[], $10::text[], $11::bigint[], $12::date[], $13::text[]) AS r(m, h, t, q, b, lo)
"""

_LOCK_MEMBERS = """
    SELECT member_id, erased_at IS NOT NULL AS erased, merged_into FROM members
    WHERE member_id = ANY($1::text[]) ORDER BY member_id FOR UPDATE
"""
_LOTS_KNOWN = """
    SELECT i.member_id, i.lot_ref, i.row_hash FROM import_lots i
    JOIN unnest($1::text[], $2::text[]) AS u(m, r) ON i.member_id = u.m AND i.lot_ref = u.r
"""
# Entry and lot ids are drawn once per row in `x` (a CTE is evaluated once), so each lot names
# its entry and each record both; the balances move by each member's sum. Foreign keys are
# checked at the statement's end.
_INSERT_LOTS = f"""
    WITH x AS (
        SELECT nextval('ledger_entries_entry_id_seq') AS entry_id, nextval('lots_lot_id_seq') AS lot_id, u.*
        FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[], $6::text[],
                    $7::text[], $8::date[]) AS u(m, ref, p, earned, expires, note, h, expires_on)
    ), entries AS (
        INSERT INTO ledger_entries (entry_id, member_id, kind, points, pending_points, qualifying_points, source,
                                    event_id, event_type, rules, occurred_at)
        SELECT entry_id, m, 'import', p, 0, 0, '{IMPORT_SOURCE}', ref, 'import_lot',
               jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
                   'rule', 'import', 'points', p, 'lifetime_points', 0, 'lot_ref', ref,
                   'expires_on', to_char(expires_on, 'YYYY-MM-DD'), 'note', note))),
               $9
        FROM x
    ), lots AS (
        INSERT INTO lots (lot_id, member_id, entry_id, points, remaining, earned_at, expires_at)
        SELECT lot_id, m, entry_id, p, p, earned, expires FROM x
    ), refs AS (
        INSERT INTO import_lots (member_id, lot_ref, row_hash, entry_id, lot_id, imported_at)
        SELECT m, ref, h, entry_id, lot_id, $9 FROM x
    )
    UPDATE members SET available_points = available_points + s.points, updated_at = $9
    FROM (SELECT m, sum(p) AS points FROM x GROUP BY m) s
    WHERE members.member_id = s.m
"""


class ImportRaced(RuntimeError):
    """Another transaction wrote a member or identity of this chunk between its reads and its
    writes: the chunk is rolled back and read again."""


@dataclass(frozen=True)
class KnownMember:
    # The digest it was imported with (None: enrolled otherwise; 'erased' once erased).
    row_hash: str | None
    enrolled: bool
    erased: bool


@dataclass(frozen=True)
class NewMember:
    member_id: str
    tier: str
    floor_tier: str | None
    floor_ends_on: date | None
    qualifying_points: int
    lifetime_points: int
    birthday: date | None
    locale: str | None
    labels: tuple[str, ...]
    enrolled_at: datetime | None
    identities: tuple[tuple[str, str], ...]
    row_hash: str


@dataclass(frozen=True)
class NewLot:
    member_id: str
    lot_ref: str
    points: int
    earned_at: datetime
    expires_at: datetime
    expires_on: date
    note: str | None
    row_hash: str


async def _rows(conn: AsyncConnection, sql: str, *args: Any) -> list[Any]:
    return list((await conn.exec_driver_sql(sql, args)).all())


async def _count(conn: AsyncConnection, sql: str, *args: Any) -> int:
    return int((await conn.exec_driver_sql(sql, args)).scalar_one())


async def known_members(conn: AsyncConnection, member_ids: list[str]) -> dict[str, KnownMember]:
    """Which of these members were imported (with their digest) or are enrolled already."""
    rows = await _rows(conn, _MEMBERS_KNOWN, member_ids)
    return {r.member_id: KnownMember(r.row_hash, r.enrolled, r.erased) for r in rows}


async def identity_owners(conn: AsyncConnection, identities: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The member each of these identities (kind, normal form) names, for those some member has."""
    if not identities:
        return {}
    rows = await _rows(conn, _OWNERS, [k for k, _ in identities], [v for _, v in identities])
    return {(r.kind, r.value): r.member_id for r in rows}


async def write_members(conn: AsyncConnection, members: list[NewMember], now: datetime) -> None:
    """Enrol the members with their identities, floors, import entries and import records.
    ImportRaced when a member or an identity was taken meanwhile (nothing is kept: the caller
    rolls the transaction back)."""
    if not members:
        return
    inserted = await _count(
        conn,
        _INSERT_MEMBERS,
        [m.member_id for m in members],
        [m.tier for m in members],
        [m.floor_tier for m in members],
        [m.floor_ends_on for m in members],
        [m.qualifying_points for m in members],
        [m.lifetime_points for m in members],
        [m.birthday for m in members],
        [m.locale for m in members],
        ["|".join(m.labels) for m in members],
        [m.enrolled_at for m in members],
        now,
    )
    if inserted != len(members):
        raise ImportRaced(f"{len(members) - inserted} members were enrolled meanwhile")
    identities = [(kind, value, m.member_id) for m in members for kind, value in m.identities]
    if identities:
        claimed = await _count(
            conn,
            _INSERT_IDENTITIES,
            [i[0] for i in identities],
            [i[1] for i in identities],
            [i[2] for i in identities],
            now,
        )
        if claimed != len(identities):
            raise ImportRaced(f"{len(identities) - claimed} identities were taken meanwhile")
    floors = [m for m in members if m.floor_tier is not None]
    counted = [m for m in members if m.qualifying_points or m.lifetime_points]
    await conn.exec_driver_sql(
        _RECORD_MEMBERS,
        (
            [m.member_id for m in floors],
            [m.floor_tier for m in floors],
            [m.floor_ends_on for m in floors],
            [m.member_id for m in counted],
            [m.qualifying_points for m in counted],
            [m.lifetime_points for m in counted],
            [m.member_id for m in members],
            [m.row_hash for m in members],
            now,
            [m.tier for m in members],
            [m.qualifying_points for m in members],
            [m.birthday for m in members],
            [m.locale for m in members],
        ),
    )


@dataclass(frozen=True)
class LockedMember:
    erased: bool
    merged_into: str | None


async def lock_members(conn: AsyncConnection, member_ids: list[str]) -> dict[str, LockedMember]:
    """Lock the rows of those of these members that exist, in member-id order (as the ledger
    locks them), until the transaction ends."""
    rows = await _rows(conn, _LOCK_MEMBERS, sorted(set(member_ids)))
    return {r.member_id: LockedMember(r.erased, r.merged_into) for r in rows}


async def known_lots(conn: AsyncConnection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The digest each of these (member_id, lot_ref) was imported with, for those imported."""
    if not keys:
        return {}
    rows = await _rows(conn, _LOTS_KNOWN, [m for m, _ in keys], [r for _, r in keys])
    return {(r.member_id, r.lot_ref): r.row_hash for r in rows}


async def write_lots(conn: AsyncConnection, lots: list[NewLot], now: datetime) -> None:
    """Each lot with its `import` entry and record, and the members' available points, in one
    statement. The caller holds the members' row locks."""
    if not lots:
        return
    await conn.exec_driver_sql(
        _INSERT_LOTS,
        (
            [lot.member_id for lot in lots],
            [lot.lot_ref for lot in lots],
            [lot.points for lot in lots],
            [lot.earned_at for lot in lots],
            [lot.expires_at for lot in lots],
            [lot.note for lot in lots],
            [lot.row_hash for lot in lots],
            [lot.expires_on for lot in lots],
            now,
        ),
    )
