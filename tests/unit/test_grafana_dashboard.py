"""The provisioned Grafana dashboard reads metrics that exist, and shows worker health."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "deploy/grafana/dashboards/loyalty.json").read_text())
OPERATIONS = (ROOT / "docs/operations.md").read_text()


def _exprs() -> list[str]:
    return [t["expr"] for p in DASHBOARD["panels"] for t in p.get("targets", [])]


def test_every_metric_a_panel_reads_is_documented():
    names = {m for expr in _exprs() for m in re.findall(r"\b((?:loyalty|dramatiq)_[a-z_]+)", expr)}
    base = {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}
    assert sorted(n for n in base if f"`{n}`" not in OPERATIONS) == []


def test_a_panel_shows_each_workers_last_heartbeat():
    panels = [
        p
        for p in DASHBOARD["panels"]
        if any("loyalty_worker_heartbeat_age_seconds" in t["expr"] for t in p.get("targets", []))
    ]
    assert [p["fieldConfig"]["defaults"]["unit"] for p in panels] == ["s"]
    assert "by (worker)" in panels[0]["targets"][0]["expr"]


def test_lag_panels_use_time_units():
    lag = [p for p in DASHBOARD["panels"] if any("lag_seconds" in t["expr"] for t in p.get("targets", []))]
    assert lag and all(p["fieldConfig"]["defaults"]["unit"] == "s" for p in lag)
