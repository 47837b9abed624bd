"""The points mall: the reward catalog file and who may redeem what, when. Pure; no I/O.

The catalog is a TOML file of ``[[reward]]`` tables that an operator edits; every error
names the bad key (``reward.2.cost_points: ...``). `check_redemption` decides one
redemption from plain values: the caller supplies the member's tier and points, how many
of the reward the member already has in the limit's period, the stock left, and for a
coupon whose codes come from a pool, the codes left in it (worker/domain/coupons.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from worker.domain.coupons import CODE_PREFIX_PATTERN, VALID_DAYS_MAX
from worker.domain.errors import ProgramError
from worker.domain.lots import Lot, take_earliest_expiring
from worker.domain.program import Program, describe_validation_error
from worker.domain.toml_files import read_toml

# A catalog is edited by hand; a file with more rewards than this is a generated mistake.
CATALOG_REWARDS_MAX = 10_000
# The longest early-access window: a pre-sale more than 30 days ahead is a separate reward.
EARLY_ACCESS_HOURS_MAX = 30 * 24

# Rejection reasons, as stored in redemptions.reason and sent in redemption_rejected.
NOT_ENOUGH_POINTS = "not_enough_points"
TIER_TOO_LOW = "tier_too_low"
OUT_OF_STOCK = "out_of_stock"
LIMIT_REACHED = "limit_reached"
NOT_AVAILABLE = "not_available"
UNKNOWN_REWARD = "unknown_reward"
NO_CODES_LEFT = "no_codes_left"
REASONS = (
    NOT_ENOUGH_POINTS,
    TIER_TOO_LOW,
    OUT_OF_STOCK,
    LIMIT_REACHED,
    NOT_AVAILABLE,
    UNKNOWN_REWARD,
    NO_CODES_LEFT,
)

# What a redemption hands over: an item, or a coupon (a code per unit, valid for valid_days).
ITEM = "item"
COUPON = "coupon"
# Where a coupon's codes come from: a pool loaded by the operator, or made at redemption.
POOL = "pool"
GENERATED = "generated"

Period = Literal["day", "month", "ever"]
RewardId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@#/+-]*$"),
]


def _require_offset(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must include a UTC offset, e.g. 2026-12-01T00:00:00+08:00")
    return value


Instant = Annotated[datetime, AfterValidator(_require_offset)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limit(_Section):
    """At most `count` units per member per program-local day, month, or ever."""

    count: Annotated[int, Field(ge=1, le=1_000_000, strict=True)]
    period: Period


class EarlyAccess(_Section):
    """Members of `tier` or higher may redeem `hours` before `available_from`."""

    tier: Annotated[str, Field(min_length=1)]
    hours: Annotated[int, Field(ge=1, le=EARLY_ACCESS_HOURS_MAX, strict=True)]


class Reward(_Section):
    reward_id: RewardId
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
    cost_points: Annotated[int, Field(ge=1, le=100_000_000, strict=True)]
    min_tier: Annotated[str, Field(min_length=1)]
    stock: Annotated[int, Field(ge=0, strict=True)] | None = None  # None: unlimited
    limit: Limit | None = None
    available_from: Instant | None = None
    available_until: Instant | None = None
    early_access: EarlyAccess | None = None
    kind: Literal["item", "coupon"] = "item"
    # A coupon's terms (checked in parse_catalog, naming the key): codes defaults to "pool".
    codes: Literal["pool", "generated"] | None = None
    code_prefix: Annotated[str, StringConstraints(pattern=CODE_PREFIX_PATTERN)] | None = None
    valid_days: Annotated[int, Field(ge=1, le=VALID_DAYS_MAX, strict=True)] | None = None

    @property
    def code_source(self) -> str | None:
        """Where the coupon's codes come from (None: not a coupon)."""
        if self.kind != COUPON:
            return None
        return self.codes or POOL

    @model_validator(mode="after")
    def _window(self) -> Reward:
        if self.available_from and self.available_until and self.available_until <= self.available_from:
            raise ValueError("available_until must be after available_from")
        if self.early_access is not None and self.available_from is None:
            raise ValueError("early_access needs available_from (the time everyone else may start)")
        return self


class Catalog(_Section):
    reward: Annotated[tuple[Reward, ...], Field(max_length=CATALOG_REWARDS_MAX)] = ()


