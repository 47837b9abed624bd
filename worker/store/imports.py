"""What `loyalty import` writes: members, their identities, floors and opening balances.

A chunk's rows to write are copied (binary COPY) into a temporary table of the session and
written from it with one statement, whatever the chunk's size; what is stored already is read
with a statement or two over arrays (`unnest`). The service runs a chunk in one transaction
(worker/services/imports.py). Statements go to asyncpg as they are (`exec_driver_sql`, `$n`
parameters).

The writes are plain inserts: a row there already (a member, an identity, a lot imported
before, or one another writer took meanwhile) fails the statement on its unique key, and the
caller hears ImportRaced, rolls the chunk back and reads it again. So a file imported for the
first time is written without being read first.

Every point imported is a ledger entry of kind `import` the audit recomputes: a lot's entry
carries its points (available) and names its lot; a member's own entry carries the qualifying
points brought in, and its first rule item the lifetime points (as a merge's transfer does),
so that balances, entries and lots agree from the first moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain.imports import LotRow, MemberRow

# The `source` of import entries; their event_id is the member id (a member's points) or the
# lot reference (a lot), their event_type says which.
IMPORT_SOURCE = "import"
FLOOR_REASON = "imported from the previous program"

_MEMBER_ROWS = "import_member_rows"
_MEMBER_ROW_COLUMNS = (
    "member_id",
    "tier",
    "floor_tier",
    "floor_ends_on",
    "qualifying",
    "lifetime",
    "birthday",
    "locale",
    "labels",
    "enrolled_at",
    "row_hash",
    "phone",
    "card",
    "wechat_openid",
    "email",
)
# labels: the labels joined by `|` (a label holds none); text is copied faster than an array.
_CREATE_MEMBER_ROWS = f"""
    CREATE TEMP TABLE IF NOT EXISTS {_MEMBER_ROWS} (
        member_id text, tier text, floor_tier text, floor_ends_on date, qualifying bigint,
        lifetime bigint, birthday date, locale text, labels text, enrolled_at timestamptz, row_hash text,
        phone text, card text, wechat_openid text, email text
    )
"""
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
# The members, their identities, floors, import entries and import records in one statement:
# a member or identity there already fails it on its unique key.
_LABELS = "CASE WHEN labels = '' THEN '{}' ELSE string_to_array(labels, '|') END"
_INSERT_MEMBERS = f"""
    WITH enrolled AS (
        INSERT INTO members (member_id, tier, tier_floor, tier_floor_ends_on, qualifying_points, lifetime_points,
                             birthday, locale, labels, enrolled_at, updated_at)
        SELECT member_id, tier, floor_tier, floor_ends_on, qualifying, lifetime, birthday, locale, {_LABELS},
               coalesce(enrolled_at, $1), $1
        FROM {_MEMBER_ROWS}
    ), identities AS (
        INSERT INTO member_identities (kind, value, member_id, created_at)
        SELECT i.kind, i.value, r.member_id, $1
        FROM {_MEMBER_ROWS} r
        CROSS JOIN LATERAL (VALUES ('phone', r.phone), ('card', r.card), ('wechat_openid', r.wechat_openid),
                                   ('email', r.email)) AS i(kind, value)
        WHERE i.value IS NOT NULL
    ), floors AS (
        INSERT INTO tier_floors (member_id, tier, ends_on, reason, set_by, set_at)
        SELECT member_id, floor_tier, floor_ends_on, '{FLOOR_REASON}', 'import', $1
        FROM {_MEMBER_ROWS} WHERE floor_tier IS NOT NULL
    ), entries AS (
        INSERT INTO ledger_entries (member_id, kind, points, pending_points, qualifying_points, source, event_id,
                                    event_type, rules, occurred_at)
        SELECT member_id, 'import', 0, 0, qualifying, '{IMPORT_SOURCE}', member_id, 'import_member',
               jsonb_build_array(jsonb_build_object(
                   'rule', 'import', 'lifetime_points', lifetime, 'qualifying_points', qualifying)),
               $1
        FROM {_MEMBER_ROWS} WHERE qualifying > 0 OR lifetime > 0
    )
    INSERT INTO import_members (member_id, row_hash, tier, qualifying_points, birthday, locale, labels, imported_at)
    SELECT member_id, row_hash, tier, qualifying, birthday, locale, {_LABELS}, $1 FROM {_MEMBER_ROWS}
"""

_LOT_ROWS = "import_lot_rows"
_LOT_ROW_COLUMNS = (
    "member_id",
    "lot_ref",
    "points",
    "earned_at",
    "expires_at",
    "note",
    "row_hash",
    "expires_on",
)
_CREATE_LOT_ROWS = f"""
    CREATE TEMP TABLE IF NOT EXISTS {_LOT_ROWS} (
        member_id text, lot_ref text, points bigint, earned_at timestamptz, expires_at timestamptz,
        note text, row_hash text, expires_on date
    )
