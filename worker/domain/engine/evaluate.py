"""The rule engine: (member snapshot, one event, program) -> (awards, new rule state, trace).

`interpret` here is the rule language read plainly, rule data walked for every event: the
definition of what an evaluation gives. The ledger runs `compiled.evaluate`, which compiles
each program once and gives exactly the same results (tests/unit/test_engine_compiled.py).

Pure: no clock, no I/O. The event's program-local time comes from `occurred_at` (or the
caller's `local_at`), so member days and limits follow when the event happened.

Evaluation has two passes. The first walks the rules in priority order and decides which
match (conditions, limits by count, streaks, missions, `stop`). The second computes points:
per_amount rules are multiplied by every matched multiplier that applies to them, so the
order of multiply and per_amount rules in the file does not matter, only their groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from worker.domain.engine.language import (
    ROUNDINGS,
    EngineProgram,
    ItemFilter,
    Mission,
    Multiply,
    PerAmount,
    Rule,
    Streak,
    TimeWindow,
    When,
)
from worker.domain.engine.state import is_closed, period_key, prune_periods, validate_state
from worker.domain.errors import EngineError
from worker.domain.local_days import falls_on, is_birthday


@dataclass(frozen=True)
class Member:
    """What the engine needs to know about a member, as it was before the event."""

    tier: str
    qualifying: int | Decimal = 0
    labels: frozenset[str] = frozenset()
    birthday: date | None = None
    # Purchases before this event: the event is purchase number purchase_count + 1.
    purchase_count: int = 0
    state: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EventData:
    """One event as plain data. `payload` holds the contract's payload fields; purchase
    items are mappings (or objects) with sku, category, amount, quantity and optional labels."""

    type: str
    source: str
    occurred_at: datetime
    payload: Mapping[str, Any] = field(default_factory=dict)
    # The event's time in the program's zone; derived from occurred_at when not given.
    local_at: datetime | None = None


@dataclass(frozen=True)
class Award:
    """Points one rule gives, with the inputs that produced them (shown in member history)."""

    rule: str
    points: int
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "points": self.points, **self.detail}


@dataclass(frozen=True)
class Considered:
    """One line of the trace: a rule that listens to the event, and what became of it."""

    rule: str
    matched: bool
    reason: str
    points: int | None = None


@dataclass(frozen=True)
class Evaluation:
    program_version: str | int
    event_type: str
    local_at: datetime
    awards: tuple[Award, ...]
    state: dict[str, Any]
    trace: tuple[Considered, ...]

    @property
    def points(self) -> int:
        return sum(award.points for award in self.awards)

    def points_by_rule(self) -> dict[str, int]:
        return {award.rule: award.points for award in self.awards}


@dataclass(frozen=True)
class Line:
    index: int
    sku: str
    category: str
    amount: Decimal
    quantity: int
    labels: frozenset[str]
    shipping: bool


def _money(value: Any, what: str) -> Decimal:
    if isinstance(value, float) or isinstance(value, bool):
        raise EngineError(f"{what}: must be a decimal string or Decimal, not {type(value).__name__}")
    try:
        return Decimal(str(value))
    except ArithmeticError:
        raise EngineError(f"{what}: {value!r} is not a decimal amount") from None


def _field(item: Any, name: str, default: Any = None) -> Any:
    if isinstance(item, Mapping):
        return item.get(name, default)
    return getattr(item, name, default)


def _lines(program: EngineProgram, payload: Mapping[str, Any]) -> tuple[Line, ...]:
    shipping = program.items
    lines = []
    for index, item in enumerate(payload.get("items") or ()):
        sku = str(_field(item, "sku", ""))
        category = str(_field(item, "category", ""))
        labels = frozenset(_field(item, "labels", ()) or ())
        lines.append(
            Line(
                index=index,
                sku=sku,
                category=category,
                amount=_money(_field(item, "amount", "0"), f"payload.items.{index}.amount"),
                quantity=int(_field(item, "quantity", 1)),
                labels=labels,
                shipping=(
                    sku in shipping.shipping_skus
                    or category in shipping.shipping_categories
                    or bool(labels & set(shipping.shipping_labels))
                ),
            )
        )
    return tuple(lines)


def _line_matches(rule_items: ItemFilter, line: Line) -> bool:
    if line.shipping and not rule_items.shipping:
        return False
    if line.sku in rule_items.exclude_skus or line.category in rule_items.exclude_categories:
        return False
    if line.labels & set(rule_items.exclude_labels):
        return False
    includes = rule_items.skus or rule_items.categories or rule_items.labels
    if not includes:
        return True
    return (
        line.sku in rule_items.skus
        or line.category in rule_items.categories
        or bool(line.labels & set(rule_items.labels))
    )


_MISSING = object()


def _payload_field(payload: Mapping[str, Any], key: str) -> Any:
    """A payload field, else the activity attribute of that name (the contract keeps an
    attribute from being called `kind`, the one field an activity has)."""
    if key in payload:
        return payload[key]
    attributes = payload.get("attributes")
    if isinstance(attributes, Mapping) and key in attributes:
        return attributes[key]
    return _MISSING


def _in_time(window: TimeWindow, at: time) -> bool:
    if window.start < window.end:
        return window.start <= at < window.end
    return at >= window.start or at < window.end


@dataclass
class _Context:
    program: EngineProgram
    member: Member
    event: EventData
    on: date
    at: time
    lines: tuple[Line, ...]
    amount: Decimal | None
    fired: set[str] = field(default_factory=set)
    streak_days: dict[str, int] = field(default_factory=dict)


def _check(when: When, ctx: _Context) -> tuple[str | None, tuple[Line, ...]]:
    """None and the matching lines when every condition holds, else why not."""
    member, event, on = ctx.member, ctx.event, ctx.on
    if when.sources is not None and event.source not in when.sources:
        return f"source {event.source!r} is not one of {', '.join(when.sources)}", ()
    if when.tiers is not None and member.tier not in when.tiers:
        return f"tier {member.tier!r} is not one of {', '.join(when.tiers)}", ()
    if when.labels is not None and not (member.labels & set(when.labels)):
        return f"member has none of the labels {', '.join(when.labels)}", ()
    if member.labels & set(when.exclude_labels):
        return f"member has an excluded label ({', '.join(sorted(member.labels & set(when.exclude_labels)))})", ()
    if when.kinds is not None and event.payload.get("kind") not in when.kinds:
        return f"activity kind {event.payload.get('kind')!r} is not one of {', '.join(when.kinds)}", ()
    if when.starts_on is not None and on < when.starts_on:
        return f"{on} is before {when.starts_on}", ()
    if when.ends_on is not None and on > when.ends_on:
        return f"{on} is after {when.ends_on}", ()
    if when.weekdays is not None and on.isoweekday() not in when.weekdays:
        return f"{on} is weekday {on.isoweekday()}, not one of {', '.join(map(str, when.weekdays))}", ()
    if when.days_of_month is not None and not any(falls_on(day, on) for day in when.days_of_month):
        return f"{on} is not day {', '.join(map(str, when.days_of_month))} of the month", ()
    if when.birthday == "day" and not is_birthday(member.birthday, on):
        return f"{on} is not the member's birthday", ()
    if when.birthday == "month" and (member.birthday is None or member.birthday.month != on.month):
        return f"{on} is not in the member's birthday month", ()
    if when.time is not None and not _in_time(when.time, ctx.at):
        return f"local time {ctx.at.isoformat('minutes')} is outside {when.time.start}-{when.time.end}", ()
    if when.nth_purchase is not None:
        if event.type != "purchase":
            return "nth_purchase needs a purchase event", ()
        nth = member.purchase_count + 1
        if nth not in when.nth_purchase:
            return f"purchase number {nth}, not {', '.join(map(str, when.nth_purchase))}", ()
    if when.min_amount is not None or when.max_amount is not None:
        if ctx.amount is None:
            return "the event has no amount", ()
        if when.min_amount is not None and ctx.amount < when.min_amount:
            return f"amount {ctx.amount} is below the minimum {when.min_amount}", ()
        if when.max_amount is not None and ctx.amount > when.max_amount:
            return f"amount {ctx.amount} is above the maximum {when.max_amount}", ()
    for key, expected in (when.payload or {}).items():
        value = _payload_field(event.payload, key)
        if value is _MISSING:
            return f"payload.{key} is missing, not {expected!r}", ()
        # Of the same type too: an attribute 1 is not true, nor "5" the integer 5.
        if type(value) is not type(expected) or value != expected:
            return f"payload.{key} is {value!r}, not {expected!r}", ()
    for other in when.after_rules:
        if other not in ctx.fired:
            return f"rule {other!r} did not match this event", ()
    if when.streak is not None:
        days = ctx.streak_days.get(when.streak.rule)
        if days is None:
            return f"the streak of {when.streak.rule!r} did not advance on this event", ()
        day, every = when.streak.day, when.streak.every
        if day is not None:
            if days != day:
                return f"streak day {days}, not day {day}", ()
        elif every is not None and days % every != 0:  # the language gives exactly one of them
            return f"streak day {days}, not every {every}", ()
    lines: tuple[Line, ...] = ()
    if when.items is not None:
        lines = tuple(line for line in ctx.lines if _line_matches(when.items, line))
        if not lines:
            return "no order line matches the item filter", ()
    return None, lines


def _limit_reason(rule: Rule, entries: Mapping[str, Any], on: date) -> tuple[str | None, int | None]:
    """Why the rule's limits refuse this event, or None and the points still allowed (None: no cap)."""
    allowed: int | None = None
    for limit in rule.limits:
        key = period_key(limit.per, on)
        if is_closed(entries, key):
            return f"{key} is older than the periods kept for its limit", None
        used = entries.get(key, {})
        if limit.count is not None and used.get("count", 0) >= limit.count:
            return f"limit reached: {limit.count} per {limit.per} ({key})", None
        if limit.points is not None:
            left = limit.points - used.get("points", 0)
            if left <= 0:
                return f"limit reached: {limit.points} points per {limit.per} ({key})", None
            allowed = left if allowed is None else min(allowed, left)
    return None, allowed


