"""The points mall from the command line: load the catalog, redeem through the queue and at once."""

from __future__ import annotations

import json

from tests.e2e.test_cli import clean, line, loyalty  # noqa: F401  (clean is a fixture)


def test_rewards_load_publish_redemption_drain_show_and_redeem(clean, tmp_path):  # noqa: F811
    env = clean
    catalog = tmp_path / "rewards.toml"
    catalog.write_text(
        '[[reward]]\nreward_id = "mug"\nname = "Mug"\ncost_points = 500\nmin_tier = "Regular"\nstock = 2\n'
        '\n[[reward]]\nreward_id = "bag"\nname = "Bag"\ncost_points = 800\nmin_tier = "Silver"\n'
    )
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join([
        line(event_id="p-1", type="purchase", member_id="M1", payload={"order_id": "o-1", "amount": "1400.00", "currency": "CNY"}),
        line(event_id="x-1", type="redemption", member_id="M1", source="app", payload={"reward_id": "mug", "quantity": 1}),
        line(event_id="x-2", type="redemption", member_id="M1", source="app", payload={"reward_id": "nope"}),
        line(event_id="x-3", type="redemption", member_id="M1", source="app", payload={"reward_id": "mug", "quantity": 0}),
    ]) + "\n")

    assert loyalty(env, "db", "upgrade").returncode == 0
    loaded = loyalty(env, "rewards", "load", str(catalog))
    reloaded = loyalty(env, "rewards", "load", str(catalog))
    published = loyalty(env, "publish", str(events))
    drained = loyalty(env, "drain", "--timeout", "60", "--threads", "1")
    show = loyalty(env, "member", "show", "M1", "--json")
    redeemed = loyalty(env, "redeem", "M1", "bag", "--json")
    sold_out = loyalty(env, "redeem", "M1", "mug", "--quantity", "2", "--json")
    listed = loyalty(env, "rewards", "list", "--json")
    notes = loyalty(env, "notifications", "list", "--member", "M1", "--json")
    audit = loyalty(env, "audit", "--json")

    assert loaded.stdout.strip() == "loaded 2 rewards: 2 new, 0 changed, 0 unchanged"
    assert reloaded.stdout.strip() == "loaded 2 rewards: 0 new, 0 changed, 2 unchanged"
    assert published.stderr.strip() == "line 4: payload.quantity: must be greater than or equal to 1"
    assert drained.returncode == 0, drained.stderr
    view = json.loads(show.stdout)
    # 1400 + 100 first-purchase bonus, Silver; minus the mug.
    assert (view["tier"], view["available_points"], view["qualifying_points"]) == ("Silver", 1000, 1500)
    assert redeemed.returncode == 0, redeemed.stderr
    assert {k: json.loads(redeemed.stdout)[k] for k in ("status", "points", "available_points")} == {
        "status": "confirmed", "points": 800, "available_points": 200}
    assert sold_out.returncode == 1
    assert sold_out.stderr.strip() == "rejected: out_of_stock"
    assert json.loads(sold_out.stdout)["reason"] == "out_of_stock"
    assert [(r["reward_id"], r["stock_left"]) for r in json.loads(listed.stdout)] == [("bag", None), ("mug", 1)]
    texts = sorted(n["text"] for n in json.loads(notes.stdout) if n["kind"].startswith("redemption"))
    assert texts == [
        "We could not redeem Mug: out_of_stock.",
        "We could not redeem nope: unknown_reward.",
        "You redeemed 1 x Bag for 800 points. Available balance: 200.",
        "You redeemed 1 x Mug for 500 points. Available balance: 1000.",
    ]
    assert json.loads(audit.stdout) == {"members_checked": 1, "clean": True, "differences": []}


def test_rewards_load_names_the_bad_key(clean, tmp_path):  # noqa: F811
    bad = tmp_path / "rewards.toml"
    bad.write_text('[[reward]]\nreward_id = "mug"\nname = "Mug"\ncost_points = 500\nmin_tier = "Bronze"\n')

    result = loyalty(clean, "rewards", "load", str(bad))

    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {bad}: reward.0.min_tier: unknown tier 'Bronze' (tiers: Regular, Silver, Gold, Diamond)")
