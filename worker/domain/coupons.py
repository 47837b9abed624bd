"""Coupon codes: the pool file's lines, generated codes, expiry, and whether a till may use one. Pure; no I/O.

A coupon reward (`kind = "coupon"` in the rewards file) hands the member one code per unit
redeemed, taken from a pool the operator loads (`loyalty rewards codes load`) or generated at
redemption. The code is valid for the reward's `valid_days` program-local days, the day of
issue being the first, and a till uses it once.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from worker.domain.errors import CouponRefused

# Codes travel in URLs (`/v1/coupons/{code}`) and are read out at tills: no spaces, no slashes.
CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CODE_RULE = "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
# A pool file is a vendor's export; one with more lines than this is a mistake, not a pool.
CODES_PER_FILE_MAX = 1_000_000
# The bad lines named in one error: enough to see the pattern of a broken file.
BAD_LINES_SHOWN_MAX = 5
# A generated code is its reward's prefix and 10 random bytes in base32: 16 characters of
# A-Z and 2-7, easy to read out at a till, and 80 bits that nobody guesses.
GENERATED_CODE_BYTES = 10
CODE_PREFIX_PATTERN = r"^[A-Z0-9][A-Z0-9-]{0,15}$"
# The longest validity a reward may give its coupons (ten years).
VALID_DAYS_MAX = 3650

# Where a coupon stands. `available` is a pool code not yet handed out (no coupon to anyone);
# `expired` is never stored: it is an issued coupon past its last day.
AVAILABLE = "available"
ISSUED = "issued"
USED = "used"
EXPIRED = "expired"
CANCELLED = "cancelled"
# Why a till may not use a coupon, by its status: the error codes of the HTTP API.
USE_REFUSALS = {USED: "coupon_used", EXPIRED: "coupon_expired", CANCELLED: "coupon_cancelled"}


@dataclass(frozen=True)
class CodeFile:
    """A pool file's codes, each once, in file order, and how many lines repeated one."""

    codes: tuple[str, ...]
    duplicates: int


def parse_codes(lines: Iterable[str], origin: str) -> CodeFile:
    """One code per line; whitespace around a code and blank lines are ignored.

    Raises CouponRefused naming the first bad lines (by number) when any line is not a valid
    code, or when the file has more than CODES_PER_FILE_MAX codes: a file is loaded whole or
    not at all.
    """
    seen: dict[str, None] = {}
    duplicates = 0
    bad: list[str] = []
    bad_count = 0
    for number, raw in enumerate(lines, start=1):
        code = raw.strip()
        if not code:
            continue
        if not CODE_PATTERN.match(code):
            bad_count += 1
            if len(bad) < BAD_LINES_SHOWN_MAX:
                bad.append(f"{origin}:{number}: code {code[:80]!r} {CODE_RULE}")
            continue
        if code in seen:
            duplicates += 1
        else:
            seen[code] = None
            if len(seen) > CODES_PER_FILE_MAX:
                raise CouponRefused(f"{origin}: more than {CODES_PER_FILE_MAX} codes; split the file")
    if bad:
        more = f" (and {bad_count - len(bad)} more bad lines)" if bad_count > len(bad) else ""
        raise CouponRefused("; ".join(bad) + more)
    return CodeFile(tuple(seen), duplicates)


def generated_code(prefix: str | None, random_bytes: bytes) -> str:
    """A generated code: the reward's prefix, then the random bytes in base32 without padding."""
    return (prefix or "") + base64.b32encode(random_bytes).decode("ascii").rstrip("=")


def expires_on(issued_at: datetime, zone: ZoneInfo, valid_days: int) -> date:
    """The last program-local day a coupon issued at `issued_at` may be used: the day of issue
    is the first of its `valid_days` (1: that day only)."""
    if valid_days < 1:
        raise ValueError(f"valid_days must be at least 1, not {valid_days}")
    return issued_at.astimezone(zone).date() + timedelta(days=valid_days - 1)


def status_on(stored: str, last_day: date | None, today: date) -> str:
    """The status a coupon shows on program-local `today`: an issued one past its last day is expired."""
    if stored == ISSUED and last_day is not None and today > last_day:
        return EXPIRED
    return stored


def use_refusal(status: str) -> str | None:
    """None when a till may use a coupon of this (shown) status, else the error code."""
    return USE_REFUSALS.get(status)