def _advance_streak(rule: Streak, entries: dict[str, Any], on: date) -> tuple[str | None, int]:
    streak = entries.get("streak")
    last = date.fromisoformat(streak["last_on"]) if streak else None
    if last is not None and on <= last:
        return ("already counted " + str(on)) if on == last else f"{on} is before the streak's last day {last}", 0
    days = streak["days"] + 1 if streak and last == on - timedelta(days=1) else 1
    stored = 0 if rule.restart_after is not None and days >= rule.restart_after else days
    entries["streak"] = {"last_on": on.isoformat(), "days": stored}
    return None, days


def _advance_mission(mission: Mission, entries: dict[str, Any], ctx: _Context) -> str | None:
    """None when this event completes the mission; else what it did to the mission.

    Any step may come first: it starts the mission and its window. Steps then count in
    whatever order they arrive, each once, so the same events give the same result in any
    order (a re-evaluation replays late ones in occurrence order)."""
    progress = entries.get("mission")
    steps_here = [step for step in mission.steps if ctx.event.type in step.on and _check(step.when, ctx)[0] is None]
    if progress is not None and progress["status"] != "open":
        return f"mission already {progress['status']}"
    if progress is None:
        if not steps_here:
            return "no mission step matches this event"
        progress = {"started_at": ctx.event.occurred_at.isoformat(), "done": [], "status": "open"}
        entries["mission"] = progress
    else:
        deadline = datetime.fromisoformat(progress["started_at"]) + timedelta(days=mission.within_days)
        if ctx.event.occurred_at > deadline:
            progress["status"] = "expired"
            return f"mission window of {mission.within_days} days closed at {deadline.isoformat()}"
    new = [step.name for step in steps_here if step.name not in progress["done"]]
    if not new:
        return "no open mission step matches this event"
    progress["done"].append(new[0])
    if len(progress["done"]) < len(mission.steps):
        return f"mission step {new[0]!r} done ({len(progress['done'])} of {len(mission.steps)})"
    progress["status"] = "completed"
    return None


