"""What a member's ledger says each event earned, and what to book so it says what it should.

Pure: ledger entries as plain mappings in, points by event and rule out. Used by the
re-evaluation that follows a late event (worker/services/replay.py): the replayed history
gives the points each event should have, the member's ledger the points it has, and the
difference is booked as correcting entries that name the event they correct, and each event's
recorded outcome (processed_events) is made the ledger's.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# An event on a member's ledger: (source, event_id) as its entries record it.
EventKey = tuple[str, str]
# The order of a member's events: occurrence time, then source, then event id.
OrderKey = tuple[datetime, str, str]


# Event types whose points count in no rule `points_by_event` gives (an operator's adjustment
# moves the balance, it earns nothing): their recorded outcome is what they moved when applied.
KEPT_OUTCOME_TYPES = frozenset({"adjustment"})


def order_key(occurred_at: datetime, source: str, event_id: str) -> OrderKey:
    return (occurred_at, source, event_id)


def corrected_key(item: Mapping[str, Any]) -> EventKey | None:
    """The event a correcting entry's rule item is about, if it is one."""
    corrects = item.get("corrects")
    if isinstance(corrects, Mapping):
        return (str(corrects["source"]), str(corrects["event_id"]))
    return None


def points_by_event(entries: Iterable[Mapping[str, Any]]) -> dict[EventKey, dict[str, int]]:
    """Qualifying points per event and rule, from `earn` and `reverse` entries (each with
    source, event_id, kind, qualifying_points and rules).

    An earn entry gives each rule item's points to its event; a refund's reversal gives its
    qualifying points to rule "refund"; a correcting item gives its points to the event it
    names; a merge's `transfer` entry gives each moved item's points to the event it names
    (`moves`), so the member kept has booked what the member absorbed had. Spending, expiry
    and pending releases move no qualifying points and count nowhere.
    """
    totals: dict[EventKey, dict[str, int]] = {}

    def add(key: EventKey, rule: str, points: int) -> None:
        by_rule = totals.setdefault(key, {})
        by_rule[rule] = by_rule.get(rule, 0) + points

    for entry in entries:
        if entry["kind"] == "transfer":
            for item in entry["rules"] or []:
                moves = item.get("moves") if isinstance(item, Mapping) else None
                if isinstance(moves, Mapping):
                    add((str(moves["source"]), str(moves["event_id"])), str(item["rule"]), int(item["points"]))
            continue
        if entry["kind"] not in ("earn", "reverse"):
            continue
        own: EventKey = (entry["source"], entry["event_id"])
        items = [item for item in entry["rules"] or [] if isinstance(item, Mapping) and "rule" in item]
        corrections = [(corrected_key(item), item) for item in items]
        if any(key is not None for key, _ in corrections):
            for key, item in corrections:
                add(key or own, str(item["rule"]), int(item["points"]))
        elif entry["kind"] == "earn":
            for item in items:
                add(own, str(item["rule"]), int(item["points"]))
        else:
            add(own, "refund", int(entry["qualifying_points"]))
    # A rule whose points were moved away entirely has nothing left to say.
    return {key: kept for key, by_rule in totals.items() if (kept := {r: p for r, p in by_rule.items() if p})}


@dataclass(frozen=True)
class Correction:
    """What to book for one event: points by rule to add and to take back (negative)."""

    key: EventKey
    add: tuple[tuple[str, int], ...]
    take: tuple[tuple[str, int], ...]

    @property
    def points(self) -> int:
        return sum(p for _, p in self.add) + sum(p for _, p in self.take)


def corrections(
    should: Mapping[EventKey, Mapping[str, int]],
    booked: Mapping[EventKey, Mapping[str, int]],
    order: Iterable[EventKey],
) -> list[Correction]:
    """For each event in `order`, the rule points by which `booked` differs from `should`."""
    out: list[Correction] = []
    for key in order:
        want, have = should.get(key, {}), booked.get(key, {})
        diffs = [(rule, want.get(rule, 0) - have.get(rule, 0)) for rule in sorted({*want, *have})]
        add = tuple((rule, d) for rule, d in diffs if d > 0)
        take = tuple((rule, d) for rule, d in diffs if d < 0)
        if add or take:
            out.append(Correction(key, add, take))
    return out


def correction_note(event_type: str, event_id: str, late_type: str, late_id: str, points: int) -> str:
    """`purchase P2 re-earned after the late purchase P1: +200`; for the late event itself,
    `purchase P1 re-earned in its place in occurrence order: -20`."""
    if event_id == late_id and event_type == late_type:
        return f"{event_type} {event_id} re-earned in its place in occurrence order: {points:+d}"
    return f"{event_type} {event_id} re-earned after the late {late_type} {late_id}: {points:+d}"


@dataclass(frozen=True)
class Recorded:
    """An event's outcome as its processed_events row records it. `key` is the row's own key,
    `booked_as` the (source, event_id) its ledger entries name: the same for a producer's event,
    not for the engine's own (a referee bonus is claimed under `<source>:referee`)."""

    key: EventKey
    booked_as: EventKey
    event_type: str
    status: str
    result: Mapping[str, Any] | None


def outcome_updates(
    recorded: Iterable[Recorded],
    points: Mapping[EventKey, Mapping[str, int]],
    waiting: Collection[EventKey],
) -> list[dict[str, Any]]:
    """The rows whose recorded outcome differs from the ledger's, each with the outcome to
    record (source, event_id, status, result).

    The ledger's outcome of an event is `deferred` while it waits for its purchase (`waiting`,
    by the key its entries name) and `applied` otherwise, with the net of what the ledger booked
    for it (`points`, as `points_by_event` gives them once the corrections are booked): what it
    earned when applied plus every correction since, negative for a refund. The rest of the
    result stays (a purchase's lot, a late event's re-evaluation); its note stays too unless the
    event now earns, or has left or entered the wait: the waiting note then goes, or is set.
    An adjustment's outcome stays as it was applied (`KEPT_OUTCOME_TYPES`).
    """
    out: list[dict[str, Any]] = []
    for row in recorded:
        if row.event_type in KEPT_OUTCOME_TYPES:
            continue
        status = "deferred" if row.booked_as in waiting else "applied"
        earned = sum(points.get(row.booked_as, {}).values())
        result = dict(row.result or {})
        if (row.status, int(result.get("points", 0))) == (status, earned):
            continue
        result["points"] = earned
        if status == "deferred":
            result["note"] = f"{row.event_type}.waiting_for_purchase"
        elif earned or row.status != status:
            result.pop("note", None)
        out.append({"source": row.key[0], "event_id": row.key[1], "status": status, "result": result})
    return out
