"""`python -m benchmarks.decide [--events N] [--profile]`: the pure decide step, per purchase.

Times `deciders.decide` on purchase events, in this process, with no database and no queue:
what the worker's CPU spends deciding one purchase once the member's state is loaded. Two
programs: the built-in default (the demo's, as the worker runs it without a program file) and
a rule-heavy one (30 rules on purchases: campaigns, labels, time windows, item filters, line
multipliers, stepped rates, limits). Each event is decided on a fresh member state, as the live
path loads one per event, with the member's rule state as their previous purchase left it;
building the states and events is not timed.

Prints microseconds of CPU per event for each program; `--profile` prints a cProfile of the
rule-heavy run instead.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from worker.domain import deciders
from worker.domain.decisions import MemberState
from worker.domain.engine import parse_program_text
from worker.domain.events import parse_event
from worker.domain.program import DEFAULT_PROGRAM, Program

SEED = 20261208
TIERS = ("Regular", "Silver", "Gold", "Diamond")
CATEGORIES = ("grocery", "beauty", "toys", "wine", "shipping")
SOURCES = ("pos", "ecommerce", "app", "mini_program")

RULE_HEAVY = """
version = "bench-rules"
timezone = "Asia/Shanghai"

[groups]
campaign = "highest"
line = "first"

[items]
shipping_categories = ["shipping"]

[tiers]
[[tiers.levels]]
name = "Regular"
threshold = 0
[[tiers.levels]]
name = "Silver"
threshold = 1000
multiplier = "1.2"
[[tiers.levels]]
name = "Gold"
threshold = 5000
multiplier = "1.5"
[[tiers.levels]]
name = "Diamond"
threshold = 15000
multiplier = "2.0"

[[rules]]
id = "staff_earn_nothing"
on = "purchase"
priority = 100
when = { labels = ["employee"] }
stop = true
effect = { kind = "fixed", points = 0 }

[[rules]]
id = "purchase"
on = "purchase"
when = { items = { exclude_skus = ["GIFTCARD"] } }
effect = { kind = "per_amount", rate = "1", unit = "1" }

[[rules]]
id = "big_baskets"
on = "purchase"
when = { min_amount = "100.00" }
effect = { kind = "per_amount", stepping = "marginal", steps = [
  { from = "0", rate = "0.1" }, { from = "500", rate = "0.2" }, { from = "1000", rate = "0.3" } ] }
limits = [{ per = "day", count = 2 }, { per = "month", points = 5000 }]

[[rules]]
id = "tier_multiplier"
on = "purchase"
effect = { kind = "multiply", factor = "tier", applies_to = ["purchase"] }

[[rules]]
id = "member_day"
on = "purchase"
when = { days_of_month = [8, 18, 28] }
effect = { kind = "multiply", factor = "2", group = "campaign" }

[[rules]]
id = "birthday"
on = "purchase"
when = { birthday = "day" }
effect = { kind = "multiply", factor = "3", group = "campaign" }

[[rules]]
id = "birthday_month"
on = "purchase"
when = { birthday = "month" }
effect = { kind = "multiply", factor = "1.5", group = "campaign" }

[[rules]]
id = "plus_lunch"
on = "purchase"
when = { sources = ["app"], labels = ["plus"], weekdays = ["wed", "sat"], time = { from = "11:00", to = "14:00" } }
effect = { kind = "multiply", factor = "2", group = "campaign" }

[[rules]]
id = "night_owls"
on = "purchase"
when = { time = { from = "22:00", to = "06:00" } }
effect = { kind = "multiply", factor = "1.2", group = "campaign" }

[[rules]]
id = "plus_members_double"
on = "purchase"
when = { labels = ["plus"], exclude_labels = ["employee"] }
effect = { kind = "multiply", factor = "2", group = "campaign" }

[[rules]]
id = "double_12"
on = "purchase"
when = { starts_on = 2026-12-10, ends_on = 2026-12-14, sources = ["ecommerce", "app"] }
effect = { kind = "multiply", factor = "2", group = "campaign" }

[[rules]]
id = "spring_sale"
on = "purchase"
when = { starts_on = 2026-03-01, ends_on = 2026-03-31 }
effect = { kind = "multiply", factor = "1.5", group = "campaign" }

[[rules]]
id = "weekend_pos"
on = "purchase"
when = { weekdays = ["sat", "sun"], sources = ["pos"] }
effect = { kind = "multiply", factor = "1.1" }

[[rules]]
id = "gold_and_up"
on = "purchase"
when = { tiers = ["Gold", "Diamond"], min_amount = "50.00" }
effect = { kind = "fixed", points = 20 }
limits = [{ per = "week", count = 3 }]

[[rules]]
id = "first_purchase"
on = "purchase"
when = { nth_purchase = 1 }
effect = { kind = "fixed", points = 100 }

[[rules]]
id = "tenth_purchase"
on = "purchase"
when = { nth_purchase = [10, 20, 30] }
effect = { kind = "fixed", points = 200 }

[[rules]]
id = "sku_promo"
on = "purchase"
description = "SKU 0007"
when = { items = { skus = ["SKU0007", "SKU0017"] } }
effect = { kind = "multiply", factor = "3", target = "lines", group = "line" }

[[rules]]
id = "beauty_lines"
on = "purchase"
when = { items = { categories = ["beauty"] } }
effect = { kind = "multiply", factor = "1.5", target = "lines", group = "line" }

[[rules]]
id = "organic_lines"
on = "purchase"
when = { items = { labels = ["organic"], exclude_categories = ["wine"] } }
effect = { kind = "multiply", factor = "1.3", target = "lines", group = "line" }