def _combine(mode: str, factors: list[tuple[str, Decimal]]) -> tuple[list[tuple[str, Decimal]], list[str]]:
    """The factors of one group that apply, and the rule ids left out."""
    if mode == "stack":
        return factors, []
    if mode == "first":
        chosen = factors[0]
    else:
        chosen = max(factors, key=lambda f: f[1])  # the first of equal highest
    return [chosen], [rule for rule, _ in factors if rule != chosen[0]]


@dataclass(frozen=True)
class _Multiplier:
    """A matched multiply rule, its factor (the tier's for "tier") and the lines it matched."""

    rule_id: str
    effect: Multiply
    factor: Decimal
    lines: tuple[Line, ...]


def _grouped(program: EngineProgram, factors: list[_Multiplier]) -> tuple[list[tuple[str, Decimal]], list[str]]:
    groups: dict[str, list[tuple[str, Decimal]]] = {}
    for m in factors:
        groups.setdefault(m.effect.group or f"rule:{m.rule_id}", []).append((m.rule_id, m.factor))
    applied: list[tuple[str, Decimal]] = []
    left_out: list[str] = []
    for name, members in groups.items():
        mode = program.groups.get(name, "stack")
        chosen, dropped = _combine(mode, members)
        applied += chosen
        left_out += dropped
    return applied, left_out


