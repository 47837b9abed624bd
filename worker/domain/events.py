"""The event contract: what POS, web shop, app and mini-program systems send.

Validated on `publish` and again in the worker. Every error names the field it is about,
as a dotted path (``payload.amount: ...``), so a producer can fix its side without reading
this code. The JSON Schema in ``docs/event.schema.json`` is generated from these models.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_serializer,
    model_validator,
)

from worker.domain.errors import InvalidEvent
from worker.domain.identities import KINDS as IDENTITY_KINDS
from worker.domain.identities import IdentityError, normalise
from worker.domain.labels import Labels

# A raw event larger than this is refused before parsing: no legitimate event comes close,
# and parsing megabytes of JSON would stall a worker.
EVENT_BYTES_MAX = 64 * 1024
# Arrays and objects inside arrays and objects: an event needs 4 levels (event, payload,
# items, item). Deeper JSON is refused before it is parsed, since Python's parser recurses
# and a deeply nested message would crash the process reading it.
JSON_DEPTH_MAX = 16
ITEMS_MAX = 500
# Events dated further ahead than this are clock errors on the producer's side.
FUTURE_SKEW_MAX = timedelta(hours=24)
# Events dated before this are data errors (the program did not exist); the bound also keeps
# every time far from the ends of the calendar, where offsets overflow in the database.
OCCURRED_AFTER = datetime(2000, 1, 1, tzinfo=UTC)
BIRTHDAY_AFTER = date(1900, 1, 1)
# Money exactly as the published schema states it: ASCII digits, no sign, no exponent, no
# spaces or separators, at most 12 digits before the point and 2 after.
MONEY_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,2})?$"
_MONEY = re.compile(MONEY_PATTERN)
# Printable text: no C0 or C1 control characters, no invisible format characters (zero-width
# spaces, bidirectional overrides, the byte order mark), which could disguise a category.
CATEGORY_PATTERN = "^[^\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]+$"
_DIGITS = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")

Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@#/+-]*$"),
]
Source = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,32}$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Locale = Literal["en", "zh-Hans", "zh-Hant"]


def _decimal_string(value: Any) -> Any:
    """Accept exactly MONEY_PATTERN; the message says which part of it a value breaks."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError('must be a decimal string such as "350.00"')
    if _MONEY.fullmatch(value):
        return value
    if value in ("NaN", "Infinity", "-Infinity", "inf", "-inf", "nan"):
        raise ValueError("must be a finite number")
    if not _DIGITS.fullmatch(value):
        raise ValueError('must be a decimal string such as "350.00"')
    if value.startswith("-"):
        raise ValueError("must be greater than 0")
    whole, _, fraction = value.partition(".")
    if len(fraction) > 2:
        raise ValueError("must have at most 2 decimal places")
    raise ValueError("must be less than 1000000000000")


def _money_checks(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


Money = Annotated[
    Decimal,
    BeforeValidator(_decimal_string),
    AfterValidator(_money_checks),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": MONEY_PATTERN,
            "description": 'A positive decimal string with at most 2 decimal places, e.g. "350.00".',
        }
    ),
]


def _require_offset(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must include a UTC offset, e.g. 2026-11-22T10:15:00+08:00")
    if value <= OCCURRED_AFTER:
        raise ValueError(f"must be after {OCCURRED_AFTER.date().isoformat()}")
    return value


def _birthday_range(value: date) -> date:
    if value < BIRTHDAY_AFTER:
        raise ValueError(f"must be on or after {BIRTHDAY_AFTER.isoformat()}")
    return value


_ISO_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}.*", re.S)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_string(value: Any) -> Any:
    # pydantic alone would also take a number of seconds written as a string ("1700000000").
    if not isinstance(value, str) or not _ISO_DATETIME.fullmatch(value):
        raise ValueError("must be an ISO 8601 string with a UTC offset")
    return value


