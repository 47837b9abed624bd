"""Webhook signatures: HMAC-SHA256 over "<timestamp>.<body>" with a shared secret.

Receivers recompute the signature over the raw body bytes they received and compare in
constant time; the timestamp bounds replays of a captured request.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_SCHEME = "v1"
# A signed request older (or newer) than this is refused by `verify`: long enough for clock
# skew and retries in flight, short enough that a captured request cannot be replayed later.
TIMESTAMP_TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_SCHEME}={digest}"


def verify(
    secret: str,
    timestamp: str | int,
    body: bytes,
    signature: str,
    now_s: float,
    tolerance_s: int = TIMESTAMP_TOLERANCE_S,
) -> bool:
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now_s - stamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, stamp, body), signature)
