"""The rule engine as the ledger runs it: each program compiled once into closures. Pure.

`evaluate(program, member, event)` gives exactly the `Evaluation` that `interpret` (the plain
reading of the rule language in evaluate.py) gives: the same awards with the same details, the
same rule state, the same trace with the same reasons, and the same errors. What differs is
when the rule data is read: `compile_program` reads a program once (the rules listening to
each event type in priority order, each rule's conditions as a tuple of small checks, its
limits, its effect with its numbers, the multiplier groups) and every event after that runs
the closures, without looking at conditions that are not there or effects of other kinds.

A program is compiled on its first evaluation and kept as long as the program object lives
(`compiled`); a process holds a handful (its program versions), each compiled once.
tests/unit/test_engine_compiled.py holds the two evaluators to the same results over
generated programs and event sequences.
"""

from __future__ import annotations

import calendar
import weakref
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from worker.domain.engine.evaluate import (
    _MISSING,
    Award,
    Considered,
    Evaluation,
    EventData,
    Member,
    _advance_streak,
    _award_reason,
    _field,
    _money,
    _payload_field,
)
from worker.domain.engine.language import (
    ROUNDINGS,
    EngineProgram,
    ItemFilter,
    Limit,
    Mission,
    Multiply,
    PerAmount,
    Rule,
    When,
)
from worker.domain.engine.state import PERIODS_KEPT, check_state
from worker.domain.errors import EngineError
from worker.domain.local_days import is_birthday


class _Line:
    """One order line (evaluate.Line, as a plain class: lines are made for every event)."""

    __slots__ = ("index", "sku", "category", "amount", "quantity", "labels", "shipping")

    def __init__(
        self,
        index: int,
        sku: str,
        category: str,
        amount: Decimal,
        quantity: int,
        labels: frozenset[str],
        shipping: bool,
    ) -> None:
        self.index = index
        self.sku = sku
        self.category = category
        self.amount = amount
        self.quantity = quantity
        self.labels = labels
        self.shipping = shipping


class _Ctx:
    """One event being evaluated: what the checks read, and what earlier rules left for later ones."""

    __slots__ = ("member", "event", "payload", "on", "at", "lines", "amount", "fired", "streak_days")

    def __init__(
        self,
        member: Member,
        event: EventData,
        on: date,
        at: time,
        lines: tuple[_Line, ...],
        amount: Decimal | None,
    ) -> None:
        self.member = member
        self.event = event
        self.payload = event.payload
        self.on = on
        self.at = at
        self.lines = lines
        self.amount = amount
        self.fired: set[str] = set()
        self.streak_days: dict[str, int] = {}


# A condition: None when it holds, else why not (the interpreter's words).
_Check = Callable[[_Ctx], "str | None"]
# A rule's conditions: None and the matching lines when all hold, else why not.
_When = Callable[[_Ctx], "tuple[str | None, tuple[_Line, ...]]"]
_LineTest = Callable[[_Line], bool]

_HOLDS: tuple[None, tuple[_Line, ...]] = (None, ())
# A rule's whole test on an event (conditions, limits, streak, mission) with the rule state:
# None, the matching lines and the points its limits still allow (None: no cap), else why not.
_Match = Callable[[_Ctx, dict[str, Any]], "tuple[str | None, tuple[_Line, ...], int | None]"]


# ---------------------------------------------------------------- conditions


def _joined(values: tuple[Any, ...]) -> str:
    return ", ".join(map(str, values))


def _sources(sources: tuple[str, ...]) -> _Check:
    allowed, listed = frozenset(sources), _joined(sources)

    def check(ctx: _Ctx) -> str | None:
        source = ctx.event.source
        return None if source in allowed else f"source {source!r} is not one of {listed}"

    return check


def _tiers(tiers: tuple[str, ...]) -> _Check:
    allowed, listed = frozenset(tiers), _joined(tiers)

    def check(ctx: _Ctx) -> str | None:
        tier = ctx.member.tier
        return None if tier in allowed else f"tier {tier!r} is not one of {listed}"

    return check


def _labels(labels: tuple[str, ...]) -> _Check:
    wanted, listed = frozenset(labels), _joined(labels)

    def check(ctx: _Ctx) -> str | None:
        return None if ctx.member.labels & wanted else f"member has none of the labels {listed}"

    return check


