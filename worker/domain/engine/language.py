"""The rule language of a program file: rules, groups, tiers and activity kinds, as data.

`parse_engine_program` turns a decoded TOML table into an `EngineProgram`; every problem
is reported with the dotted path of the bad key (`rules.3.when.weekdays: ...`). Rule
indexes in those paths count from 0, as in the TOML array.
"""

from __future__ import annotations

from datetime import date, time
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from worker.domain.errors import ProgramError
from worker.domain.events import ACTIVITY_KINDS
from worker.domain.events import EVENT_TYPES as CONTRACT_EVENT_TYPES
from worker.domain.program import check_ascending
from worker.domain.toml_files import read_toml

# The event types rules can listen to: the contract's, and `referral_referee`, the referee's
# half of a referral, which the ledger applies as its own single-member step.
EVENT_TYPES: tuple[str, ...] = (*CONTRACT_EVENT_TYPES, "referral_referee")
WEEKDAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ROUNDINGS: dict[str, str] = {
    "floor": ROUND_FLOOR,
    "ceil": ROUND_CEILING,
    "half_up": ROUND_HALF_UP,
    "half_even": ROUND_HALF_EVEN,
}

RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Name = Annotated[str, Field(min_length=1, max_length=64)]
Points = Annotated[int, Field(ge=0, le=1_000_000)]
Factor = Annotated[Decimal, Field(gt=0, le=100)]
Amount = Annotated[Decimal, Field(ge=0)]


def _listed(value: Any) -> Any:
    """A single value where a list is expected reads as a list of one (`nth_purchase = 1`)."""
    if value is None or isinstance(value, (list, tuple)):
        return value
    return [value]