def _date_string(value: Any) -> Any:
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("must be a calendar date as YYYY-MM-DD, e.g. 1990-05-20")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_iso_string), AfterValidator(_require_offset)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class Item(_Strict):
    sku: Identifier
    category: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=CATEGORY_PATTERN)]
    # The line total: unit price times quantity, as charged.
    amount: Money
    quantity: Annotated[int, Field(ge=1, le=100_000, strict=True)]
    # The line's segment labels, tested by rules' `when.items.labels` / `exclude_labels`.
    labels: Labels = ()

    @model_serializer(mode="wrap")
    def _without_no_labels(self, handler: Any) -> Any:
        # A line without labels dumps as lines did before they had any, so the stored form and
        # the idempotency digest of an event sent before labels existed stay the same.
        dumped = handler(self)
        if not self.labels:
            dumped.pop("labels", None)
        return dumped


class PurchasePayload(_Strict):
    order_id: Identifier
    amount: Money
    currency: Currency
    items: Annotated[tuple[Item, ...], Field(max_length=ITEMS_MAX)] = ()

    @model_validator(mode="after")
    def _items_within_amount(self) -> PurchasePayload:
        # Line bonuses are paid on line amounts: lines worth more than the order would earn
        # points for money that was never paid.
        total = sum((item.amount for item in self.items), Decimal(0))
        if total > self.amount:
            raise ValueError(f"items: the line amounts add up to {total}, more than the order amount {self.amount}")
        return self


class RefundPayload(_Strict):
    order_id: Identifier
    refund_id: Identifier
    amount: Money
    # Optional: a refund is in its order's currency; one naming another is refused.
    currency: Currency | None = None

    @model_serializer(mode="wrap")
    def _without_absent_currency(self, handler: Any) -> Any:
        # Refunds sent without a currency dump (and hash) as they did before the field existed.
        data = handler(self)
        if isinstance(data, dict) and data.get("currency") is None:
            data.pop("currency", None)
        return data


class ReviewPayload(_Strict):
    review_id: Identifier
    order_id: Identifier
    sku: Identifier
    has_media: Annotated[bool, Field(strict=True)] = False


class ReferralPayload(_Strict):
    referee_member_id: Identifier


class CheckInPayload(_Strict):
    pass


Birthday = Annotated[date, BeforeValidator(_date_string), AfterValidator(_birthday_range)]


class SignupPayload(_Strict):
    birthday: Birthday | None = None
    locale: Locale | None = None


class MemberUpdatePayload(_Strict):
    """A change of the member's profile: each field given replaces the member's (labels as a
    whole set); a field left out, or null, stays as it is. An empty payload is accepted and
    changes nothing: it is what an erasure leaves of a stored one that gave only personal data,
    and stored events stay parseable."""

    labels: Labels | None = None
    birthday: Birthday | None = None
    locale: Locale | None = None


# The payload fields that are the member's personal data. An erasure takes them out of the
# member's stored events, and an erased member's later events are stored and applied without
# them. A replay would read them (the profile it rebuilds), so an erased member is not replayed.
PERSONAL_PAYLOAD_FIELDS: tuple[str, ...] = tuple(SignupPayload.model_fields)
# Free text an operator wrote about the member: an adjustment's `reason` may name or describe
# them ("refund for Mrs Li's broken kettle"). An erasure puts this text in its place; the field
# stays, so the stored event is still a valid `adjustment`. The adjustment's `by` stays: it
# names the operator who moved the points, the audit's answer to who, not the member.
ERASED_TEXT = "(erased)"
PERSONAL_TEXT_FIELDS: dict[str, tuple[str, ...]] = {"adjustment": ("reason",)}


def without_personal(stored: dict) -> dict:
    """A stored event (the JSON form of a contract event) without the member's personal data:
    the payload fields above, the free text an operator wrote about the member, and the
    identity the event named its member by."""
    payload = stored.get("payload")
    kept = {key: value for key, value in stored.items() if key != "member"}
    if isinstance(payload, dict):
        texts = PERSONAL_TEXT_FIELDS.get(stored.get("type", ""), ())
        kept["payload"] = {
            key: ERASED_TEXT if key in texts else value
            for key, value in payload.items()
            if key not in PERSONAL_PAYLOAD_FIELDS
        }
    return kept