def _exclude_labels(labels: tuple[str, ...]) -> _Check:
    excluded = frozenset(labels)

    def check(ctx: _Ctx) -> str | None:
        found = ctx.member.labels & excluded
        return f"member has an excluded label ({', '.join(sorted(found))})" if found else None

    return check


def _kinds(kinds: tuple[str, ...]) -> _Check:
    listed = _joined(kinds)

    def check(ctx: _Ctx) -> str | None:
        kind = ctx.payload.get("kind")
        # A tuple, not a set: the payload's kind may be any value, hashable or not.
        return None if kind in kinds else f"activity kind {kind!r} is not one of {listed}"

    return check


def _starts_on(first: date) -> _Check:
    def check(ctx: _Ctx) -> str | None:
        return f"{ctx.on} is before {first}" if ctx.on < first else None

    return check


def _ends_on(last: date) -> _Check:
    def check(ctx: _Ctx) -> str | None:
        return f"{ctx.on} is after {last}" if ctx.on > last else None

    return check


def _weekdays(weekdays: tuple[int, ...]) -> _Check:
    allowed, listed = frozenset(weekdays), _joined(weekdays)

    def check(ctx: _Ctx) -> str | None:
        weekday = ctx.on.isoweekday()
        return None if weekday in allowed else f"{ctx.on} is weekday {weekday}, not one of {listed}"

    return check


def _days_of_month(days: tuple[int, ...]) -> _Check:
    # A day past a month's end falls on its last day (local_days.falls_on): only days after
    # the 28th need the month's length.
    plain = frozenset(day for day in days if day <= 28)
    late = tuple(day for day in days if day > 28)
    listed = _joined(days)

    def check(ctx: _Ctx) -> str | None:
        on = ctx.on
        if on.day in plain:
            return None
        if late and on.day >= 28:
            last = calendar.monthrange(on.year, on.month)[1]
            if any(on.day == min(day, last) for day in late):
                return None
        return f"{on} is not day {listed} of the month"

    return check


def _birthday_day(ctx: _Ctx) -> str | None:
    return None if is_birthday(ctx.member.birthday, ctx.on) else f"{ctx.on} is not the member's birthday"


def _birthday_month(ctx: _Ctx) -> str | None:
    birthday = ctx.member.birthday
    if birthday is None or birthday.month != ctx.on.month:
        return f"{ctx.on} is not in the member's birthday month"
    return None


def _time(start: time, end: time) -> _Check:
    outside = f"{start}-{end}"

    if start < end:

        def inside(at: time) -> bool:
            return start <= at < end
    else:

        def inside(at: time) -> bool:
            return at >= start or at < end

    def check(ctx: _Ctx) -> str | None:
        return None if inside(ctx.at) else f"local time {ctx.at.isoformat('minutes')} is outside {outside}"

    return check


def _nth_purchase(numbers: tuple[int, ...]) -> _Check:
    allowed, listed = frozenset(numbers), _joined(numbers)

    def check(ctx: _Ctx) -> str | None:
        if ctx.event.type != "purchase":
            return "nth_purchase needs a purchase event"
        nth = ctx.member.purchase_count + 1
        return None if nth in allowed else f"purchase number {nth}, not {listed}"

    return check


def _amount(least: Decimal | None, most: Decimal | None) -> _Check:
    def check(ctx: _Ctx) -> str | None:
        amount = ctx.amount
        if amount is None:
            return "the event has no amount"
        if least is not None and amount < least:
            return f"amount {amount} is below the minimum {least}"
        if most is not None and amount > most:
            return f"amount {amount} is above the maximum {most}"
        return None

    return check


def _payload(expected: dict[str, str | int | bool]) -> _Check:
    wanted = tuple(expected.items())

    def check(ctx: _Ctx) -> str | None:
        payload = ctx.payload
        for key, value in wanted:
            found = _payload_field(payload, key)
            if found is _MISSING:
                return f"payload.{key} is missing, not {value!r}"
            # Of the same type too: an attribute 1 is not true, nor "5" the integer 5.
            if type(found) is not type(value) or found != value:
                return f"payload.{key} is {found!r}, not {value!r}"
        return None

    return check


def _after_rules(others: tuple[str, ...]) -> _Check:
    def check(ctx: _Ctx) -> str | None:
        fired = ctx.fired
        for other in others:
            if other not in fired:
                return f"rule {other!r} did not match this event"
        return None

    return check