def parse_catalog(data: dict[str, Any], program: Program, origin: str = "rewards") -> Catalog:
    """Validate a decoded rewards file against the model and the program's tiers."""
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as error:
        raise ProgramError(f"{origin}: {describe_validation_error(error)}") from None
    tier_names = [t.name for t in program.tiers]
    seen: set[str] = set()
    problems = []
    for index, reward in enumerate(catalog.reward):
        if reward.reward_id in seen:
            problems.append(f"reward.{index}.reward_id: {reward.reward_id!r} appears more than once")
        seen.add(reward.reward_id)
        if reward.min_tier not in tier_names:
            problems.append(
                f"reward.{index}.min_tier: unknown tier {reward.min_tier!r} (tiers: {', '.join(tier_names)})"
            )
        if reward.early_access is not None and reward.early_access.tier not in tier_names:
            problems.append(
                f"reward.{index}.early_access.tier: unknown tier {reward.early_access.tier!r} (tiers: {', '.join(tier_names)})"
            )
        problems.extend(f"reward.{index}.{problem}" for problem in _coupon_problems(reward))
    if problems:
        raise ProgramError(f"{origin}: {'; '.join(problems)}")
    return catalog


def _coupon_problems(reward: Reward) -> list[str]:
    """A coupon needs valid_days; the coupon keys mean nothing on an item; a prefix needs generated codes."""
    if reward.kind != COUPON:
        return [
            f'{key}: only a coupon reward (kind = "coupon") has {key}'
            for key in ("codes", "code_prefix", "valid_days")
            if getattr(reward, key) is not None
        ]
    problems = []
    if reward.valid_days is None:
        problems.append("valid_days: a coupon needs valid_days (the days its code may be used, from the day of issue)")
    if reward.code_prefix is not None and reward.code_source != GENERATED:
        problems.append('code_prefix: only generated codes (codes = "generated") have a prefix')
    return problems


def load_catalog(path: str | Path, program: Program) -> Catalog:
    path = Path(path)
    data = read_toml(path, "rewards file", ProgramError)
    return parse_catalog(data, program, origin=str(path))


@dataclass(frozen=True)
class RewardTerms:
    """What the eligibility rules need of one reward, as stored."""

    reward_id: str
    name: str
    cost_points: int
    min_tier: str
    stock_left: int | None = None  # None: unlimited
    limit_count: int | None = None
    limit_period: str | None = None
    available_from: datetime | None = None
    available_until: datetime | None = None
    early_access_tier: str | None = None
    early_access_hours: int | None = None
    codes_left: int | None = None  # None: no pool (an item, or a coupon with generated codes)


def _rank(program: Program, tier: str) -> int | None:
    try:
        return program.tier_rank(tier)
    except KeyError:
        return None