# Activity kinds every program knows; a program may declare more under [activity] kinds.
ACTIVITY_KINDS: tuple[str, ...] = ("share", "survey", "trial", "profile_completed", "game")
ActivityKind = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
# Attributes describe one activity for the rules (`when.payload`), not the member: a few flat
# values, each small. Integers stay within what a JavaScript producer holds exactly.
ACTIVITY_ATTRIBUTES_MAX = 16
ATTRIBUTE_TEXT_MAX = 128
ATTRIBUTE_INT_MAX = 2**53 - 1
ATTRIBUTE_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
_ATTRIBUTE_NAME = re.compile(ATTRIBUTE_NAME_PATTERN)
_PRINTABLE = re.compile(CATEGORY_PATTERN)


def _attribute_names(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError("must be an object of attribute names and values")
    if len(value) > ACTIVITY_ATTRIBUTES_MAX:
        raise ValueError(f"{len(value)} attributes is over the limit of {ACTIVITY_ATTRIBUTES_MAX}")
    for name in value:
        if name == "kind":
            raise ValueError("'kind' is the activity's own field, not an attribute")
        if not isinstance(name, str) or not _ATTRIBUTE_NAME.fullmatch(name):
            raise ValueError(
                f"'{safe_text(str(name), 40)}' is not an attribute name: use 1-32 of a-z, 0-9 and _, "
                "starting with a letter"
            )
    return value


def _attribute_value(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > ATTRIBUTE_INT_MAX:
            raise ValueError(f"must be an integer from -{ATTRIBUTE_INT_MAX} to {ATTRIBUTE_INT_MAX}")
        return value
    if isinstance(value, float):
        raise ValueError('must be an integer; send a decimal as a string, e.g. "4.5"')
    if isinstance(value, str):
        if not 1 <= len(value) <= ATTRIBUTE_TEXT_MAX or not _PRINTABLE.fullmatch(value) or _UNSAFE.search(value):
            raise ValueError(
                f"must be 1-{ATTRIBUTE_TEXT_MAX} printable characters (no control or invisible format characters)"
            )
        return value
    raise ValueError("must be a string, an integer or true/false")


_ATTRIBUTE_VALUE_SCHEMA = {
    "anyOf": [
        {"type": "string", "minLength": 1, "maxLength": ATTRIBUTE_TEXT_MAX, "pattern": CATEGORY_PATTERN},
        {"type": "integer", "minimum": -ATTRIBUTE_INT_MAX, "maximum": ATTRIBUTE_INT_MAX},
        {"type": "boolean"},
    ]
}
AttributeValue = Annotated[StrictBool | StrictInt | StrictStr, BeforeValidator(_attribute_value)]
Attributes = Annotated[
    dict[str, AttributeValue],
    BeforeValidator(_attribute_names),
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": ACTIVITY_ATTRIBUTES_MAX,
            "propertyNames": {"pattern": ATTRIBUTE_NAME_PATTERN, "not": {"const": "kind"}},
            "additionalProperties": _ATTRIBUTE_VALUE_SCHEMA,
            "description": "Flat values the program's rules can test (when.payload): strings, integers, booleans.",
        }
    ),
]


class ActivityPayload(_Strict):
    # One of ACTIVITY_KINDS or a kind the program in force declares (check_against_program).
    kind: ActivityKind
    attributes: Attributes = Field(default_factory=dict)


def _identity_kind(value: Any) -> Any:
    if value not in IDENTITY_KINDS:
        raise ValueError(f"must be one of {', '.join(IDENTITY_KINDS)}")
    return value


IdentityKind = Annotated[
    str, BeforeValidator(_identity_kind), WithJsonSchema({"type": "string", "enum": list(IDENTITY_KINDS)})
]
IdentityValue = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class MemberIdentity(_Strict):
    """A member named by one of their identities (docs/identities.md); `value` is kept in its
    normal form (E.164 phone, lower-case e-mail, trimmed card and openid)."""

    kind: IdentityKind
    value: IdentityValue

    @model_validator(mode="after")
    def _normal_form(self) -> MemberIdentity:
        try:
            normal = normalise(self.kind, self.value)
        except IdentityError as error:
            raise ValueError(str(error)) from None
        if normal != self.value:
            object.__setattr__(self, "value", normal)
        return self


# Problems are reported in the order of the envelope's fields.
_FIELD_ORDER = {name: i for i, name in enumerate(("event_id", "source", "member_id", "member", "occurred_at"))}


