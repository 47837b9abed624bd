"""The store is the only writer of the ledger's tables: every INSERT, UPDATE and DELETE of them
in the source tree is in worker/store/ (migrations aside). A write anywhere else fails here:
write through the store, or move the statement into it.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LEDGER_TABLES = (
    "members",
    "ledger_entries",
    "lots",
    "lot_takes",
    "processed_events",
    "orders",
    "refunds",
    "reviews",
    "referrals",
    "notifications",
    "tier_changes",
    "tier_floors",
    "holds",
)

STORE = "worker/store/"


def _writes(table: str) -> re.Pattern[str]:
    return re.compile(rf"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+{table}\b", re.IGNORECASE)


def found_writers() -> dict[str, set[str]]:
    sources = [
        path
        for top in ("worker", "scheduler", "db")
        for path in (ROOT / top).rglob("*.py")
        if "migrations" not in path.parts
    ]
    texts = {path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8") for path in sources}
    return {table: {name for name, body in texts.items() if _writes(table).search(body)} for table in LEDGER_TABLES}


def test_only_the_store_writes_the_ledger_tables():
    outside = {
        table: sorted(m for m in modules if not m.startswith(STORE)) for table, modules in found_writers().items()
    }
    assert {table: modules for table, modules in outside.items() if modules} == {}


def test_the_store_writes_every_ledger_table():
    # The scan sees the store's own writes, so an empty answer above means something.
    assert sorted(table for table, modules in found_writers().items() if not modules) == []


def test_the_scan_finds_each_kind_of_write():
    assert _writes("lots").search("UPDATE lots SET remaining = 0")
    assert _writes("lot_takes").search("INSERT INTO lot_takes (entry_id, lot_id, points)")
    assert _writes("reviews").search("delete from reviews where member_id = :m")
    assert not _writes("lots").search("SELECT lot_id FROM lots")
    assert not _writes("lots").search("UPDATE lot_takes SET points = 0")
