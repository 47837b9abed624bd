"""The outbox: notifications the ledger queued, rendered and delivered after commit.

The dispatcher claims due rows, renders each in the member's locale, sends it through a
channel, and records the attempt (worker/store/outbox.py). It never writes the ledger.
"""