class _Envelope(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        str_strip_whitespace=False,
        json_schema_extra={"oneOf": [{"required": ["member_id"]}, {"required": ["member"]}]},
    )

    event_id: Identifier
    source: Source
    # Exactly one of the two: the member's id, or one of their identities (resolved to the
    # member's id by intake before the ledger sees the event).
    member_id: Identifier | None = None
    member: MemberIdentity | None = None
    occurred_at: Timestamp
    # How the producer named the member, once intake has resolved member_id (named_member):
    # the event's digest is of the event as sent, so a redelivery after a merge is a duplicate.
    _sent: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _one_member(cls, data: Any, handler: Any) -> Any:
        # A wrap validator, so that a missing member is reported with the event's other problems.
        missing = isinstance(data, dict) and "member_id" not in data and "member" not in data
        try:
            event = handler(data)
        except ValidationError as error:
            if not missing:
                raise
            problems = [{"type": "missing", "loc": ("member_id",), "input": data}, *error.errors()]
            problems.sort(key=lambda p: _FIELD_ORDER.get(str(p["loc"][0]) if p["loc"] else "", len(_FIELD_ORDER)))
            raise ValidationError.from_exception_data(error.title, problems) from None  # type: ignore[arg-type]
        if missing:
            raise ValidationError.from_exception_data(
                cls.__name__, [{"type": "missing", "loc": ("member_id",), "input": data}]
            )
        if event.member_id is not None and event.member is not None:
            raise ValueError("member: give member_id or member, not both")
        return event


class PurchaseEvent(_Envelope):
    type: Literal["purchase"]
    payload: PurchasePayload


class RefundEvent(_Envelope):
    type: Literal["refund"]
    payload: RefundPayload


class ReviewEvent(_Envelope):
    type: Literal["review"]
    payload: ReviewPayload


class ReferralEvent(_Envelope):
    type: Literal["referral"]
    payload: ReferralPayload


class CheckInEvent(_Envelope):
    type: Literal["check_in"]
    payload: CheckInPayload = CheckInPayload()


class SignupEvent(_Envelope):
    type: Literal["signup"]
    payload: SignupPayload = SignupPayload()


class ActivityEvent(_Envelope):
    type: Literal["activity"]
    payload: ActivityPayload


class MemberUpdateEvent(_Envelope):
    """The member's labels, birthday or locale as of `occurred_at` (docs/rules.md, labels)."""

    type: Literal["member_update"]
    payload: MemberUpdatePayload


EARNING_EVENTS = (PurchaseEvent, RefundEvent, ReviewEvent, ReferralEvent, CheckInEvent, SignupEvent, ActivityEvent)

# Points mall (docs/mall.md). One redemption event buys at most this many units: a basket
# of more is several events, and the cap bounds what one typo can spend.
REDEMPTION_QUANTITY_MAX = 20


class RedemptionPayload(_Strict):
    reward_id: Identifier
    quantity: Annotated[int, Field(ge=1, le=REDEMPTION_QUANTITY_MAX, strict=True)] = 1


class RedemptionCancelPayload(_Strict):
    # The event_id of the member's redemption event to cancel.
    redemption_event_id: Identifier


class RedemptionEvent(_Envelope):
    type: Literal["redemption"]
    payload: RedemptionPayload


class RedemptionCancelEvent(_Envelope):
    type: Literal["redemption_cancel"]
    payload: RedemptionCancelPayload


MALL_EVENTS = (RedemptionEvent, RedemptionCancelEvent)


class IdentityLinkPayload(MemberIdentity):
    pass


class IdentityLinkEvent(_Envelope):
    """The identity now belongs to `member_id`: attached if free, else the two members merge."""

    type: Literal["identity_link"]
    payload: IdentityLinkPayload

    @model_validator(mode="after")
    def _by_member_id(self) -> IdentityLinkEvent:
        if self.member is not None:
            raise ValueError("member: an identity_link names the member that gets the identity by member_id")
        return self


IDENTITY_EVENTS = (IdentityLinkEvent,)
PROFILE_EVENTS = (MemberUpdateEvent,)

# An operator's adjustment (docs/operations.md, "Adjusting a member's points"). One adjustment
# moves at most this many points either way: a larger one is a typo, or a balance import.
ADJUSTMENT_POINTS_MAX = 100_000_000
ADJUSTMENT_REASON_MAX = 500
ADJUSTMENT_BY_MAX = 128