def _streak(rule_id: str, day: int | None, every: int | None) -> _Check:
    def check(ctx: _Ctx) -> str | None:
        days = ctx.streak_days.get(rule_id)
        if days is None:
            return f"the streak of {rule_id!r} did not advance on this event"
        if day is not None:
            if days != day:
                return f"streak day {days}, not day {day}"
        elif every is not None and days % every != 0:
            return f"streak day {days}, not every {every}"
        return None

    return check


def _line_test(items: ItemFilter) -> _LineTest:
    """Whether a line is one the filter is about (evaluate._line_matches)."""
    shipping = items.shipping
    exclude_skus, exclude_categories = frozenset(items.exclude_skus), frozenset(items.exclude_categories)
    exclude_labels = frozenset(items.exclude_labels)
    skus, categories, labels = frozenset(items.skus), frozenset(items.categories), frozenset(items.labels)
    includes = bool(items.skus or items.categories or items.labels)

    def matches(line: _Line) -> bool:
        if line.shipping and not shipping:
            return False
        if line.sku in exclude_skus or line.category in exclude_categories:
            return False
        if line.labels & exclude_labels:
            return False
        if not includes:
            return True
        return line.sku in skus or line.category in categories or bool(line.labels & labels)

    return matches


def _conditions(when: When) -> list[_Check]:
    """The checks of the conditions given, in the order the interpreter tests them (so the
    first that fails gives the same reason)."""
    checks: list[_Check] = []
    if when.sources is not None:
        checks.append(_sources(when.sources))
    if when.tiers is not None:
        checks.append(_tiers(when.tiers))
    if when.labels is not None:
        checks.append(_labels(when.labels))
    if when.exclude_labels:
        checks.append(_exclude_labels(when.exclude_labels))
    if when.kinds is not None:
        checks.append(_kinds(when.kinds))
    if when.starts_on is not None:
        checks.append(_starts_on(when.starts_on))
    if when.ends_on is not None:
        checks.append(_ends_on(when.ends_on))
    if when.weekdays is not None:
        checks.append(_weekdays(when.weekdays))
    if when.days_of_month is not None:
        checks.append(_days_of_month(when.days_of_month))
    if when.birthday == "day":
        checks.append(_birthday_day)
    elif when.birthday == "month":
        checks.append(_birthday_month)
    if when.time is not None:
        checks.append(_time(when.time.start, when.time.end))
    if when.nth_purchase is not None:
        checks.append(_nth_purchase(when.nth_purchase))
    if when.min_amount is not None or when.max_amount is not None:
        checks.append(_amount(when.min_amount, when.max_amount))
    if when.payload:
        checks.append(_payload(when.payload))
    if when.after_rules:
        checks.append(_after_rules(when.after_rules))
    if when.streak is not None:
        checks.append(_streak(when.streak.rule, when.streak.day, when.streak.every))
    return checks


def _always(ctx: _Ctx) -> tuple[str | None, tuple[_Line, ...]]:
    return _HOLDS


def _compile_when(when: When) -> _When:
    checks = tuple(_conditions(when))
    matches = _line_test(when.items) if when.items is not None else None
    if matches is None and not checks:
        return _always
    if matches is None and len(checks) == 1:
        only = checks[0]

        def one(ctx: _Ctx) -> tuple[str | None, tuple[_Line, ...]]:
            reason = only(ctx)
            return _HOLDS if reason is None else (reason, ())

        return one

    def check(ctx: _Ctx) -> tuple[str | None, tuple[_Line, ...]]:
        for condition in checks:
            reason = condition(ctx)
            if reason is not None:
                return reason, ()
        if matches is None:
            return _HOLDS
        lines = tuple(line for line in ctx.lines if matches(line))
        if not lines:
            return "no order line matches the item filter", ()
        return None, lines

    return check


# ---------------------------------------------------------------- limits and rule state


def _day_key(on: date) -> str:
    return f"day:{on.isoformat()}"


def _week_key(on: date) -> str:
    year, week, _ = on.isocalendar()
    return f"week:{year:04d}-W{week:02d}"


def _month_key(on: date) -> str:
    return f"month:{on.year:04d}-{on.month:02d}"


def _year_key(on: date) -> str:
    return f"year:{on.year:04d}"


def _ever_key(on: date) -> str:
    return "ever"


_PERIOD_KEYS: dict[str, Callable[[date], str]] = {
    "day": _day_key,
    "week": _week_key,
    "month": _month_key,
    "year": _year_key,
    "ever": _ever_key,
}


