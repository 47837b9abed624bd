"""Rows of the files `loyalty import` reads: members and opening balances of another program.

Pure: a row (column -> text) and the program's facts in, a parsed row or the reason it is bad
out. A reason names the column first (`birthday: 1990-13-01 is not a date (YYYY-MM-DD)`);
identity values are personal data and are never repeated in a reason (identities.py).

What depends on the day of the import (an expiry or a floor's end already past) is a reason
of its own (`late`), which the service gives only for a row not imported before: running a
file again a year later still finds its rows unchanged.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

from worker.domain.events import BIRTHDAY_AFTER, safe_text
from worker.domain.identities import KINDS as IDENTITY_KINDS
from worker.domain.identities import IdentityError, normalise
from worker.domain.labels import LABEL_PATTERN, LABEL_RULE, LABELS_MAX

MEMBER_COLUMNS: tuple[str, ...] = (
    "member_id",
    "phone",
    "card",
    "email",
    "wechat_openid",
    "birthday",
    "locale",
    "labels",
    "tier",
    "tier_floor_until",
    "enrolled_at",
    "lifetime_points",
    "qualifying_points",
)
MEMBER_REQUIRED: tuple[str, ...] = ("member_id",)
BALANCE_COLUMNS: tuple[str, ...] = ("member_id", "lot_ref", "points", "earned_on", "expires_on", "note")
BALANCE_REQUIRED: tuple[str, ...] = ("member_id", "lot_ref", "points", "expires_on")

LOCALES: tuple[str, ...] = ("en", "zh-Hans", "zh-Hant")
# Labels in one cell: `vip|staff`. Not `;` or `,`, which spreadsheets use between cells.
LABEL_SEPARATOR = "|"
# Member ids as the event contract takes them (events.Identifier).
_MEMBER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@#/+-]{0,127}$")
_LOT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@#/+-]{0,127}$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_POINTS = re.compile(r"^[0-9]{1,15}$")
_LABEL = re.compile(LABEL_PATTERN)
NOTE_CHARS_MAX = 200
# Points in one lot or one member's totals: far above any real balance, far below bigint's end.
POINTS_MAX = 10**12


class BadRow(ValueError):
    """A row that cannot be imported; the message names the column."""


# Rows are named tuples: a file has millions of them, and a tuple is built several times faster
# than a frozen dataclass.
class MemberRow(NamedTuple):
    member_id: str
    # (kind, normal form) of each identity given, in the kinds' order.
    identities: tuple[tuple[str, str], ...]
    birthday: date | None
    locale: str | None
    labels: tuple[str, ...]
    # The tier the file names (None: the program's tier for the qualifying points).
    tier: str | None
    tier_floor_until: date | None
    enrolled_at: datetime | None
    lifetime_points: int
    qualifying_points: int
    row_hash: str


class LotRow(NamedTuple):
    member_id: str
    lot_ref: str
    points: int
    earned_on: date | None
    expires_on: date
    note: str | None
    row_hash: str


def check_header(header: Sequence[str], columns: Sequence[str], required: Sequence[str]) -> str | None:
    """Why a header row cannot be read (None when it can): an unknown or repeated column, or a
    required one missing."""
    names = [name.strip() for name in header]
    for name in names:
        if name not in columns:
            return f"header: unknown column {safe_text(name, 64)!r}; the columns are {', '.join(columns)}"
    for name in set(names):
        if names.count(name) > 1:
            return f"header: column {name} appears {names.count(name)} times"
    missing = [name for name in required if name not in names]
    if missing:
        return f"header: missing column {', '.join(missing)}"
    return None


def digest(values: Iterable[object]) -> str:
    """The row's digest, over its parsed values (so two spellings of one row are one row):
    their texts joined by a separator no cell can hold once parsed."""
    return _sha256("\x1f".join(_text(v) for v in values))


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, (date, datetime)) else str(value)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def parse_member(row: dict[str, str], tiers: Sequence[str], zone: ZoneInfo) -> MemberRow:
    """A member row; BadRow naming the first bad column. `tiers`: the program's, lowest first."""
    member_id = _member_id(row)
    get = row.get
    identities = []
    for kind in IDENTITY_KINDS:
        raw = get(kind)
        if raw and not raw.isspace():
            try:
                identities.append((kind, normalise(kind, raw)))
            except IdentityError as error:
                raise BadRow(f"{kind}: {str(error).removeprefix('value: ')}") from None
    birthday = _date(row, "birthday")
    if birthday is not None and birthday < BIRTHDAY_AFTER:
        raise BadRow(f"birthday: {birthday.isoformat()} is before {BIRTHDAY_AFTER.isoformat()}")
    locale = _cell(row, "locale") or None
    if locale is not None and locale not in LOCALES:
        raise BadRow(f"locale: {safe_text(locale, 64)} is not one of {', '.join(LOCALES)}")
    labels = _labels(_cell(row, "labels"))
    tier = _cell(row, "tier") or None
    if tier is not None and tier not in tiers:
        raise BadRow(f"tier: {safe_text(tier, 64)} is not a tier of the program ({', '.join(tiers)})")
    floor_until = _date(row, "tier_floor_until")
    if floor_until is not None and tier is None:
        raise BadRow("tier_floor_until: needs the tier it keeps (column tier)")
    enrolled_at = _time(row, "enrolled_at", zone)
    lifetime = _points(row, "lifetime_points", allow_zero=True)
    qualifying = _points(row, "qualifying_points", allow_zero=True)
    # digest() of these values, spelled out: this runs for every row of a file.
    text = "\x1f".join(
        (
            member_id,
            "|".join([f"{kind}:{value}" for kind, value in identities]),
            "" if birthday is None else birthday.isoformat(),
            locale or "",
            LABEL_SEPARATOR.join(labels),
            tier or "",
            "" if floor_until is None else floor_until.isoformat(),
            "" if enrolled_at is None else enrolled_at.isoformat(),
            "" if lifetime is None else str(lifetime),
            "" if qualifying is None else str(qualifying),
        )
    )
    return MemberRow(
        member_id,
        tuple(identities),
        birthday,
        locale,
        labels,
        tier,
        floor_until,
        enrolled_at,
        lifetime or 0,
        qualifying or 0,
        _sha256(text),
    )


