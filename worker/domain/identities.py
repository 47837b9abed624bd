"""Identities: the phone numbers, cards, WeChat openids and e-mail addresses that name a member.

Pure. Each kind has one normal form, so that the same person typed two ways at two tills is
one identity: a phone as E.164 (`+` and 8 to 15 digits, the country code included: no
default country is assumed, since one program may serve several), an e-mail trimmed and
lower-cased, a card number or openid trimmed. Identities are personal data: they are never
logged, and `identity_member_id` derives a member id from one without showing it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from datetime import UTC, datetime

KINDS: tuple[str, ...] = ("phone", "card", "wechat_openid", "email")

# E.164: a country code and subscriber number, at most 15 digits, never starting with 0.
_E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
# What people put between the digits of a phone number.
_PHONE_SEPARATORS = re.compile(r"[ \t\-.()]")
_CARD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_OPENID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
EMAIL_LENGTH_MAX = 254
_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
# The member id of a member enrolled by an identity: `id-` and this many hex digits of the
# identity's digest (64 bits: a collision needs billions of identities).
GENERATED_ID_HEX = 16
# Stands in for the first event time of a member who has none, only to compare (see survivor_of).
_NO_EVENT = datetime.max.replace(tzinfo=UTC)


class IdentityError(ValueError):
    """An identity that is not of a known kind or not in a form its kind accepts; the message
    names the field (`kind: ...` or `value: ...`) and never repeats the value."""


def normalise(kind: str, value: str) -> str:
    """The normal form of `value` as an identity of `kind`; IdentityError when it has none."""
    if kind not in KINDS:
        raise IdentityError(f"kind: must be one of {', '.join(KINDS)}")
    if not isinstance(value, str):
        raise IdentityError("value: must be a string")
    trimmed = value.strip()
    if kind == "phone":
        if _E164.fullmatch(trimmed):  # most numbers come written in their normal form
            return trimmed
        phone = _PHONE_SEPARATORS.sub("", trimmed)
        if not _E164.fullmatch(phone):
            raise IdentityError(
                "value: must be a phone number in E.164 form with its country code, e.g. +8613800000000"
            )
        return phone
    if kind == "email":
        email = trimmed.lower()
        if len(email) > EMAIL_LENGTH_MAX or not _EMAIL.fullmatch(email):
            raise IdentityError("value: must be an e-mail address such as name@example.com")
        return email
    if kind == "card":
        if not _CARD.fullmatch(trimmed):
            raise IdentityError("value: must be 1-64 characters of letters, digits, _ and -")
        return trimmed
    if not _OPENID.fullmatch(trimmed):
        raise IdentityError("value: must be 1-128 characters of letters, digits, _ and -")
    return trimmed


def parse_identity(text: str) -> tuple[str, str]:
    """`phone:+8613800000000` as (kind, normal form); IdentityError naming what is wrong."""
    kind, separator, value = text.partition(":")
    if not separator:
        raise IdentityError("identity: must be KIND:VALUE, e.g. phone:+8613800000000")
    return kind, normalise(kind, value)


def looks_like_identity(text: str) -> bool:
    """Whether an operator's argument names an identity (`card:8800123`) rather than a member id:
    its part before the first `:` is a kind."""
    kind, separator, _ = text.partition(":")
    return bool(separator) and kind in KINDS


def identity_member_id(kind: str, value: str) -> str:
    """The member id of the member an identity enrols: the same for every redelivery and every
    worker, so two workers seeing a new card at once enrol one member."""
    digest = hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()
    return f"id-{digest[:GENERATED_ID_HEX]}"


def survivor_of(first: tuple[datetime | None, str], second: tuple[datetime | None, str]) -> str:
    """Of two members to merge, as (first_event_at, member_id), the one that stays: the one
    whose first event occurred earliest (event time, so not the order the worker saw them in),
    and of two with the same first moment the lower member id. A member with no event yet
    (None: enrolled by a link alone) comes after any member with one."""
    return min((at or _NO_EVENT, member_id) for at, member_id in (first, second))[1]


def names_identity(raw: str, identities: Collection[tuple[str, str]]) -> bool:
    """Whether a raw event text names any of `identities` (kind, normal form): as an identity
    object anywhere in it (`member`, an identity_link's `payload`), compared in normal form so
    that `+86 138-0000-0000` is `+8613800000000`, or as the normal form anywhere in the text,
    case-insensitively (a text that is not JSON, or a value in another field)."""
    lowered = raw.lower()
    if any(value.lower() in lowered for _, value in identities):
        return True
    try:
        decoded = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    wanted = set(identities)
    stack = [decoded]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if _identity_of(node) in wanted:
                return True
            stack.extend(node.values())
    return False


def _identity_of(node: dict[str, object]) -> tuple[str, str] | None:
    """A JSON object's (kind, normal form) when it is an identity object; None otherwise (no
    identity in any form, so nothing of any member's)."""
    kind, value = node.get("kind"), node.get("value")
    if not (isinstance(kind, str) and kind in KINDS and isinstance(value, str)):
        return None
    try:
        return kind, normalise(kind, value)
    except IdentityError:
        return None
