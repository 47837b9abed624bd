"""`loyalty program explain`: a dry run of one event against the member as stored, naming every
rule with its points or why not; the worker's validation; nothing written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text

from tests import factories as f
from tests.conftest import NOW
from tests.e2e.test_cli import clean, loyalty  # noqa: F401  (clean is a fixture)
from tests.e2e.test_program_versions_cli import program_file
from tests.integration.test_activity import SHARE_RULE, sharing_program
from worker.domain.engine.language import DEFAULT_PROGRAM_PATH
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake

PURCHASE = f.purchase("M1", "350.00", order_id="o-2", event_id="p-2", occurred_at="2026-11-02T10:00:00+08:00")
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/loyalty"


async def counts(db) -> dict:
    async with db.connect() as conn:
        return {
            table: (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in ("members", "ledger_entries", "processed_events", "orders", "rejected_events")
        }


async def test_a_purchase_is_explained_rule_by_rule_for_the_member_as_stored(clean, db, tmp_path):  # noqa: F811
    # Given a member who signed up with a birthday and has bought nothing yet.
    await intake.process(
        db,
        DEFAULT_PROGRAM,
        f.signup("M1", birthday="1990-05-20", occurred_at="2026-11-01T09:00:00+08:00"),
        now=NOW,
        strict=True,
    )
    before = await counts(db)
    event = tmp_path / "purchase.json"
    event.write_text(json.dumps(PURCHASE))

    # When the purchase is explained.
    done = loyalty(clean, "program", "explain", str(event))

    # Then every purchase rule is named with its points or why it did not match, and nothing is written.
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "member M1 (as stored): tier Regular, qualifying 50, 0 purchases before, birthday 1990-05-20",
        'rule state: {"signup": {"ever": {"count": 1, "points": 50}}}',
        "purchase p-2 from pos at 2026-11-02T10:00:00+08:00 (program file:default)",
        "  + purchase           +350  350.00 x 1 / 1 x1.0 (tier_multiplier), floor",
        "  + tier_multiplier          x1.0",
        "  - member_day               2026-11-02 is not day 8 of the month",
        "  - birthday                 2026-11-02 is not the member's birthday",
        "  + first_purchase     +100  fixed",
        "  multipliers: tier_multiplier x1.0",
        "  = 450 points",
    ]
    assert await counts(db) == before


async def test_json_from_standard_input_for_a_member_with_a_purchase_already(clean, db):  # noqa: F811
    await intake.process(
        db,
        DEFAULT_PROGRAM,
        f.purchase("M1", "800.00", order_id="o-1", event_id="p-1", occurred_at="2026-11-01T10:00:00+08:00"),
        now=NOW,
        strict=True,
    )

    done = loyalty(clean, "program", "explain", "-", "--json", stdin=json.dumps(PURCHASE))

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "event": {
            "type": "purchase",
            "event_id": "p-2",
            "source": "pos",
            "member_id": "M1",
            "occurred_at": "2026-11-02T10:00:00+08:00",
            "local_at": "2026-11-02T10:00:00+08:00",
        },
        "program_version": "file:default",
        "member": {
            "member_id": "M1",
            "known": True,
            "tier": "Regular",
            "qualifying": 900,
            "purchase_count": 1,
            "birthday": None,
            "rule_state": {},
        },
        "rules": [
            {
                "rule": "purchase",
                "matched": True,
                "points": 350,
                "reason": "350.00 x 1 / 1 x1.0 (tier_multiplier), floor",
            },
            {"rule": "tier_multiplier", "matched": True, "points": None, "reason": "x1.0"},
            {"rule": "member_day", "matched": False, "points": None, "reason": "2026-11-02 is not day 8 of the month"},
            {"rule": "birthday", "matched": False, "points": None, "reason": "2026-11-02 is not the member's birthday"},
            {"rule": "first_purchase", "matched": False, "points": None, "reason": "purchase number 2, not 1"},
        ],
        "multipliers": [{"rule": "tier_multiplier", "factor": "1.0"}],
        "points": 350,
        "notes": [],
    }


async def test_an_invalid_event_exits_1_with_the_worker_s_reason(clean, db, tmp_path):  # noqa: F811
    event = tmp_path / "bad.json"
    event.write_text(json.dumps({**PURCHASE, "payload": {**PURCHASE["payload"], "amount": "3.505"}}))
    activity = f.activity("M1", "watch_live", "2026-11-02T10:00:00+08:00")

    bad_amount = loyalty(clean, "program", "explain", str(event))
    bad_kind = loyalty(clean, "program", "explain", "-", stdin=json.dumps(activity))

    assert (bad_amount.returncode, bad_amount.stdout, bad_amount.stderr) == (
        1,
        "",
        "error: payload.amount: must have at most 2 decimal places\n",
    )
    assert (bad_kind.returncode, bad_kind.stderr) == (
        1,
        (
            "error: payload.kind: watch_live is not an activity kind of this program "
            "(kinds: share, survey, trial, profile_completed, game)\n"
        ),
    )
    assert await counts(db) == {
        "members": 0,
        "ledger_entries": 0,
        "processed_events": 0,
        "orders": 0,
        "rejected_events": 0,
    }


async def test_a_member_not_stored_and_an_event_processed_already_are_said(clean, db):  # noqa: F811
    await intake.process(db, DEFAULT_PROGRAM, PURCHASE, now=NOW, strict=True)

    other = loyalty(clean, "program", "explain", "-", "--member", "M2", stdin=json.dumps(PURCHASE))

    assert other.returncode == 0, other.stderr
    assert other.stdout.splitlines()[:3] == [
        "member M2 (new): tier Regular, qualifying 0, 0 purchases before, no birthday",
        "note: no member 'M2' in the database: explained for a new member",
        "note: pos/p-2 was processed already (applied): the worker would not apply it again",
    ]
    assert other.stdout.splitlines()[-1] == "  = 450 points"


def test_without_a_database_the_event_is_explained_for_a_new_member_unless_one_is_named(clean):  # noqa: F811
    env = {**clean, "LOYALTY_DATABASE_URL": UNREACHABLE}

    alone = loyalty(env, "program", "explain", "-", stdin=json.dumps(PURCHASE))
    named = loyalty(env, "program", "explain", "-", "--member", "M1", stdin=json.dumps(PURCHASE))

    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.splitlines()[:2] == [
        "member M1 (new): tier Regular, qualifying 0, 0 purchases before, no birthday",
        "note: the database could not be read (cannot connect to PostgreSQL at 127.0.0.1:1: connection refused): "
        "explained for a new member",
    ]
    assert alone.stdout.splitlines()[-1] == "  = 450 points"
    assert (named.returncode, named.stdout, named.stderr) == (
        3,
        "",
        "error: cannot connect to PostgreSQL at 127.0.0.1:1: connection refused\n",
    )


async def test_a_rule_language_program_file_explains_an_activity_over_its_daily_limit(clean, db, tmp_path):  # noqa: F811
    # Given three shares of one local day, applied with the share rule.
    for hour in (9, 10, 11):
        await intake.process(
            db, sharing_program(), f.activity("A1", "share", f"2026-11-02T{hour:02d}:00:00+08:00"), now=NOW, strict=True
        )
    rules = tmp_path / "rules.toml"
    rules.write_text(
        DEFAULT_PROGRAM_PATH.read_text().replace('version = "default-1"', 'version = "share-1"') + SHARE_RULE
    )
    fourth = f.activity("A1", "share", "2026-11-02T20:00:00+08:00", {"channel": "wechat"}, event_id="share-4")

    done = loyalty(clean, "program", "explain", "-", "--program", str(rules), stdin=json.dumps(fourth))

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "member A1 (as stored): tier Regular, qualifying 15, 0 purchases before, no birthday",
        'rule state: {"share": {"day:2026-11-02": {"count": 3, "points": 15}}}',
        "activity share-4 from app at 2026-11-02T20:00:00+08:00 (program share-1)",
        "  - share          limit reached: 3 per day (day:2026-11-02)",
        "  = 0 points",
    ]


def test_a_bad_program_file_exits_2_naming_the_key(clean, tmp_path):  # noqa: F811
    rules = tmp_path / "rules.toml"
    rules.write_text(
        DEFAULT_PROGRAM_PATH.read_text() + '[[rules]]\nid = "x"\non = "purchse"\n'
        'effect = { kind = "fixed", points = 1 }\n'
    )

    done = loyalty(clean, "program", "explain", "-", "--program", str(rules), stdin=json.dumps(PURCHASE))

    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {rules}: rules.12.on: 'purchse' is not an event type, use one of purchase, ")


def test_a_program_file_with_old_sections_beside_its_rules_is_explained_as_check_accepts_it(clean, tmp_path):  # noqa: F811
    # Given a rule-language file that also carries old-shape sections, which `program check` accepts.
    rules = tmp_path / "rules.toml"
    rules.write_text(
        DEFAULT_PROGRAM_PATH.read_text().replace('version = "default-1"', 'version = "hkd-1"')
        + '[purchase]\ncurrencies = ["CNY", "HKD"]\n[expiry]\ndays = 90\n'
    )
    hkd = {**PURCHASE, "payload": {**PURCHASE["payload"], "currency": "HKD"}}

    checked = loyalty(clean, "program", "check", str(rules))
    explained = loyalty(clean, "program", "explain", "-", "--program", str(rules), stdin=json.dumps(hkd))
    in_force = loyalty(clean, "program", "explain", "-", stdin=json.dumps(hkd))

    # Then explain reads it as check does, with its own [purchase] currencies and its version.
    assert checked.returncode == 0, checked.stderr
    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.splitlines()[2:] == [
        "purchase p-2 from pos at 2026-11-02T10:00:00+08:00 (program hkd-1)",
        "  + purchase           +350  350.00 x 1 / 1 x1.0 (tier_multiplier), floor",
        "  + tier_multiplier          x1.0",
        "  - member_day               2026-11-02 is not day 8 of the month",
        "  - birthday                 2026-11-02 is not the member's birthday",
        "  + first_purchase     +100  fixed",
        "  multipliers: tier_multiplier x1.0",
        "  = 450 points",
    ]
    # The program in force (the built-in one here) does not take HKD.
    assert (in_force.returncode, in_force.stderr) == (
        1,
        "error: payload.currency: HKD is not accepted by this program (accepted: CNY)\n",
    )


def test_now_explains_a_future_event_with_the_version_in_force_then(clean, tmp_path):  # noqa: F811
    # Given a version earning 2 points per 1.00, published to start in 30 days (not on a member day).
    zone = ZoneInfo("Asia/Shanghai")
    start = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    if (start + timedelta(hours=1)).astimezone(zone).day == 8:
        start += timedelta(days=1)
    spring = program_file(tmp_path, "v-later", rate="2", name="later")
    published = loyalty(clean, "program", "publish", str(spring), "--effective-from", start.isoformat())
    assert published.returncode == 0, published.stderr
    occurred = (start + timedelta(hours=1)).astimezone(zone)
    event = {**PURCHASE, "member_id": "M9", "occurred_at": occurred.isoformat()}

    # When it is explained today, and as at the hour after it occurred.
    today = loyalty(clean, "program", "explain", "-", stdin=json.dumps(event))
    later = loyalty(
        clean, "program", "explain", "-", "--now", (start + timedelta(hours=2)).isoformat(), stdin=json.dumps(event)
    )
    naive = loyalty(clean, "program", "explain", "-", "--now", "2027-01-01T00:00:00", stdin=json.dumps(event))

    # Then today it is too far in the future, and then it earns with the version in force then.
    assert (today.returncode, today.stdout, today.stderr) == (
        1,
        "",
        f"error: occurred_at: {occurred.isoformat()} is more than 24 hours in the future\n",
    )
    assert later.returncode == 0, later.stderr
    day = occurred.date().isoformat()
    assert later.stdout.splitlines() == [
        "member M9 (new): tier Regular, qualifying 0, 0 purchases before, no birthday",
        "note: no member 'M9' in the database: explained for a new member",
        f"purchase p-2 from pos at {occurred.isoformat()} (program v-later)",
        "  + purchase           +700  350.00 x 2 / 1 x1.0 (tier_multiplier), floor",
        "  + tier_multiplier          x1.0",
        f"  - member_day               {day} is not day 8 of the month",
        f"  - birthday                 {day} is not the member's birthday",
        "  + first_purchase     +100  fixed",
        "  multipliers: tier_multiplier x1.0",
        "  = 800 points",
    ]
    assert (naive.returncode, naive.stderr) == (
        2,
        "error: --now: '2027-01-01T00:00:00' needs a UTC offset, e.g. 2026-01-02T00:05:00+08:00\n",
    )
