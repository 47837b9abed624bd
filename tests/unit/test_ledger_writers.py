"""Who writes the ledger's tables: every INSERT, UPDATE and DELETE of them in the source tree.

The ledger's tables are written by the modules listed here and no others (migrations aside).
A new writer fails this test: write through the modules that already do, or move the
statement there. The lists are meant to shrink towards one store (docs/architecture.md).
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

# table -> the modules that write it, with why each one still does.
WRITERS = {
    # The balance row: the account's close, the group's flush, and three set-based passes
    # (pending release, expiry, erasure) and a merge's mark on the absorbed member.
    "members": {
        "worker/store/accounts.py",
        "worker/store/jobs.py",
        "worker/store/staged.py",
        "worker/services/group_apply.py",
        "worker/services/ledger.py",
        "worker/services/identities.py",
        "worker/store/erasure.py",
    },
    "ledger_entries": {
        "worker/store/accounts.py",
        "worker/store/jobs.py",
        "worker/store/staged.py",
    },
    "lots": {
        "worker/store/accounts.py",
        "worker/store/jobs.py",
        "worker/store/staged.py",
    },
    "lot_takes": {"worker/store/accounts.py", "worker/store/jobs.py"},
    "processed_events": {
        "worker/store/accounts.py",
        "worker/store/staged.py",
        "worker/services/group_apply.py",
        "worker/services/ledger.py",
        "worker/services/identities.py",
        "worker/store/erasure.py",
    },
    "orders": {
        "worker/services/ledger.py",
        "worker/store/staged.py",
        "worker/services/replay.py",
        "worker/services/identities.py",
    },
    "refunds": {"worker/services/ledger.py", "worker/services/replay.py", "worker/services/identities.py"},
    "reviews": {"worker/services/ledger.py", "worker/services/replay.py", "worker/services/identities.py"},
    "referrals": {"worker/services/ledger.py", "worker/services/identities.py"},
    # The outbox: queued with the ledger's writes; the dispatcher marks what it sent.
    "notifications": {
        "worker/store/accounts.py",
        "worker/store/jobs.py",
        "worker/store/staged.py",
        "worker/store/outbox.py",
        "worker/store/erasure.py",
    },
    "tier_changes": {"worker/store/accounts.py", "worker/store/staged.py"},
    "tier_floors": {"worker/store/accounts.py"},
    "holds": {"worker/store/holds.py"},
}


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


def test_only_the_listed_modules_write_the_ledger_tables():
    assert found_writers() == WRITERS


def test_the_scan_finds_each_kind_of_write():
    assert _writes("lots").search("UPDATE lots SET remaining = 0")
    assert _writes("lot_takes").search("INSERT INTO lot_takes (entry_id, lot_id, points)")
    assert _writes("reviews").search("delete from reviews where member_id = :m")
    assert not _writes("lots").search("SELECT lot_id FROM lots")
    assert not _writes("lots").search("UPDATE lot_takes SET points = 0")