def member_late(member: MemberRow, today: date) -> str | None:
    """Why a member not imported before cannot be now: a floor that has already ended."""
    if member.tier_floor_until is not None and member.tier_floor_until < today:
        return f"tier_floor_until: {member.tier_floor_until.isoformat()} is before today ({today.isoformat()})"
    return None


def parse_lot(row: dict[str, str]) -> LotRow:
    """A balance row; BadRow naming the first bad column."""
    member_id = _member_id(row)
    lot_ref = _cell(row, "lot_ref")
    if not lot_ref:
        raise BadRow("lot_ref: is empty")
    if not _LOT_REF.fullmatch(lot_ref):
        raise BadRow(
            f"lot_ref: {safe_text(lot_ref, 64)} must be 1-128 letters, digits and ._:@#/+- starting with a letter or digit"
        )
    points = _points(row, "points", allow_zero=False)
    if points is None:
        raise BadRow("points: is empty")
    earned_on = _date(row, "earned_on")
    expires_on = _date(row, "expires_on")
    if expires_on is None:
        raise BadRow("expires_on: is empty")
    if earned_on is not None and expires_on <= earned_on:
        raise BadRow(f"expires_on: {expires_on.isoformat()} is not after earned_on ({earned_on.isoformat()})")
    note = _cell(row, "note") or None
    if note is not None:
        note = safe_text(note, NOTE_CHARS_MAX)
    # digest() of these values, spelled out: this runs for every row of a file.
    text = "\x1f".join(
        (
            member_id,
            lot_ref,
            str(points),
            "" if earned_on is None else earned_on.isoformat(),
            expires_on.isoformat(),
            note or "",
        )
    )
    return LotRow(member_id, lot_ref, points, earned_on, expires_on, note, _sha256(text))


def lot_late(lot: LotRow, today: date) -> str | None:
    """Why a lot not imported before cannot be now: it has expired, or was earned in the future."""
    if lot.expires_on <= today:
        return f"expires_on: {lot.expires_on.isoformat()} is not after today ({today.isoformat()})"
    if lot.earned_on is not None and lot.earned_on > today:
        return f"earned_on: {lot.earned_on.isoformat()} is after today ({today.isoformat()})"
    return None


@lru_cache(maxsize=4096)  # a file's rows share few days; each costs a time zone look-up
def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The start of `day` in the program's time zone: when an imported lot expires on its
    `expires_on` (as the expiry warning dates it), and when it was earned on its `earned_on`."""
    return datetime.combine(day, time(0), tzinfo=zone)


def _cell(row: dict[str, str], column: str) -> str:
    return (row.get(column) or "").strip()


def _member_id(row: dict[str, str]) -> str:
    member_id = _cell(row, "member_id")
    if not member_id:
        raise BadRow("member_id: is empty")
    if not _MEMBER_ID.fullmatch(member_id):
        raise BadRow(
            f"member_id: {safe_text(member_id, 64)} must be 1-128 letters, digits and ._:@#/+- "
            "starting with a letter or digit"
        )
    return member_id


def _date(row: dict[str, str], column: str) -> date | None:
    raw = _cell(row, column)
    if not raw:
        return None
    if _DATE.fullmatch(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    raise BadRow(f"{column}: {safe_text(raw, 64)} is not a date (YYYY-MM-DD)")


def _time(row: dict[str, str], column: str, zone: ZoneInfo) -> datetime | None:
    """A date (the start of that day in the program's zone) or an ISO 8601 time with its offset."""
    raw = _cell(row, column)
    if not raw:
        return None
    if _DATE.fullmatch(raw):
        day = _date(row, column)
        assert day is not None
        return local_midnight(day, zone)
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None or len(raw) < 16:
        raise BadRow(
            f"{column}: {safe_text(raw, 64)} is not a date (YYYY-MM-DD) or a time with its offset "
            "(YYYY-MM-DDTHH:MM:SS+08:00)"
        )
    return at


def _points(row: dict[str, str], column: str, *, allow_zero: bool) -> int | None:
    raw = _cell(row, column)
    if not raw:
        return None
    lowest = 0 if allow_zero else 1
    if raw.isascii() and raw.isdigit() and len(raw) <= 15:  # the common case, without the pattern
        value = int(raw)
        if lowest <= value <= POINTS_MAX:
            return value
    if not _POINTS.fullmatch(raw) or not lowest <= int(raw) <= POINTS_MAX:
        raise BadRow(f"{column}: {safe_text(raw, 64)} is not a whole number of points ({lowest} to {POINTS_MAX})")
    return int(raw)


def _labels(raw: str) -> tuple[str, ...]:
    if not raw:
        return ()
    labels = [label.strip() for label in raw.split(LABEL_SEPARATOR)]
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise BadRow(
                f"labels: {safe_text(label, 64)!r} is not a label: {LABEL_RULE} "
                f"(labels are separated by {LABEL_SEPARATOR})"
            )
    # A set, kept sorted, as member labels are everywhere.
    unique = tuple(sorted(set(labels)))
    if len(unique) > LABELS_MAX:
        raise BadRow(f"labels: {len(unique)} labels, at most {LABELS_MAX}")
    return unique