def _required_text(value: str) -> str:
    if not value.strip():
        raise ValueError("is required")
    if not _PRINTABLE.fullmatch(value):
        raise ValueError("must be printable text (no control or invisible format characters)")
    return value


def _not_zero(value: int) -> int:
    if value == 0:
        raise ValueError("must not be 0: give a credit (+500) or a debit (-200)")
    return value


class AdjustmentPayload(_Strict):
    # Signed: a credit is a lot of its own, a debit takes points earliest-expiring first.
    points: Annotated[
        int, Field(ge=-ADJUSTMENT_POINTS_MAX, le=ADJUSTMENT_POINTS_MAX, strict=True), AfterValidator(_not_zero)
    ]
    reason: Annotated[StrictStr, Field(max_length=ADJUSTMENT_REASON_MAX), AfterValidator(_required_text)]
    by: Annotated[StrictStr, Field(max_length=ADJUSTMENT_BY_MAX), AfterValidator(_required_text)]
    # The credit's last day is the day before: its lot expires at the start of this program-local
    # day. None: by the program's expiry rule, as earned points.
    expires_on: Annotated[date, BeforeValidator(_date_string)] | None = None
    # Whether the points count towards tiers (qualifying points); by default they do not.
    qualifying: StrictBool = False

    @model_validator(mode="after")
    def _expiry_of_a_credit(self) -> AdjustmentPayload:
        if self.expires_on is not None and self.points < 0:
            raise ValueError("expires_on: goes with a credit (positive points) only")
        return self


class AdjustmentEvent(_Envelope):
    """An operator's goodwill credit or debit of a member's points, with who and why."""

    type: Literal["adjustment"]
    payload: AdjustmentPayload


ADJUSTMENT_EVENTS = (AdjustmentEvent,)