def _kind_of(key: str) -> str:
    return key.split(":", 1)[0]


def _closed(entries: Mapping[str, Any], kind: str, key: str) -> bool:
    """state.is_closed in one pass: `key` older than every counter kept of its kind."""
    kept = PERIODS_KEPT[kind]
    count = 0
    oldest: str | None = None
    for other in entries:
        if _kind_of(other) == kind:
            count += 1
            if oldest is None or other < oldest:
                oldest = other
    return count >= kept and oldest is not None and key < oldest


def _prune(entries: dict[str, Any]) -> None:
    """state.prune_periods: the oldest counters of each kind beyond PERIODS_KEPT dropped."""
    by_kind: dict[str, list[str]] = {}
    for key in entries:
        if key != "streak" and key != "mission":
            kind = _kind_of(key)
            if kind in PERIODS_KEPT:
                by_kind.setdefault(kind, []).append(key)
    for kind, keys in by_kind.items():
        kept = PERIODS_KEPT[kind]
        if len(keys) > kept:
            for key in sorted(keys, reverse=True)[kept:]:
                del entries[key]


_LimitCheck = Callable[[Mapping[str, Any], date], "tuple[str | None, int | None]"]


def _compile_limits(limits: tuple[Limit, ...]) -> _LimitCheck:
    specs = tuple(
        (
            _PERIOD_KEYS[limit.per],
            limit.per,
            limit.count,
            limit.points,
            f"limit reached: {limit.count} per {limit.per}",
            f"limit reached: {limit.points} points per {limit.per}",
        )
        for limit in limits
    )

    def check(entries: Mapping[str, Any], on: date) -> tuple[str | None, int | None]:
        allowed: int | None = None
        for key_of, per, count, points, by_count, by_points in specs:
            key = key_of(on)
            if _closed(entries, per, key):
                return f"{key} is older than the periods kept for its limit", None
            used = entries.get(key, {})
            if count is not None and used.get("count", 0) >= count:
                return f"{by_count} ({key})", None
            if points is not None:
                left = points - used.get("points", 0)
                if left <= 0:
                    return f"{by_points} ({key})", None
                allowed = left if allowed is None else min(allowed, left)
        return None, allowed

    return check


def _copied_state(state: Any) -> dict[str, Any]:
    """validate_state's result, copied by its known shape rather than by deepcopy."""
    check_state(state)
    if not state:
        return {}
    copy: dict[str, Any] = {}
    for rule_id, entries in state.items():
        inner: dict[str, Any] = {}
        for key, value in entries.items():
            if key == "mission":
                inner[key] = {**value, "done": list(value["done"])}
            else:
                inner[key] = dict(value)
        copy[rule_id] = inner
    return copy


def _advance_mission(
    mission: Mission, steps: tuple[tuple[str, tuple[str, ...], _When], ...], entries: dict[str, Any], ctx: _Ctx
) -> str | None:
    """evaluate._advance_mission with the steps' conditions compiled."""
    event = ctx.event
    progress = entries.get("mission")
    steps_here = [name for name, on, when in steps if event.type in on and when(ctx)[0] is None]
    if progress is not None and progress["status"] != "open":
        return f"mission already {progress['status']}"
    if progress is None:
        if not steps_here:
            return "no mission step matches this event"
        progress = {"started_at": event.occurred_at.isoformat(), "done": [], "status": "open"}
        entries["mission"] = progress
    else:
        deadline = datetime.fromisoformat(progress["started_at"]) + timedelta(days=mission.within_days)
        if event.occurred_at > deadline:
            progress["status"] = "expired"
            return f"mission window of {mission.within_days} days closed at {deadline.isoformat()}"
    new = [name for name in steps_here if name not in progress["done"]]
    if not new:
        return "no open mission step matches this event"
    progress["done"].append(new[0])
    if len(progress["done"]) < len(mission.steps):
        return f"mission step {new[0]!r} done ({len(progress['done'])} of {len(mission.steps)})"
    progress["status"] = "completed"
    return None


# ---------------------------------------------------------------- effects