def _weekday(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 7:
        return value
    if isinstance(value, str) and value in WEEKDAY_NAMES:
        return WEEKDAY_NAMES.index(value) + 1
    raise ValueError(f"{value!r} is not a weekday, use 1-7 or mon..sun")


def _factor(value: Any) -> Decimal | str:
    if value == "tier":
        return "tier"
    problem = 'must be "tier" or a decimal string greater than 0 and at most 100, e.g. "1.5"'
    if isinstance(value, (bool, float)) or not isinstance(value, (str, int, Decimal)):
        raise ValueError(problem)
    try:
        factor = Decimal(str(value))
    except ArithmeticError:
        raise ValueError(problem) from None
    if not factor.is_finite() or not 0 < factor <= 100:
        raise ValueError(problem)
    return factor


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ItemFilter(_Section):
    """Which order lines a rule is about. Includes are alternatives (any match); excludes win.

    Shipping lines never match unless `shipping = true`.
    """

    skus: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    exclude_skus: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    exclude_labels: tuple[str, ...] = ()
    shipping: bool = False


class TimeWindow(_Section):
    """Local time of day, `from` inclusive, `to` exclusive; `from` after `to` spans midnight."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    start: Annotated[time, Field(alias="from")]
    end: Annotated[time, Field(alias="to")]

    @model_validator(mode="after")
    def _not_empty(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError("from and to must differ")
        return self


class StreakCondition(_Section):
    """The streak of another rule (one with `streak`) reached a day in this event."""

    rule: RuleId
    day: Annotated[int, Field(ge=1, le=3660)] | None = None
    every: Annotated[int, Field(ge=1, le=3660)] | None = None

    @model_validator(mode="after")
    def _one(self) -> StreakCondition:
        if (self.day is None) == (self.every is None):
            raise ValueError("give exactly one of day or every")
        return self


class When(_Section):
    """Conditions; all that are given must hold. Lists are alternatives (any of)."""

    sources: tuple[str, ...] | None = None
    tiers: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None
    exclude_labels: tuple[str, ...] = ()
    kinds: tuple[str, ...] | None = None
    starts_on: date | None = None
    ends_on: date | None = None
    weekdays: tuple[int, ...] | None = None
    days_of_month: Annotated[tuple[Annotated[int, Field(ge=1, le=31)], ...] | None, BeforeValidator(_listed)] = None
    birthday: Literal["day", "month"] | None = None
    time: TimeWindow | None = None
    nth_purchase: Annotated[tuple[Annotated[int, Field(ge=1)], ...] | None, BeforeValidator(_listed)] = None
    min_amount: Amount | None = None
    max_amount: Amount | None = None
    items: ItemFilter | None = None
    payload: dict[str, str | int | bool] | None = None
    after_rules: tuple[RuleId, ...] = ()
    streak: StreakCondition | None = None

    @field_validator("weekdays", mode="before")
    @classmethod
    def _weekdays(cls, value: Any) -> Any:
        value = _listed(value)
        return None if value is None else tuple(_weekday(v) for v in value)

    @model_validator(mode="after")
    def _ranges(self) -> When:
        if self.starts_on and self.ends_on and self.ends_on < self.starts_on:
            raise ValueError("ends_on is before starts_on")
        if self.min_amount is not None and self.max_amount is not None and self.max_amount < self.min_amount:
            raise ValueError("max_amount is below min_amount")
        return self


class Step(_Section):
    amount_from: Annotated[Amount, Field(alias="from")]
    rate: Annotated[Decimal, Field(ge=0, le=1000)]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FixedPoints(_Section):
    kind: Literal["fixed"]
    points: Points


class PerAmount(_Section):
    """rate points per `unit` of money; with item conditions, of the matching lines only."""

    kind: Literal["per_amount"]
    rate: Annotated[Decimal, Field(ge=0, le=1000)] = Decimal(1)
    unit: Annotated[Decimal, Field(gt=0)] = Decimal(1)
    rounding: Literal["floor", "ceil", "half_up", "half_even"] = "floor"
    # Stepped rates by amount. "whole": the rate of the highest step reached applies to the
    # whole amount; "marginal": each step's rate applies to the part of the amount inside it.
    steps: tuple[Step, ...] = ()
    stepping: Literal["whole", "marginal"] = "whole"

    @field_validator("steps")
    @classmethod
    def _steps_rise(cls, steps: tuple[Step, ...]) -> tuple[Step, ...]:
        if steps and steps[0].amount_from != 0:
            raise ValueError("the first step must start from 0")
        for lower, higher in pairwise(steps):
            if higher.amount_from <= lower.amount_from:
                raise ValueError("steps must start at rising amounts")
        return steps


class PerQuantity(_Section):
    """Flat points per unit of quantity on the matching lines (e.g. 5 points per bottle)."""

    kind: Literal["per_quantity"]
    points: Points


class Multiply(_Section):
    """Multiplies the per_amount points of this event, on the whole order or on matching lines.

    `factor = "tier"` takes the multiplier of the member's tier (held before the event).
    Multipliers in one `group` combine as the group says; without a group they stack.
    """

    kind: Literal["multiply"]
    factor: Annotated[Any, BeforeValidator(_factor)]
    target: Literal["order", "lines"] = "order"
    group: Name | None = None
    applies_to: tuple[RuleId, ...] | None = None


Effect = Annotated[FixedPoints | PerAmount | PerQuantity | Multiply, Field(discriminator="kind")]
EFFECT_KINDS = ("fixed", "per_amount", "per_quantity", "multiply")


class Limit(_Section):
    """At most `count` matches and/or `points` points per member per period (program-local)."""

    per: Literal["day", "week", "month", "year", "ever"]
    count: Annotated[int, Field(ge=0)] | None = None
    points: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _something(self) -> Limit:
        if self.count is None and self.points is None:
            raise ValueError("give count, points or both")
        return self


class Streak(_Section):
    """This rule counts consecutive local days: it matches once per new day, later than the last."""

    restart_after: Annotated[int, Field(ge=1, le=3660)] | None = None


class MissionStep(_Section):
    name: RuleId
    on: Annotated[tuple[str, ...], BeforeValidator(_listed)]
    when: When = When()


class Mission(_Section):
    """Steps to complete in any order within the window; whichever step comes first starts it."""

    steps: Annotated[tuple[MissionStep, ...], Field(min_length=1)]
    within_days: Annotated[int, Field(ge=1, le=3660)]


class Rule(_Section):
    id: RuleId
    on: Annotated[tuple[str, ...], BeforeValidator(_listed)] = ()
    priority: int = 0
    when: When = When()
    effect: Effect
    limits: tuple[Limit, ...] = ()
    streak: Streak | None = None
    mission: Mission | None = None
    stop: bool = False
    description: str = ""

    @model_validator(mode="after")
    def _listens(self) -> Rule:
        if not self.on and self.mission is None:
            raise ValueError("on: give the event types this rule listens to")
        return self

    @property
    def events(self) -> tuple[str, ...]:
        if self.on:
            return self.on
        assert self.mission is not None
        return tuple(dict.fromkeys(t for step in self.mission.steps for t in step.on))


class Level(_Section):
    name: Name
    threshold: Amount
    multiplier: Factor = Decimal(1)


class TierFloor(_Section):
    """An operator-set lowest tier for a member, until `ends_on` (inclusive) if given."""

    tier: Name
    ends_on: date | None = None


class TierSettings(_Section):
    # Qualifying basis: points earned (less reversed), or money spent (less refunded).
    basis: Literal["points", "amount"] = "points"
    # never: tiers only go up; automatic: the tier follows qualifying value both ways;
    # review: tiers go up at once and down only at a review over `review_window_days`.
    downgrade: Literal["never", "automatic", "review"] = "never"
    review_window_days: Annotated[int, Field(ge=1, le=3660)] = 365
    # review: a member whose last upgrade happened (event time) fewer days ago keeps the tier.
    review_grace_days: Annotated[int, Field(ge=0, le=3660)] = 0
    levels: tuple[Level, ...]

    @field_validator("levels")
    @classmethod
    def _rising(cls, levels: tuple[Level, ...]) -> tuple[Level, ...]:
        return check_ascending(levels, "level")


class Activity(_Section):
    kinds: tuple[RuleId, ...] = ()


class Items(_Section):
    """How shipping lines are told from goods: by SKU, category or item label."""

    # Nothing is shipping unless the program says so: an order's amount is what it earns on.
    shipping_skus: tuple[str, ...] = ()
    shipping_categories: tuple[str, ...] = ()
    shipping_labels: tuple[str, ...] = ()


class EngineProgram(_Section):
    version: str | int = "1"
    name: str = "default"
    timezone: str = "Asia/Shanghai"
    tiers: TierSettings
    groups: dict[Name, Literal["highest", "stack", "first"]] = Field(default_factory=dict)
    activity: Activity = Activity()
    items: Items = Items()
    rules: tuple[Rule, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def activity_kinds(self) -> tuple[str, ...]:
        return ACTIVITY_KINDS + tuple(k for k in self.activity.kinds if k not in ACTIVITY_KINDS)

    def level(self, name: str) -> Level:
        for level in self.tiers.levels:
            if level.name == name:
                return level
        raise KeyError(name)

    def rank(self, name: str) -> int:
        for rank, level in enumerate(self.tiers.levels):
            if level.name == name:
                return rank
        raise KeyError(name)

    def ordered_rules(self) -> tuple[Rule, ...]:
        """Higher priority first; equal priorities keep their order in the file."""
        return tuple(sorted(self.rules, key=lambda rule: -rule.priority))


def _cross_checks(program: EngineProgram) -> list[str]:
    """References between keys, which the per-key models cannot see."""
    problems: list[str] = []
    ids = [rule.id for rule in program.rules]
    tiers = {level.name for level in program.tiers.levels}
    kinds = set(program.activity_kinds)
    by_id = {rule.id: rule for rule in program.rules}
    seen: set[str] = set()
    for index, rule in enumerate(program.rules):
        at = f"rules.{index}"
        if rule.id in seen:
            problems.append(f"{at}.id: {rule.id!r} is used by an earlier rule; ids must be unique")
        seen.add(rule.id)
        for event_type in rule.on:
            if event_type not in EVENT_TYPES:
                problems.append(f"{at}.on: {event_type!r} is not an event type, use one of {', '.join(EVENT_TYPES)}")
        whens = [(f"{at}.when", rule.when)]
        if rule.mission is not None:
            for s, step in enumerate(rule.mission.steps):
                whens.append((f"{at}.mission.steps.{s}.when", step.when))
                for event_type in step.on:
                    if event_type not in EVENT_TYPES:
                        problems.append(f"{at}.mission.steps.{s}.on: {event_type!r} is not an event type")
        for path, when in whens:
            for tier in when.tiers or ():
                if tier not in tiers:
                    problems.append(f"{path}.tiers: {tier!r} is not a tier, use one of {', '.join(sorted(tiers))}")
            for kind in when.kinds or ():
                if kind not in kinds:
                    problems.append(f"{path}.kinds: {kind!r} is not an activity kind; declare it in activity.kinds")
            for other in when.after_rules:
                if other not in ids:
                    problems.append(f"{path}.after_rules: no rule has id {other!r}")
            if when.streak is not None:
                target = by_id.get(when.streak.rule)
                if target is None or target.streak is None:
                    problems.append(f"{path}.streak.rule: {when.streak.rule!r} is not a rule with a streak")
        effect = rule.effect
        if effect.kind == "per_amount" and effect.steps and "rate" in effect.model_fields_set:
            problems.append(f"{at}.effect.rate: with steps, each step's rate applies; remove this key")
        if effect.kind == "per_amount" and not effect.steps and "stepping" in effect.model_fields_set:
            problems.append(f"{at}.effect.stepping: says how steps apply; give steps or remove this key")
        if effect.kind == "multiply" and effect.target == "lines" and rule.when.items is None:
            problems.append(f"{at}.effect.target: 'lines' needs when.items to say which lines")
        if effect.kind == "multiply":
            if effect.group is not None and effect.group not in program.groups:
                problems.append(f"{at}.effect.group: unknown group {effect.group!r}; declare it under [groups]")
            for other in effect.applies_to or ():
                if other not in by_id or by_id[other].effect.kind != "per_amount":
                    problems.append(f"{at}.effect.applies_to: {other!r} is not a per_amount rule")
    return problems


def describe_errors(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        parts = [str(p) for p in item["loc"]]
        # The effect union puts its tag in the path (effect.fixed.points): drop it.
        parts = [p for i, p in enumerate(parts) if not (i and parts[i - 1] == "effect" and p in EFFECT_KINDS)]
        path = ".".join(parts)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "is required"
        elif item["type"] == "union_tag_invalid":
            message = f"kind must be one of {', '.join(EFFECT_KINDS)}"
        elif item["type"] == "union_tag_not_found":
            message = f"kind is required: one of {', '.join(EFFECT_KINDS)}"
        elif message.startswith("Input should be "):
            message = "must be " + message.removeprefix("Input should be ")
        problems.append(f"{path}: {message}" if path else message)
    return problems


def parse_engine_program(
    data: dict[str, Any], origin: str = "program", version: str | int | None = None
) -> EngineProgram:
    """The program a decoded TOML table describes; ProgramError naming each bad key otherwise.

    `version`, when given, replaces the file's own (the caller numbers stored versions).
    """
    if version is not None:
        data = {**data, "version": version}
    try:
        program = EngineProgram.model_validate(data)
    except ValidationError as error:
        raise ProgramError(f"{origin}: {'; '.join(describe_errors(error))}") from None
    problems = _cross_checks(program)
    if problems:
        raise ProgramError(f"{origin}: {'; '.join(problems)}")
    return program


def load_engine_program(path: str | Path, version: str | int | None = None) -> EngineProgram:
    path = Path(path)
    return parse_engine_program(read_toml(path, "program file", ProgramError), origin=str(path), version=version)


DEFAULT_PROGRAM_PATH = Path(__file__).with_name("default_program.toml")


def default_engine_program() -> EngineProgram:
    """Today's numbers in the rule language (default_program.toml, shipped with the package)."""
    return load_engine_program(DEFAULT_PROGRAM_PATH)
