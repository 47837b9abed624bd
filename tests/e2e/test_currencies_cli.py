"""`loyalty program explain` of a purchase in another currency than the program's base shows
the conversion the rules earn on; one in a currency the program does not accept is refused."""

from __future__ import annotations

import json

from tests import factories as f
from tests.e2e.test_cli import clean, loyalty  # noqa: F401  (clean is a fixture)

PROGRAM = """
name = "abroad"

[currencies]
base = "CNY"
accepted = { USD = { rate = "7.2" }, HKD = { rate = "0.92" } }
"""
AT = "2026-11-02T10:00:00+08:00"


def test_explain_shows_the_conversion_and_the_points_on_the_base_amount(clean, tmp_path):  # noqa: F811
    program = tmp_path / "abroad.toml"
    program.write_text(PROGRAM, encoding="utf-8")
    usd = tmp_path / "usd.json"
    usd.write_text(
        json.dumps(f.purchase("M1", "100.00", order_id="o-1", event_id="p-1", currency="USD", occurred_at=AT))
    )
    eur = tmp_path / "eur.json"
    eur.write_text(
        json.dumps(f.purchase("M1", "100.00", order_id="o-2", event_id="p-2", currency="EUR", occurred_at=AT))
    )

    explained = loyalty(clean, "program", "explain", str(usd), "--program", str(program))
    refused = loyalty(clean, "program", "explain", str(eur), "--program", str(program))

    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.splitlines() == [
        "member M1 (new): tier Regular, qualifying 0, 0 purchases before, no birthday",
        "note: no member 'M1' in the database: explained for a new member",
        f"purchase p-1 from pos at {AT} (program file:abroad)",
        "  amount: USD 100.00 = CNY 720.00 at 7.2",
        "  + purchase           +720  720.00 x 1 / 1 x1.0 (tier_multiplier), floor",
        "  + tier_multiplier          x1.0",
        "  - member_day               2026-11-02 is not day 8 of the month",
        "  - birthday                 2026-11-02 is not the member's birthday",
        "  + first_purchase     +100  fixed",
        "  multipliers: tier_multiplier x1.0",
        "  = 820 points",
    ]
    as_json = json.loads(loyalty(clean, "program", "explain", str(usd), "--program", str(program), "--json").stdout)
    assert (as_json["conversion"], as_json["points"]) == ("USD 100.00 = CNY 720.00 at 7.2", 820)
    assert refused.returncode == 1
    assert (
        refused.stderr.strip()
        == "error: payload.currency: EUR is not accepted by this program (accepted: CNY, HKD, USD)"
    )