# The one list of event types: the union, EVENT_TYPES, the schema and its reasons derive from
# it; a test holds docs/events.md to it. A new type is its model here and a ledger handler.
EVENT_MODELS = (*EARNING_EVENTS, *MALL_EVENTS, *IDENTITY_EVENTS, *ADJUSTMENT_EVENTS, *PROFILE_EVENTS)
Event = Annotated[Union[EVENT_MODELS], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007 - a tuple of models
EVENT_TYPES: tuple[str, ...] = tuple(cls.model_fields["type"].annotation.__args__[0] for cls in EVENT_MODELS)

_adapter: TypeAdapter = TypeAdapter(Event)


_UNSAFE = re.compile(r"[^\x20-\x7e\u00a0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NAMED_FIELD = re.compile(r"^([a-z_]{1,32}): (.*)$", re.S)
SAFE_TEXT_MAX = 2000


def safe_text(value: str, limit: int = SAFE_TEXT_MAX) -> str:
    """Text that can be stored and logged as it is: control characters, lone surrogates and
    other unprintable code points written as a backslash escape of their code point in hex,
    cut to `limit` characters."""
    escaped = value
    if not (value.isascii() and value.isprintable()):  # ids and most reasons have nothing to escape
        escaped = _UNSAFE.sub(
            lambda m: f"\\u{ord(m.group()):04x}" if ord(m.group()) < 0x10000 else f"\\U{ord(m.group()):08x}", value
        )
        escaped = "".join(
            c if unicodedata.category(c) not in ("Cf", "Zl", "Zp") else f"\\u{ord(c):04x}" for c in escaped
        )
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


def nested_deeper_than(value: Any, limit: int = JSON_DEPTH_MAX) -> bool:
    """Whether a decoded JSON value nests arrays and objects deeper than `limit` (walked
    without recursion, so any depth the parser survived is measured safely)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def event_size_bytes(raw: Any) -> int:
    """The one measure of an event's size: UTF-8 bytes of the text as received, or of the
    compact JSON encoding of an already decoded value (which is never larger, so an event
    `publish` accepts is accepted by the worker too)."""
    if isinstance(raw, bytes):
        return len(raw)
    if isinstance(raw, str):
        return len(raw.encode("utf-8", errors="surrogatepass"))
    try:
        # orjson writes the same compact UTF-8 several times faster (a batch is measured whole);
        # what it refuses (integers over 64 bits, lone surrogates, keys that are not strings)
        # is measured by the standard library as before.
        return len(orjson.dumps(raw, default=str))
    except orjson.JSONEncodeError:
        encoded = json.dumps(raw, ensure_ascii=False, separators=(",", ":"), default=str)
        return len(encoded.encode("utf-8", errors="surrogatepass"))


def _field_path(loc: tuple) -> str:
    parts = [safe_text(str(p), 64) for p in loc]
    # The discriminated union puts the type tag first ("purchase.payload.amount"): drop it.
    if parts and parts[0] in EVENT_TYPES:
        parts = parts[1:]
    return ".".join(parts)


def _reason(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        path = _field_path(item["loc"])
        kind = item["type"]
        if kind == "union_tag_invalid":
            message = f"must be one of {', '.join(EVENT_TYPES)}"
            path = "type"
        elif kind == "union_tag_not_found":
            message, path = "is required", "type"
        elif kind == "missing":
            message = "is required"
        elif kind == "extra_forbidden":
            message = "is not a known field"
        elif kind in ("string_pattern_mismatch", "string_too_long", "string_too_short") and path.endswith(
            ("_id", "sku")
        ):
            message = "must be 1-128 characters: letters, digits and . _ : @ # / + - (starting with a letter or digit)"
        elif kind == "string_pattern_mismatch" and path == "source":
            message = "must be 1-32 characters of a-z, 0-9, _ and -"
        elif kind in ("string_pattern_mismatch", "string_too_long", "string_too_short") and path.endswith("category"):
            message = "must be 1-64 printable characters (no control or invisible format characters)"
        elif kind == "string_pattern_mismatch" and path == "payload.kind":
            message = "must be 1-64 characters of a-z, 0-9, _ . and - (starting with a letter or digit)"
        elif kind == "string_pattern_mismatch" and path.endswith("currency"):
            message = "must be a three-letter ISO 4217 code such as CNY"
        elif kind.startswith("date_") and path.endswith("birthday"):
            message = "must be a calendar date as YYYY-MM-DD, e.g. 1990-05-20"
        elif kind == "string_unicode":
            message = "must be valid Unicode text (a lone surrogate such as \\ud800 is not)"
            if not path:
                path = "event"
        elif kind in ("decimal_parsing", "decimal_type"):
            message = 'must be a decimal string such as "350.00"'
        else:
            message = item["msg"].removeprefix("Value error, ")
            # pydantic says "Input should be ..."; every other message here says "must be ...".
            if message.startswith("Input should be "):
                message = "must be " + message.removeprefix("Input should be ")
            named = _NAMED_FIELD.match(message) if kind == "value_error" else None
            if named:  # a check across fields names the one it is about
                path = f"{path}.{named.group(1)}" if path else named.group(1)
                message = named.group(2)
        problems.append(f"{path}: {message}" if path else message)
    return "; ".join(problems)


_TOO_DEEP = f"event: nests arrays and objects deeper than {JSON_DEPTH_MAX} levels"


def parse_event(data: Any) -> Any:
    """Validate one decoded JSON value against the contract; raise InvalidEvent naming the field."""
    if not isinstance(data, dict):
        raise InvalidEvent(f"event: must be a JSON object, got {type(data).__name__}")
    if nested_deeper_than(data):
        raise InvalidEvent(_TOO_DEEP)
    try:
        return _adapter.validate_python(data)
    except ValidationError as error:
        raise InvalidEvent(_reason(error)) from None


def check_size(raw: Any) -> None:
    try:
        size = event_size_bytes(raw)
    except RecursionError:  # a decoded value too deep to encode; parse_event names it otherwise
        raise InvalidEvent(_TOO_DEEP) from None
    if size > EVENT_BYTES_MAX:
        raise InvalidEvent(f"event: {size} bytes is over the limit of {EVENT_BYTES_MAX} bytes")


def decode_event(raw: str | bytes) -> Any:
    """Parse one JSON text (one line of JSON Lines) into a validated event."""
    check_size(raw)
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent("event: is not valid UTF-8") from None
    try:
        data = json.loads(raw, parse_float=_refuse_float_literal, parse_constant=_refuse_constant)
    except _FloatLiteral:
        # Re-parse leniently so the error can name the field holding the float.
        data = json.loads(raw, parse_constant=_refuse_constant)
    except _ConstantLiteral as error:
        raise InvalidEvent(f"event: {error.args[0]} is not valid JSON") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidEvent(f"event: not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidEvent(_TOO_DEEP) from None
    except ValueError as error:  # e.g. an integer of more digits than Python converts
        raise InvalidEvent(f"event: not valid JSON: {safe_text(str(error), 200)}") from None
    return parse_event(data)


class _FloatLiteral(Exception):
    pass


class _ConstantLiteral(Exception):
    pass


def _refuse_float_literal(text: str) -> float:
    raise _FloatLiteral(text)


def _refuse_constant(text: str) -> float:
    raise _ConstantLiteral(text)


def _check_currency(currency: str, program: Any) -> None:
    accepted = program.accepted_currencies
    if currency not in accepted:
        raise InvalidEvent(
            f"payload.currency: {currency} is not accepted by this program (accepted: {', '.join(accepted)})"
        )


def check_against_program(event: Any, program: Any, now: datetime) -> None:
    """Checks that need the program or the clock, not just the contract."""
    if (
        isinstance(event, (SignupEvent, MemberUpdateEvent))
        and event.payload.birthday is not None
        and event.payload.birthday > now.date()
    ):
        raise InvalidEvent("payload.birthday: must not be in the future")
    if event.occurred_at - now > FUTURE_SKEW_MAX:
        raise InvalidEvent(
            f"occurred_at: {event.occurred_at.isoformat()} is more than "
            f"{int(FUTURE_SKEW_MAX.total_seconds() // 3600)} hours in the future"
        )
    if isinstance(event, PurchaseEvent):
        payload = event.payload
        _check_currency(payload.currency, program)
        if payload.amount > program.purchase.amount_max:
            raise InvalidEvent(
                f"payload.amount: {payload.amount} is over the program's limit of {program.purchase.amount_max}"
            )
    if isinstance(event, RefundEvent) and event.payload.currency is not None:
        _check_currency(event.payload.currency, program)
    if isinstance(event, RefundEvent) and event.payload.amount > program.purchase.amount_max:
        raise InvalidEvent(
            f"payload.amount: {event.payload.amount} is over the program's limit of {program.purchase.amount_max}"
        )
    if isinstance(event, ActivityEvent) and event.payload.kind not in program.activity_kinds:
        raise InvalidEvent(
            f"payload.kind: {event.payload.kind} is not an activity kind of this program "
            f"(kinds: {', '.join(program.activity_kinds)})"
        )
    if isinstance(event, AdjustmentEvent) and event.payload.expires_on is not None:
        day = event.occurred_at.astimezone(program.zone).date()
        if event.payload.expires_on <= day:
            raise InvalidEvent(
                f"payload.expires_on: {event.payload.expires_on.isoformat()} must be after {day.isoformat()}"
            )
    if isinstance(event, ReferralEvent) and event.payload.referee_member_id == event.member_id:
        raise InvalidEvent("payload.referee_member_id: a member cannot refer themselves")


def named_member(event: Any, member_id: str) -> Any:
    """The event with `member_id` the member it lands on (the owner of its identity, or the
    member a merge kept), remembering how it was sent for its digest."""
    if event.member_id == member_id:
        return event
    resolved = event.model_copy(update={"member_id": member_id})
    resolved._sent = event._sent or {
        "member_id": event.member_id,
        "member": event.member.model_dump(mode="json") if event.member is not None else None,
    }
    return resolved


def payload_hash(event: Any, dumped: dict[str, Any] | None = None) -> str:
    """A digest of the validated event as its producer sent it, so a replay can be told from a
    reused id. `dumped`: the event's `model_dump(mode="json")` when the caller has it already."""
    data = dict(dumped) if dumped is not None else event.model_dump(mode="json")
    data.update(event._sent or {})
    if data.get("member") is None:  # as events were hashed before identities: no such key
        data.pop("member", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def event_json_schema() -> dict:
    schema = _adapter.json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Loyalty event",
        "description": "One event as producers send it; see docs/events.md. Money amounts are decimal strings.",
        **schema,
    }