class _Multiplier:
    """A multiply rule as compiled: its factor (None: the member's tier's), target, group and mode."""

    __slots__ = ("rule_id", "factor", "lines_target", "group", "group_key", "mode", "applies_to", "suffix")

    def __init__(self, rule: Rule, effect: Multiply, groups: Mapping[str, str]) -> None:
        self.rule_id = rule.id
        self.factor: Decimal | None = None if effect.factor == "tier" else effect.factor
        self.lines_target = effect.target == "lines"
        self.group: str | None = effect.group
        self.group_key = effect.group or f"rule:{rule.id}"
        self.mode = groups.get(self.group_key, "stack")
        self.applies_to: frozenset[str] | None = None if effect.applies_to is None else frozenset(effect.applies_to)
        self.suffix = f" (group {effect.group})" if effect.group else ""


class _Matched:
    """A multiplier matched by this event: its factor and the indexes of the lines it matched."""

    __slots__ = ("spec", "factor", "indexes")

    def __init__(self, spec: _Multiplier, factor: Decimal, lines: tuple[_Line, ...]) -> None:
        self.spec = spec
        self.factor = factor
        self.indexes = frozenset(line.index for line in lines)


def _grouped(factors: list[_Matched]) -> tuple[list[tuple[str, Decimal]], list[str]]:
    """evaluate._grouped: the factors that apply, group by group, and the rule ids left out."""
    if len(factors) == 1:  # a group of one applies whatever its mode
        only = factors[0]
        return [(only.spec.rule_id, only.factor)], []
    groups: dict[str, tuple[str, list[tuple[str, Decimal]]]] = {}
    for m in factors:
        held = groups.get(m.spec.group_key)
        if held is None:
            groups[m.spec.group_key] = (m.spec.mode, [(m.spec.rule_id, m.factor)])
        else:
            held[1].append((m.spec.rule_id, m.factor))
    applied: list[tuple[str, Decimal]] = []
    left_out: list[str] = []
    for mode, members in groups.values():
        if mode == "stack":
            applied += members
            continue
        chosen = members[0] if mode == "first" else max(members, key=lambda f: f[1])
        applied.append(chosen)
        left_out += [rule_id for rule_id, _ in members if rule_id != chosen[0]]
    return applied, left_out


_Rate = Callable[[Decimal, Decimal], "tuple[Decimal, Decimal | None]"]


def _compile_rate(effect: PerAmount) -> _Rate:
    """evaluate._rate_points for one effect: unrounded points before order multipliers, and
    the step rate used (None without steps)."""
    rate, unit, steps = effect.rate, effect.unit, effect.steps
    if not steps:

        def flat(plain: Decimal, weighted: Decimal) -> tuple[Decimal, Decimal | None]:
            return weighted * rate / unit, None

        return flat
    if effect.stepping == "whole":

        def whole(plain: Decimal, weighted: Decimal) -> tuple[Decimal, Decimal | None]:
            step_rate = [step.rate for step in steps if plain >= step.amount_from][-1]
            return weighted * step_rate / unit, step_rate

        return whole
    bands = tuple(
        zip(steps, [step.amount_from for step in steps[1:]] + [None], strict=True),
    )

    def marginal(plain: Decimal, weighted: Decimal) -> tuple[Decimal, Decimal | None]:
        raw = Decimal(0)
        for step, upper in bands:
            top = plain if upper is None else min(plain, upper)
            if top > step.amount_from:
                raw += (top - step.amount_from) * step.rate
        scale = weighted / plain if plain else Decimal(0)
        return raw * scale / unit, None

    return marginal