"""
# Locks the members in member-id order (as the ledger locks them), and names those a lot
# cannot go to: not a member, erased, or merged into another.
_LOCK_MEMBERS = """
    WITH locked AS MATERIALIZED (
        SELECT member_id, erased_at IS NOT NULL AS erased, merged_into FROM members
        WHERE member_id = ANY($1::text[]) ORDER BY member_id FOR UPDATE
    )
    SELECT u.m AS member_id, l.member_id IS NOT NULL AS found, coalesce(l.erased, false) AS erased, l.merged_into
    FROM unnest($1::text[]) AS u(m)
    LEFT JOIN locked l ON l.member_id = u.m
    WHERE l.member_id IS NULL OR l.erased OR l.merged_into IS NOT NULL
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
        SELECT nextval('ledger_entries_entry_id_seq') AS entry_id, nextval('lots_lot_id_seq') AS lot_id, r.*
        FROM {_LOT_ROWS} r
    ), entries AS (
        INSERT INTO ledger_entries (entry_id, member_id, kind, points, pending_points, qualifying_points, source,
                                    event_id, event_type, rules, occurred_at)
        SELECT entry_id, member_id, 'import', points, 0, 0, '{IMPORT_SOURCE}', lot_ref, 'import_lot',
               jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
                   'rule', 'import', 'points', points, 'lifetime_points', 0, 'lot_ref', lot_ref,
                   'expires_on', to_char(expires_on, 'YYYY-MM-DD'), 'note', note))),
               $1
        FROM x
    ), lots AS (
        INSERT INTO lots (lot_id, member_id, entry_id, points, remaining, earned_at, expires_at)
        SELECT lot_id, member_id, entry_id, points, points, earned_at, expires_at FROM x
    ), refs AS (
        INSERT INTO import_lots (member_id, lot_ref, row_hash, entry_id, lot_id, imported_at)
        SELECT member_id, lot_ref, row_hash, entry_id, lot_id, $1 FROM x
    )
    UPDATE members SET available_points = available_points + s.points, updated_at = $1
    FROM (SELECT member_id, sum(points) AS points FROM x GROUP BY member_id) s
    WHERE members.member_id = s.member_id
"""


class ImportRaced(RuntimeError):
    """A row of this chunk is in the database already (imported before, or written by another
    transaction between the chunk's reads and its writes): the chunk is rolled back and read
    again."""


@dataclass(frozen=True)
class KnownMember:
    # The digest it was imported with (None: enrolled otherwise; 'erased' once erased).
    row_hash: str | None
    enrolled: bool
    erased: bool


@dataclass(frozen=True)
class LockedMember:
    """A member a lot cannot go to: not found, erased, or merged into another."""

    found: bool
    erased: bool
    merged_into: str | None


def member_record(member: MemberRow, tier: str, floor_tier: str | None, floor_ends_on: date | None) -> tuple:
    """A member row as the temporary table takes it (pure; built while the file is read)."""
    phone = card = openid = email = None
    for kind, value in member.identities:
        if kind == "phone":
            phone = value
        elif kind == "card":
            card = value
        elif kind == "email":
            email = value
        else:
            openid = value
    return (
        member.member_id,
        tier,
        floor_tier,
        floor_ends_on,
        member.qualifying_points,
        member.lifetime_points,
        member.birthday,
        member.locale,
        "|".join(member.labels),
        member.enrolled_at,
        member.row_hash,
        phone,
        card,
        openid,
        email,
    )


def lot_record(lot: LotRow, earned_at: datetime, expires_at: datetime) -> tuple:
    """A lot row as the temporary table takes it (pure)."""
    return (lot.member_id, lot.lot_ref, lot.points, earned_at, expires_at, lot.note, lot.row_hash, lot.expires_on)


async def _rows(conn: AsyncConnection, sql: str, *args: Any) -> list[Any]:
    return list((await conn.exec_driver_sql(sql, args)).all())


async def _write(
    conn: AsyncConnection,
    create: str,
    table: str,
    columns: tuple[str, ...],
    records: list[tuple],
    sql: str,
    now: datetime,
) -> None:
    """Copy the records into the session's temporary `table` (emptied first: a dry run's chunks
    share one transaction) and run `sql` on them; ImportRaced when it finds one of them there
    already."""
    await conn.exec_driver_sql(create)
    await conn.exec_driver_sql(f"TRUNCATE {table}")
    driver = (await conn.get_raw_connection()).driver_connection
    await driver.copy_records_to_table(table, records=records, columns=list(columns))
    try:
        await conn.exec_driver_sql(sql, (now,))
    except IntegrityError as error:
        if getattr(error.orig, "sqlstate", None) != "23505":  # unique_violation
            raise
        raise ImportRaced(str(error.orig).splitlines()[0]) from None


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


async def write_members(conn: AsyncConnection, records: list[tuple], now: datetime) -> None:
    """Enrol the members (member_record) with their identities, floors, import entries and
    import records. ImportRaced when a member or an identity is there already (nothing is
    kept: the caller rolls the transaction back)."""
    if records:
        await _write(conn, _CREATE_MEMBER_ROWS, _MEMBER_ROWS, _MEMBER_ROW_COLUMNS, records, _INSERT_MEMBERS, now)


async def lock_members(conn: AsyncConnection, member_ids: list[str]) -> dict[str, LockedMember]:
    """Lock the rows of those of these members that exist, in member-id order (as the ledger
    locks them), until the transaction ends; returns the members a lot cannot go to."""
    rows = await _rows(conn, _LOCK_MEMBERS, sorted(set(member_ids)))
    return {r.member_id: LockedMember(r.found, r.erased, r.merged_into) for r in rows}


async def known_lots(conn: AsyncConnection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The digest each of these (member_id, lot_ref) was imported with, for those imported."""
    if not keys:
        return {}
    rows = await _rows(conn, _LOTS_KNOWN, [m for m, _ in keys], [r for _, r in keys])
    return {(r.member_id, r.lot_ref): r.row_hash for r in rows}


async def write_lots(conn: AsyncConnection, records: list[tuple], now: datetime) -> None:
    """Each lot (lot_record) with its `import` entry and record, and the members' available
    points, in one statement after the copy. The caller holds the members' row locks.
    ImportRaced when a lot was imported already."""
    if records:
        await _write(conn, _CREATE_LOT_ROWS, _LOT_ROWS, _LOT_ROW_COLUMNS, records, _INSERT_LOTS, now)
