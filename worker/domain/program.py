"""The loyalty program: every number the earning rules use, with the built-in default.

A program file (TOML) replaces any of these values; unknown keys are errors, so a
typo never silently falls back to a default. Files are read by
worker.domain.engine.program_file, which also reads the rule language.
"""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal
from itertools import pairwise
from typing import Annotated, Any, Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from worker.domain.errors import ProgramError
from worker.domain.events import ACTIVITY_KINDS

Multiplier = Annotated[Decimal, Field(gt=0, le=100)]
Points = Annotated[int, Field(ge=0, le=1_000_000)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Level(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def threshold(self) -> int | Decimal: ...


_LevelT = TypeVar("_LevelT", bound=_Level)


def check_ascending(levels: tuple[_LevelT, ...], noun: str) -> tuple[_LevelT, ...]:
    """Tier levels (anything with name and threshold) from threshold 0, rising, names unique;
    `noun` names them in the errors ("tier", "level")."""
    if not levels:
        raise ValueError(f"at least one {noun} is required")
    if levels[0].threshold != 0:
        raise ValueError(f"the first {noun} must have threshold 0")
    for lower, higher in pairwise(levels):
        if higher.threshold <= lower.threshold:
            raise ValueError(f"{noun} {higher.name!r} must have a higher threshold than {lower.name!r}")
    names = [level.name for level in levels]
    if len(set(names)) != len(names):
        raise ValueError(f"{noun} names must be unique")
    return levels


class Tier(_Section):
    name: Annotated[str, Field(min_length=1, max_length=32)]
    threshold: Annotated[int, Field(ge=0)]
    multiplier: Multiplier


class PurchaseRules(_Section):
    currencies: tuple[str, ...] = ("CNY",)
    first_purchase_bonus: Points = 100
    # Larger single orders are data errors (a misplaced decimal point), not sales.
    amount_max: Annotated[Decimal, Field(gt=0)] = Decimal("1000000.00")


class MemberDay(_Section):
    enabled: bool = True
    # Monthly on this day (a day past the month's end falls on its last day)...
    day_of_month: Annotated[int, Field(ge=1, le=31)] = 8
    # ...or weekly on these ISO weekdays (1 = Monday ... 7 = Sunday) instead.
    weekdays: Annotated[tuple[Annotated[int, Field(ge=1, le=7)], ...], Field(min_length=1)] | None = None
    multiplier: Multiplier = Decimal("2")

    @model_validator(mode="after")
    def _monthly_or_weekly(self) -> MemberDay:
        if self.weekdays is not None and "day_of_month" in self.model_fields_set:
            raise ValueError("give day_of_month (monthly) or weekdays (weekly), not both")
        return self


class Birthday(_Section):
    multiplier: Multiplier = Decimal("3")
    gift_points: Points = 200


class Signup(_Section):
    points: Points = 50


class CheckIn(_Section):
    points: Points = 10
    streak_days: Annotated[int, Field(ge=2, le=366)] = 7
    streak_bonus: Points = 50


class Review(_Section):
    points: Points = 20
    media_bonus: Points = 30
    daily_limit: Annotated[int, Field(ge=0, le=1000)] = 3


class Referral(_Section):
    referrer_points: Points = 200
    referee_points: Points = 100
    # A referral pays only for a new member: one whose first event occurred at most this many
    # days before the referral, with no purchase before it (event time; docs/program.md).
    referee_new_days: Annotated[int, Field(ge=0, le=3660)] = 30


class Refunds(_Section):
    # A full refund also takes back the fixed points its purchase earned (first-purchase and
    # minimum-order bonuses); a partial refund takes back the amount-based points only.
    reverse_bonuses: bool = True


class Nudge(_Section):
    # A member who comes within this many points below the next tier hears about it once per
    # approach; a new nudge only after the distance grew back beyond it.
    window_points: Annotated[int, Field(ge=0)] = 500
    # No second tier nudge to a member within this many days of the last one sent (0: none).
    quiet_period_days: Annotated[int, Field(ge=0, le=365)] = 7


class Expiry(_Section):
    days: Annotated[int, Field(ge=1, le=36_500)] = 365
    # Members hear about points expiring within this many days (expiry-warnings job).
    warning_days: Annotated[int, Field(ge=1, le=365)] = 30


class Pending(_Section):
    days: Annotated[int, Field(ge=0, le=365)] = 0


class Multipliers(_Section):
    """Extra multipliers for purchase lines, by item category or SKU (SKU wins)."""

    categories: dict[str, Multiplier] = Field(default_factory=dict)
    skus: dict[str, Multiplier] = Field(default_factory=dict)


class Campaign(_Section):
    """A time-boxed purchase multiplier, e.g. double points on ecommerce for three days."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    multiplier: Multiplier
    starts_on: date
    ends_on: date
    sources: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Campaign:
        if self.ends_on < self.starts_on:
            raise ValueError("ends_on is before starts_on")
        return self


class QuietHours(_Section):
    """Program-local hours when notifications are held; they go out when the hours end.
    `start` after `end` spans midnight (22:00-08:00). `scope` "promotional" holds only
    promotional kinds; "all" holds every kind."""

    start: time
    end: time
    scope: Literal["all", "promotional"] = "all"

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class Notifications(_Section):
    """How notifications are delivered, and how many a member may get."""

    # "log" writes a structured log line; "webhook" POSTs JSON to LOYALTY_WEBHOOK_URL.
    channel: Literal["log", "webhook"] = "log"
    # Where the webhook channel POSTs; LOYALTY_WEBHOOK_URL overrides it. The signing secret
    # is never in this file: it comes from LOYALTY_WEBHOOK_SECRET only.
    webhook_url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    # A receiver slower than this is counted as a failed attempt and retried later.
    webhook_timeout_ms: Annotated[int, Field(ge=100, le=60_000)] = 5_000
    # Attempts before a notification is marked dead (kept for ops; `notifications retry`).
    max_attempts: Annotated[int, Field(ge=1, le=50)] = 8
    quiet_hours: QuietHours | None = None
    # Promotional messages (tier_nudge, member_day, points_expiring, birthday) a member
    # gets per program-local day; the rest are suppressed. None: no cap.
    daily_promotional_cap: Annotated[int, Field(ge=0, le=100)] | None = 3


Crontab = Annotated[str, Field(pattern=r"^\S+ \S+ \S+ \S+ \S+$")]


class Job(_Section):
    """One calendar job: a five-field crontab in the program's time zone."""

    enabled: bool = True
    cron: Crontab


class TierReview(Job):
    enabled: bool = False
    cron: Crontab = "0 2 1 1 *"  # yearly, 1 January 02:00
    # Qualifying points earned in this many days must reach the tier's threshold to keep it.
    window_days: Annotated[int, Field(ge=1, le=3660)] = 365
    # A member upgraded within this many days keeps the tier until the next review.
    grace_days: Annotated[int, Field(ge=0, le=3660)] = 0


class Schedule(_Section):
    expire_points: Job = Job(cron="5 0 * * *")
    expiry_warnings: Job = Job(cron="0 10 * * *")
    release_pending: Job = Job(cron="0 * * * *")
    birthday: Job = Job(cron="10 0 * * *")
    member_day: Job = Job(cron="0 9 * * *")
    tier_review: TierReview = TierReview()
    # Members per job chunk (one message, one transaction for the set-based jobs).
    chunk_members: Annotated[int, Field(ge=10, le=10_000)] = 1000
    # A firing missed by up to this long (scheduler down, machine asleep) runs once on start.
    misfire_grace_s: Annotated[int, Field(ge=1, le=7 * 86400)] = 6 * 3600
    # Members counted as active for member-day messages: seen within this many days.
    active_days: Annotated[int, Field(ge=1, le=3660)] = 180


def _currency_code(value: str) -> str:
    if not (len(value) == 3 and value.isascii() and value.isalpha() and value.isupper()):
        raise ValueError(f"{value!r} is not a currency code: three capital letters (ISO 4217), e.g. CNY")
    return value


def _decimal_text(value: Any) -> Any:
    # Money and rates are decimal strings (or whole numbers), never TOML floats: 0.1 as a float
    # is not 0.1.
    if isinstance(value, float):
        raise ValueError('must be a decimal string such as "7.2", not a TOML float')
    return value


CurrencyCode = Annotated[str, AfterValidator(_currency_code)]
Rate = Annotated[Decimal, BeforeValidator(_decimal_text), Field(gt=0, le=1_000_000)]


class AcceptedCurrency(_Section):
    """A currency accepted beside the base: what one unit of it is worth in the base."""

    rate: Rate


class Currencies(_Section):
    """The currency amounts are earned in (`base`) and the others accepted, each converted to
    the base before the earning rules see it (worker/domain/currencies.py)."""

    base: CurrencyCode
    accepted: dict[str, AcceptedCurrency] = Field(default_factory=dict)

    def problems(self) -> list[str]:
        """What is wrong with the accepted codes, each naming its key (the Program reports them,
        with the whole path)."""
        found = []
        for code in self.accepted:
            try:
                _currency_code(code)
            except ValueError as error:
                found.append(f"currencies.accepted.{code}: {error}")
        if self.base in self.accepted:
            found.append(f"currencies.accepted.{self.base}: the base currency needs no rate; remove this key")
        return found


DEFAULT_TIERS = (
    Tier(name="Regular", threshold=0, multiplier=Decimal("1.0")),
    Tier(name="Silver", threshold=1000, multiplier=Decimal("1.2")),
    Tier(name="Gold", threshold=5000, multiplier=Decimal("1.5")),
    Tier(name="Diamond", threshold=15000, multiplier=Decimal("2.0")),
)


class Program(_Section):
    # Earning rules in the rule language that replace the ones derived from this program's
    # sections (a rule-language file or a published version); see worker.domain.engine.rules_of.
    _rules: Any = PrivateAttr(default=None)

    name: str = "default"
    timezone: str = "Asia/Shanghai"
    default_locale: str = "en"
    # Money value of one point, for liability reports, in `currency` (an ISO 4217 code).
    point_value: Annotated[Decimal, Field(ge=0)] = Decimal("0.01")
    currency: str = "CNY"
    # None: amounts are taken as sent, in any of purchase.currencies (docs/program.md#currencies).
    currencies: Currencies | None = None
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    purchase: PurchaseRules = PurchaseRules()
    member_day: MemberDay = MemberDay()
    birthday: Birthday = Birthday()
    signup: Signup = Signup()
    check_in: CheckIn = CheckIn()
    review: Review = Review()
    referral: Referral = Referral()
    refunds: Refunds = Refunds()
    nudge: Nudge = Nudge()
    expiry: Expiry = Expiry()
    pending: Pending = Pending()
    multipliers: Multipliers = Multipliers()
    campaigns: tuple[Campaign, ...] = ()
    notifications: Notifications = Notifications()
    schedule: Schedule = Schedule()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("currency")
    @classmethod
    def _currency_code(cls, value: str) -> str:
        return _currency_code(value)

    @model_validator(mode="after")
    def _currencies(self) -> Program:
        if self.currencies is None:
            return self
        problems = self.currencies.problems()
        if "currencies" in self.purchase.model_fields_set:
            problems.append("purchase.currencies: [currencies] lists the accepted currencies; remove this key")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("tiers")
    @classmethod
    def _tiers_ascending(cls, tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
        return check_ascending(tiers, "tier")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def activity_kinds(self) -> tuple[str, ...]:
        """The kinds an activity event may name: the built-in ones, and those the earning
        rules set by `with_rules` declare (this file's own sections declare none)."""
        return self._rules.activity_kinds if self._rules is not None else ACTIVITY_KINDS

    @property
    def base_currency(self) -> str:
        """The currency the earning rules count in: `currencies.base`, else `currency`."""
        return self.currencies.base if self.currencies is not None else self.currency

    @property
    def accepted_currencies(self) -> tuple[str, ...]:
        """The currencies an event may be in: the base first, then the others sorted by code;
        without [currencies], purchase.currencies as listed."""
        if self.currencies is None:
            return self.purchase.currencies
        return (self.currencies.base, *sorted(self.currencies.accepted))

    def tier(self, name: str) -> Tier:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(name)

    def tier_rank(self, name: str) -> int:
        for rank, tier in enumerate(self.tiers):
            if tier.name == name:
                return rank
        raise KeyError(name)


DEFAULT_PROGRAM = Program()


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    """One line per problem, each starting with the dotted path of the bad key."""
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif message.startswith("Input should be "):
            message = "must be " + message.removeprefix("Input should be ")
        lines.append(f"{prefix}{path}: {message}" if path else f"{prefix}{message}")
    return "; ".join(lines)


def parse_program(data: dict[str, Any], origin: str = "program") -> Program:
    try:
        return Program.model_validate(data)
    except ValidationError as error:
        raise ProgramError(f"{origin}: {describe_validation_error(error)}") from None