class _Rule:
    """One rule as compiled."""

    __slots__ = (
        "id",
        "kind",
        "when",
        "has_items",
        "needs_amount",
        "limits",
        "limit_keys",
        "streak",
        "mission",
        "mission_steps",
        "stop",
        "fixed_points",
        "multiplier",
        "rate",
        "rate_text",
        "unit_text",
        "rounding",
        "rounding_mode",
        "match",
    )

    def __init__(self, rule: Rule, compile_when: Callable[[When], _When], groups: Mapping[str, str]) -> None:
        effect = rule.effect
        self.id = rule.id
        self.kind = effect.kind
        self.when = compile_when(rule.when)
        self.has_items = rule.when.items is not None
        self.needs_amount = effect.kind == "per_amount" and not self.has_items
        self.limits = _compile_limits(rule.limits) if rule.limits else None
        self.limit_keys = tuple(_PERIOD_KEYS[limit.per] for limit in rule.limits)
        self.streak = rule.streak
        self.mission = rule.mission
        self.mission_steps = (
            tuple((step.name, step.on, compile_when(step.when)) for step in rule.mission.steps)
            if rule.mission is not None
            else ()
        )
        self.stop = rule.stop
        self.fixed_points = effect.points if effect.kind in ("fixed", "per_quantity") else 0
        self.multiplier = _Multiplier(rule, effect, groups) if isinstance(effect, Multiply) else None
        if isinstance(effect, PerAmount):
            self.rate: _Rate | None = _compile_rate(effect)
            self.rate_text = str(effect.rate)
            self.unit_text = str(effect.unit)
            self.rounding: str = effect.rounding
            self.rounding_mode = ROUNDINGS[effect.rounding]
        else:
            self.rate = None
            self.rate_text = self.unit_text = self.rounding = self.rounding_mode = ""
        self.match = self._compile_match()

    def _compile_match(self) -> _Match:
        """Whether the rule matches the event, as the interpreter's loop decides it: its
        conditions, an amount for a per_amount rule, its limits, then its streak and mission
        (which move the rule state on only when everything before holds)."""
        when, limits, streak, mission, rule_id = self.when, self.limits, self.streak, self.mission, self.id
        needs_amount = self.needs_amount
        if limits is None and streak is None and mission is None:
            if not needs_amount:

                def plain(ctx: _Ctx, state: dict[str, Any]) -> tuple[str | None, tuple[_Line, ...], int | None]:
                    reason, lines = when(ctx)
                    return reason, lines, None

                return plain

            def with_amount(ctx: _Ctx, state: dict[str, Any]) -> tuple[str | None, tuple[_Line, ...], int | None]:
                reason, lines = when(ctx)
                if reason is None and ctx.amount is None:
                    reason = "the event has no amount"
                return reason, lines, None

            return with_amount
        steps = self.mission_steps

        def stateful(ctx: _Ctx, state: dict[str, Any]) -> tuple[str | None, tuple[_Line, ...], int | None]:
            reason, lines = when(ctx)
            allowed = None
            if reason is None and needs_amount and ctx.amount is None:
                reason = "the event has no amount"
            if reason is None and limits is not None:
                reason, allowed = limits(state.get(rule_id, {}), ctx.on)
            if reason is None and (streak is not None or mission is not None):
                entries = state.setdefault(rule_id, {})
                if streak is not None:
                    reason, days = _advance_streak(streak, entries, ctx.on)
                    if reason is None:
                        ctx.streak_days[rule_id] = days
                if reason is None and mission is not None:
                    reason = _advance_mission(mission, steps, entries, ctx)
            return reason, lines, allowed

        return stateful


