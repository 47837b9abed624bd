"""A realistic event mix over many members, generated from a fixed seed.

About 70% purchases with items, 10% check-ins, 8% reviews, 5% refunds, 5% signups and
referrals, 2% more purchases standing in for redemptions (not an event type yet); a few hot
members get a large share of the traffic, as on a member day. Events occur in the order they
are generated, except a chosen share of late ones (`Workload.late`).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

SHANGHAI = timezone(timedelta(hours=8))
CATEGORIES = ("grocery", "beauty", "electronics", "apparel", "home", "toys")
SKUS = 500
HOT_MEMBERS = 10
# Share of all events that go to the hot members (a member-day rush on a few accounts).
HOT_SHARE = 0.05
# Time between two generated events: 20 days hold about 200,000 of them.
CLOCK_STEP = timedelta(seconds=8.64)


class Workload:
    """Generates events; remembers purchases so refunds and reviews refer to real orders."""

    def __init__(self, members: int, seed: int, now: datetime, prefix: str):
        self.rng = random.Random(seed)
        self.members = members
        self.now = now
        self.prefix = prefix
        self.counter = 0
        # Events occur in the order they are generated, CLOCK_STEP apart, from 20 days ago;
        # a share `late` of them is dated up to three days earlier (an offline till's upload).
        self.clock = now - timedelta(days=20)
        self.late = 0.0
        self.purchases: list[tuple[str, str, Decimal, str]] = []  # member, order, amount, sku
        self.fresh_members = 0

    def _id(self, kind: str) -> str:
        self.counter += 1
        return f"{self.prefix}-{kind}-{self.counter}"

    def _member(self) -> str:
        if self.rng.random() < HOT_SHARE:
            return f"H{self.rng.randrange(HOT_MEMBERS):03d}"
        return f"M{self.rng.randrange(self.members):07d}"

    def _when(self) -> str:
        self.clock = min(self.clock + CLOCK_STEP, self.now)
        at = self.clock
        if self.late and self.rng.random() < self.late:
            at -= timedelta(seconds=self.rng.randrange(3_600, 3 * 86_400))
        return at.astimezone(SHANGHAI).isoformat(timespec="milliseconds")

    def _event(self, kind: str, member: str, source: str, payload: dict) -> dict:
        return {
            "event_id": self._id(kind),
            "type": kind,
            "source": source,
            "member_id": member,
            "occurred_at": self._when(),
            "payload": payload,
        }

    def _purchase(self) -> dict:
        member = self._member()
        items = []
        for _ in range(self.rng.randint(1, 4)):
            quantity = self.rng.randint(1, 3)
            unit = Decimal(self.rng.randint(300, 20_000)) / 100
            items.append(
                {
                    "sku": f"SKU{self.rng.randrange(SKUS):04d}",
                    "category": self.rng.choice(CATEGORIES),
                    "amount": str(unit * quantity),
                    "quantity": quantity,
                }
            )
        amount = sum(Decimal(i["amount"]) for i in items)
        order_id = self._id("o")
        self.purchases.append((member, order_id, amount, items[0]["sku"]))
        return self._event(
            "purchase", member, "pos", {"order_id": order_id, "amount": str(amount), "currency": "CNY", "items": items}
        )

    def _earlier_purchase(self) -> tuple[str, str, Decimal, str] | None:
        return self.rng.choice(self.purchases) if self.purchases else None

    def next(self) -> dict:
        roll = self.rng.random()
        if roll < 0.72:
            return self._purchase()
        if roll < 0.82:
            return self._event("check_in", self._member(), "app", {})
        if roll < 0.90:
            earlier = self._earlier_purchase()
            if earlier is None:
                return self._purchase()
            member, order_id, _, sku = earlier
            return self._event(
                "review",
                member,
                "app",
                {"review_id": self._id("rv"), "order_id": order_id, "sku": sku, "has_media": self.rng.random() < 0.3},
            )
        if roll < 0.95:
            earlier = self._earlier_purchase()
            if earlier is None:
                return self._purchase()
            member, order_id, amount, _ = earlier
            part = (amount * Decimal(self.rng.randint(10, 60)) / 100).quantize(Decimal("0.01"))
            return self._event(
                "refund",
                member,
                "pos",
                {"order_id": order_id, "refund_id": self._id("rf"), "amount": str(max(part, Decimal("0.01")))},
            )
        self.fresh_members += 1
        fresh = f"N{self.prefix}{self.fresh_members:07d}"
        if roll < 0.975:
            return self._event(
                "signup",
                fresh,
                "app",
                {
                    "birthday": f"19{self.rng.randint(60, 99)}-0{self.rng.randint(1, 9)}-1{self.rng.randint(0, 9)}",
                    "locale": self.rng.choice(("en", "zh-Hans", "zh-Hant")),
                },
            )
        return self._event("referral", self._member(), "app", {"referee_member_id": fresh})

    def take(self, n: int) -> list[dict]:
        return [self.next() for _ in range(n)]

    def take_purchases(self, n: int) -> list[dict]:
        """Purchases only, HOT_SHARE of them by the HOT_MEMBERS hot members."""
        return [self._purchase() for _ in range(n)]