def period_bounds(zone: ZoneInfo, period: str, at: datetime) -> tuple[datetime | None, datetime | None]:
    """The program-local day or month holding `at`, as [start, end); (None, None) for ever."""
    if period == "ever":
        return None, None
    local = at.astimezone(zone)
    if period == "day":
        start_day = local.date()
        end_day = start_day + timedelta(days=1)
    elif period == "month":
        start_day = local.date().replace(day=1)
        end_day = (start_day + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown limit period {period!r}")
    return datetime.combine(start_day, time(0), zone), datetime.combine(end_day, time(0), zone)


def opens_at(program: Program, reward: RewardTerms, tier: str) -> datetime | None:
    """When this member's tier may start redeeming: early for the early-access tiers."""
    if reward.available_from is None:
        return None
    if reward.early_access_tier is not None and reward.early_access_hours is not None:
        member_rank, early_rank = _rank(program, tier), _rank(program, reward.early_access_tier)
        if member_rank is not None and early_rank is not None and member_rank >= early_rank:
            return reward.available_from - timedelta(hours=reward.early_access_hours)
    return reward.available_from


def check_redemption(
    program: Program,
    reward: RewardTerms | None,
    *,
    tier: str,
    spendable_points: int,
    quantity: int,
    at: datetime,
    already_in_period: int,
) -> str | None:
    """None when the member may redeem `quantity` of `reward` at `at`, else the reason.

    Checked in this order: unknown_reward, not_available (window, early access), tier_too_low,
    limit_reached, out_of_stock, no_codes_left, not_enough_points. `already_in_period` is how
    many units the member holds of this reward in the limit's period (confirmed, not
    cancelled); a coupon takes one code per unit.
    """
    if reward is None:
        return UNKNOWN_REWARD
    start = opens_at(program, reward, tier)
    if (start is not None and at < start) or (reward.available_until is not None and at >= reward.available_until):
        return NOT_AVAILABLE
    member_rank, needed_rank = _rank(program, tier), _rank(program, reward.min_tier)
    if member_rank is None or needed_rank is None or member_rank < needed_rank:
        return TIER_TOO_LOW
    if reward.limit_count is not None and already_in_period + quantity > reward.limit_count:
        return LIMIT_REACHED
    if reward.stock_left is not None and reward.stock_left < quantity:
        return OUT_OF_STOCK
    if reward.codes_left is not None and reward.codes_left < quantity:
        return NO_CODES_LEFT
    if spendable_points < reward.cost_points * quantity:
        return NOT_ENOUGH_POINTS
    return None


# ---------------------------------------------------------------- what a redemption moves

# Outcome notes of a cancellation that changes nothing.
CANCEL_UNKNOWN = "redemption_cancel.unknown_redemption"
CANCEL_COUPON_USED = "redemption_cancel.coupon_used"


@dataclass(frozen=True)
class Spend:
    """A confirmed redemption's payment: the points, the lots they come from earliest-expiring
    first, as (lot_id, points) takes, and the rule provenance of its `redeem` entry."""

    points: int
    takes: list[tuple[int, int]]
    rule: dict[str, Any]


def spend(reward: RewardTerms, quantity: int, lots: list[Lot], issued: list[dict[str, str]]) -> Spend:
    """What a redemption that `check_redemption` allowed takes from the member's spendable
    `lots`; `issued`: the coupon codes it hands over (shown with the entry that paid for them)."""
    points = reward.cost_points * quantity
    takes = take_earliest_expiring(lots, points)
    if sum(taken for _, taken in takes) != points:
        raise ValueError(f"redemption of {points} points: the lots hold {sum(t for _, t in takes)}")
    rule: dict[str, Any] = {
        "rule": "redemption",
        "reward_id": reward.reward_id,
        "quantity": quantity,
        "cost_points": reward.cost_points,
    }
    if issued:
        rule["coupons"] = issued
    return Spend(points, takes, rule)


@dataclass(frozen=True)
class Taken:
    """A lot a redemption took points from, as the cancellation finds it."""

    lot_id: int
    points: int
    expires_at: datetime


@dataclass(frozen=True)
class UsedCoupon:
    code: str
    used_at: datetime


@dataclass(frozen=True)
class Restore:
    """A cancellation's give-back: negative takes that put points back into the lots they came
    from (an expired lot gets nothing), and the provenance of its `restore` entry."""

    back: list[tuple[int, int]]
    points: int
    detail: dict[str, Any]


def cancel_refusal(status: str | None, used: list[UsedCoupon]) -> tuple[str, dict[str, Any]] | None:
    """Why cancelling a redemption (`status`: its status, None when there is none) changes
    nothing, as the outcome's note and detail; None when it is cancelled."""
    if status is None:
        return CANCEL_UNKNOWN, {}
    if status != "confirmed":
        return f"redemption_cancel.redemption_{status}", {}
    if used:
        return CANCEL_COUPON_USED, {
            "redemption": "confirmed",
            "reason": f"coupon {used[0].code} was used at {used[0].used_at.isoformat()}; "
            "the redemption of a used coupon cannot be cancelled",
            "coupons_used": [c.code for c in used],
        }
    return None


def restore(
    source: str, event_id: str, points_spent: int, taken: list[Taken], cancelled: list[str], at: datetime
) -> Restore:
    """The give-back of cancelling the redemption (`source`, `event_id`) at `at`: the points of
    every lot it took from that has not expired by then; `cancelled`: its coupon codes."""
    back = [(t.lot_id, t.points) for t in taken if t.expires_at > at]
    restored = sum(points for _, points in back)
    detail: dict[str, Any] = {
        "rule": "redemption_cancel",
        "redemption_source": source,
        "redemption_event_id": event_id,
        "points_spent": points_spent,
        "points_restored": restored,
        "points_expired": points_spent - restored,
    }
    if cancelled:
        detail["coupons_cancelled"] = cancelled
    return Restore([(lot_id, -points) for lot_id, points in back], restored, detail)