def _rate_points(effect: PerAmount, plain: Decimal, weighted: Decimal) -> tuple[Decimal, Decimal | None]:
    """Unrounded points before order multipliers, and the step rate used (None without steps)."""
    if not effect.steps:
        return weighted * effect.rate / effect.unit, None
    if effect.stepping == "whole":
        rate = [step.rate for step in effect.steps if plain >= step.amount_from][-1]
        return weighted * rate / effect.unit, rate
    raw = Decimal(0)
    bounds = [step.amount_from for step in effect.steps[1:]] + [None]
    for step, upper in zip(effect.steps, bounds, strict=True):
        top = plain if upper is None else min(plain, upper)
        if top > step.amount_from:
            raw += (top - step.amount_from) * step.rate
    scale = weighted / plain if plain else Decimal(0)
    return raw * scale / effect.unit, None


def interpret(program: EngineProgram, member: Member, event: EventData) -> Evaluation:
    """Awards, the member's new rule state and a trace of every rule that listens to the event."""
    try:
        program.rank(member.tier)
    except KeyError:
        raise EngineError(f"member tier {member.tier!r} is not a tier of program {program.version}") from None
    state = validate_state(member.state)
    local = event.local_at or event.occurred_at.astimezone(program.zone)
    payload = event.payload
    amount = _money(payload["amount"], "payload.amount") if payload.get("amount") is not None else None
    ctx = _Context(program, member, event, local.date(), local.time(), _lines(program, payload), amount)
    trace: list[Considered] = []
    matched: list[tuple[Rule, tuple[Line, ...], int | None]] = []
    listening = [rule for rule in program.ordered_rules() if event.type in rule.events]
    kind_problem = None
    if event.type == "activity" and payload.get("kind") not in program.activity_kinds:
        kind_problem = f"activity kind {payload.get('kind')!r} is not declared by the program"
    stopped_by: str | None = None
    for rule in listening:
        if kind_problem or stopped_by:
            trace.append(Considered(rule.id, False, kind_problem or f"stopped by rule {stopped_by!r}"))
            continue
        reason, lines = _check(rule.when, ctx)
        allowed = None
        entries = state.get(rule.id, {})
        if reason is None and rule.effect.kind in ("per_amount",) and amount is None and rule.when.items is None:
            reason = "the event has no amount"
        if reason is None:
            reason, allowed = _limit_reason(rule, entries, ctx.on)
        if reason is None and (rule.streak is not None or rule.mission is not None):
            entries = state.setdefault(rule.id, {})
            if rule.streak is not None:
                reason, days = _advance_streak(rule.streak, entries, ctx.on)
                if reason is None:
                    ctx.streak_days[rule.id] = days
            if reason is None and rule.mission is not None:
                reason = _advance_mission(rule.mission, entries, ctx)
        if reason is not None:
            trace.append(Considered(rule.id, False, reason))
            continue
        ctx.fired.add(rule.id)
        matched.append((rule, lines, allowed))
        trace.append(Considered(rule.id, True, ""))
        if rule.stop:
            stopped_by = rule.id

    awards, reasons = _points(ctx, matched)
    for rule, _, _allowed in matched:
        if not rule.limits:
            continue
        entries = state.setdefault(rule.id, {})
        points = next((a.points for a in awards if a.rule == rule.id), 0)
        for limit in rule.limits:
            key = period_key(limit.per, ctx.on)
            used = entries.setdefault(key, {"count": 0, "points": 0})
            used["count"] = used.get("count", 0) + 1
            used["points"] = used.get("points", 0) + points
        prune_periods(entries)
    state = {rule_id: entries for rule_id, entries in state.items() if entries}
    final_trace = tuple(
        Considered(
            c.rule, c.matched, reasons.get(c.rule, c.reason), next((a.points for a in awards if a.rule == c.rule), None)
        )
        if c.matched
        else c
        for c in trace
    )
    return Evaluation(program.version, event.type, local, tuple(awards), state, final_trace)


def _award_reason(kind: str, detail: dict[str, Any]) -> str:
    capped = f", capped from {detail['capped_from']}" if "capped_from" in detail else ""
    if kind == "per_amount":
        text = f"{detail.get('weighted_amount', detail['amount'])} x {detail['rate']} / {detail['unit']}"
        for rule_id, factor in detail.get("multipliers", {}).items():
            text += f" x{factor} ({rule_id})"
        return f"{text}, {detail['rounding']}{capped}"
    if kind == "per_quantity":
        return f"{detail['quantity']} x {detail['points_per_unit']} points{capped}"
    return f"fixed{capped}"