class CompiledProgram:
    """A program read once: its rules by the event types they listen to, and the lookups the
    ledger's booking needs (engine/entries.py)."""

    def __init__(self, program: EngineProgram) -> None:
        self.version = program.version
        self.multipliers = {level.name: level.multiplier for level in program.tiers.levels}
        self.zone = program.zone
        self.activity_kinds = program.activity_kinds
        items = program.items
        self.shipping_skus = frozenset(items.shipping_skus)
        self.shipping_categories = frozenset(items.shipping_categories)
        self.shipping_labels = frozenset(items.shipping_labels)
        self.any_shipping = bool(items.shipping_skus or items.shipping_categories or items.shipping_labels)
        # Conditions shared by several rules (the default `When()`) compile to one closure.
        cache: dict[int, _When] = {}

        def compile_when(when: When) -> _When:
            found = cache.get(id(when))
            if found is None:
                found = cache[id(when)] = _compile_when(when)
            return found

        ordered = program.ordered_rules()
        rules = {rule.id: _Rule(rule, compile_when, program.groups) for rule in ordered}
        listening: dict[str, list[_Rule]] = {}
        for rule in ordered:
            for event_type in dict.fromkeys(rule.events):
                listening.setdefault(event_type, []).append(rules[rule.id])
        self.listening = {event_type: tuple(found) for event_type, found in listening.items()}
        self.by_id: dict[str, Rule] = {rule.id: rule for rule in program.rules}
        self.kinds: dict[str, str] = {rule.id: rule.effect.kind for rule in program.rules}

    def lines(self, payload: Mapping[str, Any]) -> tuple[_Line, ...]:
        """evaluate._lines: the order lines of a payload, told from shipping lines."""
        items = payload.get("items")
        if not items:
            return ()
        skus, categories, labels_of = self.shipping_skus, self.shipping_categories, self.shipping_labels
        any_shipping = self.any_shipping
        lines = []
        for index, item in enumerate(items):
            if isinstance(item, dict):
                sku = str(item.get("sku", ""))
                category = str(item.get("category", ""))
                labels = frozenset(item.get("labels", ()) or ())
                amount = _decimal(item.get("amount", "0"), index)
                quantity = int(item.get("quantity", 1))
            else:
                sku = str(_field(item, "sku", ""))
                category = str(_field(item, "category", ""))
                labels = frozenset(_field(item, "labels", ()) or ())
                amount = _decimal(_field(item, "amount", "0"), index)
                quantity = int(_field(item, "quantity", 1))
            shipping = any_shipping and (sku in skus or category in categories or bool(labels & labels_of))
            lines.append(_Line(index, sku, category, amount, quantity, labels, shipping))
        return tuple(lines)

    def evaluate(self, member: Member, event: EventData) -> Evaluation:
        """evaluate.interpret, on this program."""
        if member.tier not in self.multipliers:
            raise EngineError(f"member tier {member.tier!r} is not a tier of program {self.version}")
        state = _copied_state(member.state)
        local = event.local_at or event.occurred_at.astimezone(self.zone)
        payload = event.payload
        raw_amount = payload.get("amount")
        if raw_amount is None:
            amount = None
        else:
            amount = raw_amount if type(raw_amount) is Decimal else _money(raw_amount, "payload.amount")
        ctx = _Ctx(member, event, local.date(), local.time(), self.lines(payload), amount)
        on = ctx.on
        # (rule id, matched, reason): the trace before the points are known.
        considered: list[tuple[str, bool, str]] = []
        consider = considered.append
        matched: list[tuple[_Rule, tuple[_Line, ...], int | None]] = []
        skipped = None
        if event.type == "activity" and payload.get("kind") not in self.activity_kinds:
            skipped = f"activity kind {payload.get('kind')!r} is not declared by the program"
        for rule in self.listening.get(event.type, ()):
            if skipped is not None:
                consider((rule.id, False, skipped))
                continue
            reason, lines, allowed = rule.match(ctx, state)
            if reason is not None:
                consider((rule.id, False, reason))
                continue
            ctx.fired.add(rule.id)
            matched.append((rule, lines, allowed))
            consider((rule.id, True, ""))
            if rule.stop:
                skipped = f"stopped by rule {rule.id!r}"

        awards, reasons = self._points(ctx, member.tier, matched)
        points_of = {award.rule: award.points for award in reversed(awards)}
        for rule, _, _allowed in matched:
            if rule.limits is None:
                continue
            entries = state.setdefault(rule.id, {})
            points = points_of.get(rule.id, 0)
            for key_of in rule.limit_keys:
                used = entries.setdefault(key_of(on), {"count": 0, "points": 0})
                used["count"] = used.get("count", 0) + 1
                used["points"] = used.get("points", 0) + points
            _prune(entries)
        if state:
            state = {rule_id: entries for rule_id, entries in state.items() if entries}
        trace = tuple(
            Considered(rule_id, True, reasons.get(rule_id, reason), points_of.get(rule_id))
            if matches
            else Considered(rule_id, False, reason)
            for rule_id, matches, reason in considered
        )
        return Evaluation(self.version, event.type, local, tuple(awards), state, trace)

    def _points(
        self, ctx: _Ctx, tier: str, matched: list[tuple[_Rule, tuple[_Line, ...], int | None]]
    ) -> tuple[list[Award], dict[str, str]]:
        """evaluate._points: each matched rule's award, and the trace's reasons for them."""
        reasons: dict[str, str] = {}
        multipliers: list[_Matched] = []
        for rule, lines, _ in matched:
            spec = rule.multiplier
            if spec is not None:
                factor = self.multipliers[tier] if spec.factor is None else spec.factor
                multipliers.append(_Matched(spec, factor, lines))
                reasons[rule.id] = f"x{factor}{spec.suffix}"
        awards: list[Award] = []
        dropped_everywhere: dict[str, int] = {}
        per_amount_rules = 0
        for rule, lines, allowed in matched:
            kind = rule.kind
            detail: dict[str, Any]
            if kind == "fixed":
                points = rule.fixed_points
                detail = {}
            elif kind == "per_quantity":
                counted = lines if rule.has_items else tuple(line for line in ctx.lines if not line.shipping)
                quantity = sum(line.quantity for line in counted)
                points = rule.fixed_points * quantity
                detail = {"quantity": quantity, "points_per_unit": rule.fixed_points}
            elif kind == "per_amount":
                per_amount_rules += 1
                points, detail, left_out = self._per_amount(ctx, tier, rule, lines, multipliers)
                for rule_id in left_out:
                    dropped_everywhere[rule_id] = dropped_everywhere.get(rule_id, 0) + 1
            else:
                continue
            if allowed is not None and points > allowed:
                detail["capped_from"] = points
                points = allowed
            awards.append(Award(rule.id, points, detail))
            reasons[rule.id] = _award_reason(kind, detail)
        for m in multipliers:
            rule_id = m.spec.rule_id
            if per_amount_rules and dropped_everywhere.get(rule_id, 0) == per_amount_rules:
                reasons[rule_id] = f"x{m.factor} left out: its group {m.spec.group!r} took another multiplier"
            elif not per_amount_rules:
                reasons[rule_id] = f"x{m.factor} matched, but no per_amount rule matched this event"
        return awards, reasons

    def _per_amount(
        self, ctx: _Ctx, tier: str, rule: _Rule, lines: tuple[_Line, ...], multipliers: list[_Matched]
    ) -> tuple[int, dict[str, Any], list[str]]:
        """One per_amount rule's points and detail, and the order multipliers its groups left out."""
        rule_id = rule.id
        order_factors: list[_Matched] = []
        line_rules: list[_Matched] = []
        for m in multipliers:
            applies_to = m.spec.applies_to
            if applies_to is None or rule_id in applies_to:
                (line_rules if m.spec.lines_target else order_factors).append(m)
        if rule.has_items:
            plain = sum((line.amount for line in lines), Decimal(0))
            if line_rules:
                weighted = sum((line.amount * _line_factor(line_rules, line) for line in lines), Decimal(0))
            else:
                weighted = sum((line.amount * 1 for line in lines), Decimal(0))
        else:
            shipping = sum((line.amount for line in ctx.lines if line.shipping), Decimal(0))
            # A per_amount rule without item conditions never matches an event without an amount.
            assert ctx.amount is not None
            plain = ctx.amount - shipping
            if line_rules:
                weighted = plain + sum(
                    (line.amount * (_line_factor(line_rules, line) - 1) for line in ctx.lines if not line.shipping),
                    Decimal(0),
                )
            else:
                weighted = plain + sum(
                    (line.amount * 0 for line in ctx.lines if not line.shipping),
                    Decimal(0),
                )
        assert rule.rate is not None
        value, step_rate = rule.rate(plain, weighted)
        applied, left_out = _grouped(order_factors) if order_factors else ([], [])
        for _, factor in applied:
            value *= factor
        points = int(value.to_integral_value(rounding=rule.rounding_mode))
        detail: dict[str, Any] = {
            "amount": str(plain),
            "rate": str(step_rate) if step_rate is not None else rule.rate_text,
            "unit": rule.unit_text,
            "rounding": rule.rounding,
            "tier": tier,
        }
        if weighted != plain:
            detail["weighted_amount"] = str(weighted)
        if applied:
            detail["multipliers"] = {rule_id: str(factor) for rule_id, factor in applied}
        return points, detail, left_out


