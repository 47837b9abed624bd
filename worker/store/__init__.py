"""The store: the only code that writes the ledger's tables.

Members and their balance rows, ledger entries, lots and lot takes, processed events, orders,
refunds, reviews, referrals, notifications, tier changes and floors, and holds are written here
and nowhere else (tests/unit/test_ledger_writers.py keeps it so). The services decide (with the
pure deciders in worker/domain) and call the store to write what they decided.
"""