def _line_factor(program: EngineProgram, line_rules: list[_Multiplier], line: Line) -> Decimal:
    """The product of the line multipliers that reach this line, grouped as the program says."""
    chosen, _ = _grouped(program, [m for m in line_rules if line in m.lines])
    result = Decimal(1)
    for _, f in chosen:
        result *= f
    return result


def _points(
    ctx: _Context, matched: list[tuple[Rule, tuple[Line, ...], int | None]]
) -> tuple[list[Award], dict[str, str]]:
    program, member = ctx.program, ctx.member
    reasons: dict[str, str] = {}
    multipliers: list[_Multiplier] = []
    for rule, lines, _ in matched:
        if isinstance(rule.effect, Multiply):
            factor = program.level(member.tier).multiplier if rule.effect.factor == "tier" else rule.effect.factor
            multipliers.append(_Multiplier(rule.id, rule.effect, factor, lines))
            reasons[rule.id] = f"x{factor}" + (f" (group {rule.effect.group})" if rule.effect.group else "")
    awards: list[Award] = []
    dropped_everywhere: dict[str, int] = {}
    per_amount_rules = 0
    for rule, lines, allowed in matched:
        effect = rule.effect
        detail: dict[str, Any] = {}
        if effect.kind == "fixed":
            points = effect.points
        elif effect.kind == "per_quantity":
            counted = lines if rule.when.items is not None else tuple(line for line in ctx.lines if not line.shipping)
            quantity = sum(line.quantity for line in counted)
            points = effect.points * quantity
            detail = {"quantity": quantity, "points_per_unit": effect.points}
        elif effect.kind == "per_amount":
            per_amount_rules += 1
            applies = [m for m in multipliers if m.effect.applies_to is None or rule.id in m.effect.applies_to]
            order_factors = [m for m in applies if m.effect.target == "order"]
            line_rules = [m for m in applies if m.effect.target == "lines"]
            if rule.when.items is not None:
                plain = sum((line.amount for line in lines), Decimal(0))
                weighted = sum((line.amount * _line_factor(program, line_rules, line) for line in lines), Decimal(0))
            else:
                goods = [line for line in ctx.lines if not line.shipping]
                shipping = sum((line.amount for line in ctx.lines if line.shipping), Decimal(0))
                # A per_amount rule without item conditions never matches an event without an amount.
                assert ctx.amount is not None
                plain = ctx.amount - shipping
                weighted = plain + sum(
                    (line.amount * (_line_factor(program, line_rules, line) - 1) for line in goods), Decimal(0)
                )
            value, step_rate = _rate_points(effect, plain, weighted)
            applied, left_out = _grouped(program, order_factors)
            for rule_id in left_out:
                dropped_everywhere[rule_id] = dropped_everywhere.get(rule_id, 0) + 1
            for _, factor in applied:
                value *= factor
            points = int(value.to_integral_value(rounding=ROUNDINGS[effect.rounding]))
            detail = {
                "amount": str(plain),
                "rate": str(step_rate if step_rate is not None else effect.rate),
                "unit": str(effect.unit),
                "rounding": effect.rounding,
                "tier": member.tier,
            }
            if weighted != plain:
                detail["weighted_amount"] = str(weighted)
            if applied:
                detail["multipliers"] = {rule_id: str(factor) for rule_id, factor in applied}
        else:
            continue
        if allowed is not None and points > allowed:
            detail["capped_from"] = points
            points = allowed
        awards.append(Award(rule.id, points, detail))
        reasons[rule.id] = _award_reason(effect.kind, detail)
    for m in multipliers:
        if per_amount_rules and dropped_everywhere.get(m.rule_id, 0) == per_amount_rules:
            reasons[m.rule_id] = f"x{m.factor} left out: its group {m.effect.group!r} took another multiplier"
        elif not per_amount_rules:
            reasons[m.rule_id] = f"x{m.factor} matched, but no per_amount rule matched this event"
    return awards, reasons


def event_data(event: Any, local_at: datetime | None = None) -> EventData:
    """Plain data from a contract event (worker.domain.events) or any object with type,
    source, occurred_at and an optional pydantic `payload`; amounts stay Decimal."""
    payload = getattr(event, "payload", None)
    if payload is None:
        plain: dict[str, Any] = {}
    elif isinstance(payload, Mapping):
        plain = dict(payload)
    else:
        plain = payload.model_dump()
    return EventData(event.type, event.source, event.occurred_at, plain, local_at)