def _decimal(value: Any, index: int) -> Decimal:
    """A line's amount as evaluate._money reads it (a Decimal is taken as it is: the same value
    with the same exponent as its text would give)."""
    return value if type(value) is Decimal else _money(value, f"payload.items.{index}.amount")


def _line_factor(line_rules: list[_Matched], line: _Line) -> Decimal:
    """evaluate._line_factor: the product of the line multipliers that reach this line."""
    reaching = [m for m in line_rules if line.index in m.indexes]
    result = Decimal(1)
    if not reaching:
        return result
    chosen, _ = _grouped(reaching)
    for _, factor in chosen:
        result *= factor
    return result


# Compiled programs by the id of the program, while the program lives.
_COMPILED: dict[int, CompiledProgram] = {}


def compiled(program: EngineProgram) -> CompiledProgram:
    """The program compiled, once per program object (kept until the object is collected)."""
    found = _COMPILED.get(id(program))
    if found is None:
        found = _COMPILED[id(program)] = CompiledProgram(program)
        weakref.finalize(program, _COMPILED.pop, id(program), None)
    return found


def evaluate(program: EngineProgram, member: Member, event: EventData) -> Evaluation:
    """Awards, the member's new rule state and a trace of every rule that listens to the event."""
    return compiled(program).evaluate(member, event)
