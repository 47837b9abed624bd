"""What a decider reads and returns: a member's state and a decision, as plain data. Pure.

A decider (worker/domain/deciders.py) takes the member's state before an event, the event and
the program, and returns a `Decision`: the ledger steps to write, in order, and the event's
outcome. It also moves the state on (qualifying value, money spent, rule state, profile, the
orders, refunds and reviews it touched), so the next event of the same member is decided on the
state this one left: the live path loads the state it needs and writes the steps with the
store; the re-evaluation folds the same deciders over the member's whole history in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from worker.domain.engine import Award


@dataclass(frozen=True)
class Origin:
    """Where a ledger change comes from: an event, or a scheduler job run."""

    source: str
    event_id: str
    event_type: str
    occurred_at: datetime

    @classmethod
    def of(cls, event: Any) -> Origin:
        """The origin of an event (its own key, type and time)."""
        return cls(event.source, event.event_id, event.type, event.occurred_at)

    @property
    def key(self) -> tuple[str, str]:
        return self.source, self.event_id


@dataclass
class OrderState:
    """One order of the member. `amount` None: a stub that refunds or reviews wait on."""

    amount: Decimal | None = None
    currency: str | None = None
    purchased_at: datetime | None = None
    points_earned: int = 0
    points_reversed: int = 0
    refunded_amount: Decimal = Decimal(0)
    bonus_points: int = 0
    bonus_reversed: int = 0
    # The purchase's own lot (a refund takes from it first); known once its earn is written.
    lot_id: int | None = None
    # The refund ids and reviewed skus the order has seen (applied or waiting).
    refund_ids: set[str] = field(default_factory=set)
    review_skus: set[str] = field(default_factory=set)

    @property
    def bought(self) -> bool:
        return self.amount is not None


@dataclass(frozen=True)
class RefundRow:
    """A refunds row as a decision writes it."""

    order_id: str
    refund_id: str
    amount: Decimal
    source: str
    event_id: str
    occurred_at: datetime
    status: str  # applied | waiting
    points_reversed: int = 0


@dataclass(frozen=True)
class ReviewRow:
    """A reviews row as a decision writes it: one rewarded review per (order, sku)."""

    order_id: str
    sku: str
    review_id: str
    source: str
    event_id: str
    status: str  # applied | waiting
    has_media: bool
    occurred_at: datetime


@dataclass
class MemberState:
    """What the deciders read and move on: the member's values that earning depends on, and
    the orders, refunds and reviews the events at hand touch (the live path loads those of the
    event's order; a re-evaluation holds them all)."""

    member_id: str
    tier: str
    qualifying: int
    qualifying_amount: Decimal
    # birthday, locale, signed_up_at, first_purchase_at, and labels (a frozenset of the
    # member's segment labels, set by member_update events).
    profile: dict[str, Any]
    rule_state: dict[str, Any]
    # Purchases the member made (orders with an amount), for `nth_purchase` rules.
    purchases: int = 0
    orders: dict[str, OrderState] = field(default_factory=dict)
    refunds: dict[tuple[str, str], RefundRow] = field(default_factory=dict)
    reviews: dict[tuple[str, str], ReviewRow] = field(default_factory=dict)
    # The points the member can spend now (available, in lots not past their expiry), loaded by
    # the live path for an event that may spend them; None: not known, as in a re-evaluation,
    # which replays no spending and takes an applied debit as the fact it was.
    spendable: int | None = None

    def waiting_refunds(self, order_id: str) -> list[RefundRow]:
        """The order's refunds that wait for its purchase, in occurrence order."""
        waiting = [r for (o, _), r in self.refunds.items() if o == order_id and r.status == "waiting"]
        return sorted(waiting, key=lambda r: (r.occurred_at, r.refund_id))

    def waiting_reviews(self, order_id: str) -> list[ReviewRow]:
        """The order's reviews that wait for its purchase, in occurrence order."""
        waiting = [r for (o, _), r in self.reviews.items() if o == order_id and r.status == "waiting"]
        return sorted(waiting, key=lambda r: (r.occurred_at, r.source, r.event_id))


# ---------------------------------------------------------------- the steps of a decision


@dataclass(frozen=True)
class Earn:
    """One earn entry and its lot. `order_id`: the lot is that order's own. `notify`: the
    notification the earn sends (`points_earned`, or `birthday` with its dedupe key)."""

    origin: Origin
    awards: tuple[Award, ...]
    pending: bool = False
    order_id: str | None = None
    notify: str | None = "points_earned"
    dedupe_key: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def points(self) -> int:
        return sum(a.points for a in self.awards)


@dataclass(frozen=True)
class Reverse:
    """Take back earned points: from the order's own lot first, then earliest-expiring."""

    origin: Origin
    points: int
    order_id: str
    rules: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class PutOrder:
    """Write the order as the state holds it now (a purchase's row, or a refund's totals)."""

    order_id: str
    purchase: bool  # True: the purchase's own columns; False: the refunded totals only


@dataclass(frozen=True)
class WaitFor:
    """A stub order for events that wait for their purchase."""

    order_id: str


@dataclass(frozen=True)
class PutRefund:
    row: RefundRow
    new: bool  # True: insert; False: mark applied with its points


@dataclass(frozen=True)
class PutReview:
    row: ReviewRow
    new: bool  # True: claim (insert); False: a waiting review rewarded


@dataclass(frozen=True)
class DropReview:
    """A waiting review that earned nothing gives up its claim."""

    order_id: str
    sku: str


@dataclass(frozen=True)
class MarkApplied:
    """A deferred event applied now: its processed_events row reads applied, with the points
    and note it has now, as if it had arrived after its purchase."""

    source: str
    event_id: str
    points: int = 0
    note: str | None = None


@dataclass(frozen=True)
class Adjust:
    """An operator's adjustment: one `adjust` entry. A credit (points > 0) is a lot of its own
    expiring at `expires_at`; a debit takes its points from the available lots,
    earliest-expiring first. `qualifying`: the points it counts towards tiers (0 or `points`)."""

    origin: Origin
    points: int
    qualifying: int
    expires_at: datetime | None
    rules: tuple[dict[str, Any], ...]


Step = Adjust | Earn | Reverse | PutOrder | WaitFor | PutRefund | PutReview | DropReview | MarkApplied


@dataclass(frozen=True)
class Outcome:
    status: str  # applied | deferred
    points: int = 0
    note: str | None = None


@dataclass
class Decision:
    """The steps to write, in order, and the event's own outcome."""

    outcome: Outcome
    steps: list[Step] = field(default_factory=list)