[[rules]]
id = "wine_points"
on = "purchase"
when = { items = { categories = ["wine"] } }
effect = { kind = "per_amount", rate = "2", unit = "10", rounding = "half_up" }

[[rules]]
id = "water_bottles"
on = "purchase"
when = { items = { skus = ["SKU0003", "SKU0004"] } }
effect = { kind = "per_quantity", points = 5 }
limits = [{ per = "day", points = 50 }]

[[rules]]
id = "toys_quantity"
on = "purchase"
when = { items = { categories = ["toys"] } }
effect = { kind = "per_quantity", points = 2 }

[[rules]]
id = "shop_streak"
on = "purchase"
streak = { restart_after = 5 }
effect = { kind = "fixed", points = 5 }

[[rules]]
id = "shop_streak_bonus"
on = "purchase"
when = { streak = { rule = "shop_streak", every = 5 } }
effect = { kind = "fixed", points = 50 }

[[rules]]
id = "app_order"
on = "purchase"
when = { sources = ["app", "mini_program"], max_amount = "5000.00" }
effect = { kind = "fixed", points = 3 }
limits = [{ per = "day", count = 1 }, { per = "year", points = 1000 }]

[[rules]]
id = "usd_orders"
on = "purchase"
when = { payload = { currency = "USD" } }
effect = { kind = "fixed", points = 7 }

[[rules]]
id = "after_big_basket"
on = "purchase"
when = { after_rules = ["big_baskets"], exclude_labels = ["b2b"] }
effect = { kind = "fixed", points = 10 }

[[rules]]
id = "ever_bonus"
on = "purchase"
when = { min_amount = "300.00" }
effect = { kind = "fixed", points = 88 }
limits = [{ per = "ever", count = 1 }]

[[rules]]
id = "welcome"
effect = { kind = "fixed", points = 300 }
mission = { within_days = 7, steps = [
  { name = "signup", on = "signup" },
  { name = "first_check_in", on = "check_in" },
  { name = "first_purchase", on = "purchase", when = { min_amount = "1.00" } },
] }

[[rules]]
id = "signup"
on = "signup"
effect = { kind = "fixed", points = 50 }
limits = [{ per = "ever", count = 1 }]
"""


def rule_heavy_program() -> Program:
    return parse_program_text(RULE_HEAVY, origin="benchmarks/decide.py")


def _purchase(n: int, at: datetime, rng: random.Random) -> object:
    items = []
    total = Decimal(0)
    for _ in range(rng.randint(1, 4)):
        amount = Decimal(rng.randint(100, 40_000)) / 100
        total += amount
        item = {
            "sku": f"SKU{rng.randrange(20):04d}",
            "category": rng.choice(CATEGORIES),
            "amount": str(amount),
            "quantity": rng.randint(1, 3),
        }
        if rng.random() < 0.3:
            item["labels"] = ["organic"]
        items.append(item)
    raw = {
        "event_id": f"bench-{n}",
        "type": "purchase",
        "source": rng.choice(SOURCES),
        "member_id": f"M{n % 1000}",
        "occurred_at": at.isoformat(),
        "payload": {"order_id": f"O{n}", "amount": str(total), "currency": "CNY", "items": items},
    }
    return parse_event(raw)


def _state(n: int, rng: random.Random) -> MemberState:
    labels = frozenset(rng.sample(("plus", "employee", "b2b", "vip"), rng.randint(0, 2)))
    birthday = datetime(1990, 1, 1).date() + timedelta(days=rng.randrange(365))
    return MemberState(
        member_id=f"M{n % 1000}",
        tier=rng.choice(TIERS),
        qualifying=rng.randint(0, 20_000),
        qualifying_amount=Decimal(0),
        profile={
            "birthday": birthday,
            "locale": None,
            "signed_up_at": None,
            "first_purchase_at": None,
            "labels": labels,
        },
        rule_state={},
        purchases=rng.randint(0, 25),
    )


def workload(count: int) -> list[tuple[MemberState, object]]:
    """`count` (state, purchase) pairs spread evenly over a year, in occurrence order, by 1,000
    members; the same for every run."""
    rng = random.Random(SEED)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    step = timedelta(days=365) / count
    return [(_state(n, rng), _purchase(n, start + n * step, rng)) for n in range(count)]


def time_decide(program: Program, count: int, chunks: int = 10) -> float:
    """Microseconds of CPU per purchase decided: the best chunk of `count` events in `chunks`
    chunks (CPU time, and the best chunk, so that other work on a shared machine counts least)."""
    size = max(count // chunks, 1)
    best = float("inf")
    for _ in range(chunks):
        pairs = workload(size)
        # Each member's rule state (limits, streaks, missions) goes on from their previous
        # purchase, as the live path loads it.
        rule_states: dict[str, dict] = {}
        gc.collect()
        started = time.process_time()
        for state, event in pairs:
            state.rule_state = rule_states.get(state.member_id, state.rule_state)
            deciders.decide(state, event, program)
            rule_states[state.member_id] = state.rule_state
        best = min(best, time.process_time() - started)
    return best / size * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="purchases per program (default 100,000)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the rule-heavy run")
    args = parser.parse_args(argv)
    heavy = rule_heavy_program()
    # The first decision builds what a program keeps for the process: not part of the figure.
    for program in (DEFAULT_PROGRAM, heavy):
        for state, event in workload(10):
            deciders.decide(state, event, program)
    if args.profile:
        pairs = workload(args.events)
        profiler = cProfile.Profile()
        profiler.enable()
        for state, event in pairs:
            deciders.decide(state, event, heavy)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return
    for name, program in (("default", DEFAULT_PROGRAM), ("rule-heavy", heavy)):
        print(f"{name:<10} {time_decide(program, args.events):8.1f} µs of CPU per purchase decided")


if __name__ == "__main__":
    main()
