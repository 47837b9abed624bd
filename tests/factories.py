"""Event builders for tests: plain dicts in the wire format, with sensible defaults; programs
with other tier settings."""

from __future__ import annotations

import itertools
from typing import Any

from worker.domain.engine import rules_of, with_rules
from worker.domain.engine.language import TierSettings
from worker.domain.program import Program

_ids = itertools.count(1)


def event(
    kind: str,
    member_id: str,
    occurred_at: str = "2026-11-02T10:00:00+08:00",
    *,
    source: str = "pos",
    event_id: str | None = None,
    **payload: Any,
) -> dict:
    return {
        "event_id": event_id or f"{kind}-{next(_ids)}",
        "type": kind,
        "source": source,
        "member_id": member_id,
        "occurred_at": occurred_at,
        "payload": payload,
    }


def purchase(member_id: str, amount: str, order_id: str | None = None, **kw: Any) -> dict:
    items = kw.pop("items", None)
    payload: dict[str, Any] = {
        "order_id": order_id or f"o-{next(_ids)}",
        "amount": amount,
        "currency": kw.pop("currency", "CNY"),
    }
    if items is not None:
        payload["items"] = items
    return event("purchase", member_id, **kw, **payload)


def refund(member_id: str, order_id: str, amount: str, refund_id: str | None = None, **kw: Any) -> dict:
    return event("refund", member_id, order_id=order_id, refund_id=refund_id or f"r-{next(_ids)}", amount=amount, **kw)


def signup(member_id: str, **kw: Any) -> dict:
    payload = {k: kw.pop(k) for k in ("birthday", "locale") if k in kw}
    return event("signup", member_id, **kw, **payload)


def check_in(member_id: str, occurred_at: str, **kw: Any) -> dict:
    return event("check_in", member_id, occurred_at, **kw)


def review(member_id: str, order_id: str, sku: str, has_media: bool = False, **kw: Any) -> dict:
    return event(
        "review", member_id, review_id=f"rv-{next(_ids)}", order_id=order_id, sku=sku, has_media=has_media, **kw
    )


def referral(member_id: str, referee: str, **kw: Any) -> dict:
    return event("referral", member_id, referee_member_id=referee, **kw)


def activity(member_id: str, kind: str, occurred_at: str, attributes: dict | None = None, **kw: Any) -> dict:
    built = event("activity", member_id, occurred_at, source=kw.pop("source", "app"), **kw)
    # Set after: `kind` is also event()'s name for the event type.
    built["payload"] = {"kind": kind} if attributes is None else {"kind": kind, "attributes": attributes}
    return built


def member_update(member_id: str, **kw: Any) -> dict:
    """A member_update: any of labels, birthday, locale (left out: unchanged)."""
    payload = {k: kw.pop(k) for k in ("labels", "birthday", "locale") if k in kw}
    return event("member_update", member_id, source=kw.pop("source", "cli"), **kw, **payload)


def with_tiers(program: Program, **settings: Any) -> Program:
    """`program` with its engine's `[tiers]` settings changed (basis, downgrade, review_*), validated."""
    rules = rules_of(program)
    tiers = TierSettings.model_validate({**rules.tiers.model_dump(), **settings})
    return with_rules(program, rules.model_copy(update={"tiers": tiers}))
