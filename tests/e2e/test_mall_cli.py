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
    events.write_text(
        "\n".join(
            [
                line(
                    event_id="p-1",
                    type="purchase",
                    member_id="M1",
                    payload={"order_id": "o-1", "amount": "1400.00", "currency": "CNY"},
                ),
                line(
                    event_id="x-1",
                    type="redemption",
                    member_id="M1",
                    source="app",
                    payload={"reward_id": "mug", "quantity": 1},
                ),
                line(event_id="x-2", type="redemption", member_id="M1", source="app", payload={"reward_id": "nope"}),
                line(
                    event_id="x-3",
                    type="redemption",
                    member_id="M1",
                    source="app",
                    payload={"reward_id": "mug", "quantity": 0},
                ),
            ]
        )
        + "\n"
    )

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
        "status": "confirmed",
        "points": 800,
        "available_points": 200,
    }
    assert sold_out.returncode == 1
    assert sold_out.stderr.strip() == "rejected: it is out of stock"
    assert json.loads(sold_out.stdout)["reason"] == "out_of_stock"
    assert [(r["reward_id"], r["stock_left"]) for r in json.loads(listed.stdout)] == [("bag", None), ("mug", 1)]
    texts = sorted(n["text"] for n in json.loads(notes.stdout) if n["kind"].startswith("redemption"))
    assert texts == [
        "We could not redeem Mug: it is out of stock.",
        "We could not redeem nope: this reward does not exist.",
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
        f"error: {bad}: reward.0.min_tier: unknown tier 'Bronze' (tiers: Regular, Silver, Gold, Diamond)"
    )


def _enrol_and_load(env, tmp_path, *events: str) -> None:
    catalog = tmp_path / "rewards.toml"
    catalog.write_text(
        '[[reward]]\nreward_id = "tote-bag"\nname = "Tote bag"\ncost_points = 100\nmin_tier = "Regular"\n'
        '\n[[reward]]\nreward_id = "lounge"\nname = "Lounge pass"\ncost_points = 100\nmin_tier = "Gold"\n'
    )
    published = tmp_path / "events.jsonl"
    published.write_text("\n".join(events) + "\n")
    assert loyalty(env, "db", "upgrade").returncode == 0
    assert loyalty(env, "rewards", "load", str(catalog)).returncode == 0
    assert loyalty(env, "publish", str(published)).returncode == 0
    assert loyalty(env, "drain", "--timeout", "60", "--threads", "1").returncode == 0


def test_redeem_with_the_same_event_id_returns_the_first_outcome(clean, tmp_path):  # noqa: F811
    env = clean
    _enrol_and_load(
        env,
        tmp_path,
        line(
            event_id="p-1",
            type="purchase",
            member_id="M1",
            payload={"order_id": "o-1", "amount": "500.00", "currency": "CNY"},
        ),
    )

    first = loyalty(env, "redeem", "M1", "tote-bag", "--event-id", "r1")
    again = loyalty(env, "redeem", "M1", "tote-bag", "--event-id", "r1")
    again_json = loyalty(env, "redeem", "M1", "tote-bag", "--event-id", "r1", "--json")
    other = loyalty(env, "redeem", "M1", "lounge", "--event-id", "r1")
    show = loyalty(env, "member", "show", "M1", "--json")

    assert (first.returncode, first.stdout) == (0, "redeemed 1 x Tote bag for 100 points; available 500\n")
    assert (again.returncode, again.stdout) == (0, "redeemed 1 x Tote bag for 100 points; available 500\n")
    assert json.loads(again_json.stdout)["duplicate"] is True
    assert (other.returncode, other.stderr) == (
        1,
        "error: event_id: 'r1' from source 'api' was already used with a different payload\n",
    )
    assert json.loads(show.stdout)["available_points"] == 500  # 500 + 100 first purchase - 100, once


def test_redeem_for_an_unknown_member_creates_nothing(clean, tmp_path):  # noqa: F811
    env = clean
    _enrol_and_load(
        env,
        tmp_path,
        line(
            event_id="p-1",
            type="purchase",
            member_id="M1",
            payload={"order_id": "o-1", "amount": "500.00", "currency": "CNY"},
        ),
    )

    done = loyalty(env, "redeem", "M1O", "tote-bag", "--event-id", "r1")
    show = loyalty(env, "member", "show", "M1O")
    notes = loyalty(env, "notifications", "list", "--member", "M1O", "--json")

    assert (done.returncode, done.stderr) == (1, "error: no member 'M1O'\n")
    assert (show.returncode, show.stderr) == (1, "error: no member 'M1O'\n")
    assert json.loads(notes.stdout) == []


def test_refusals_reach_customers_as_phrases_in_their_language(clean, tmp_path):  # noqa: F811
    env = clean
    _enrol_and_load(
        env, tmp_path, line(event_id="s-1", type="signup", member_id="M2", source="app", payload={"locale": "zh-Hans"})
    )

    done = loyalty(env, "redeem", "M2", "lounge", "--json")
    notes = loyalty(env, "notifications", "list", "--member", "M2", "--json")

    assert done.returncode == 1
    assert (json.loads(done.stdout)["reason"], json.loads(done.stdout)["reason_text"]) == (
        "tier_too_low",
        "您的会员等级暂不满足兑换条件",
    )
    rejected = [n["text"] for n in json.loads(notes.stdout) if n["kind"] == "redemption_rejected"]
    assert rejected == ["Lounge pass 兑换未成功：您的会员等级暂不满足兑换条件。"]
