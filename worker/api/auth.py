"""`Authorization: Bearer KEY`: 401 for a missing or unknown key, 403 for a scope it lacks,
429 when its rate is used up."""

from __future__ import annotations

import time

from fastapi import Depends, Request

from worker.api.errors import ApiError
from worker.services.api_keys import ApiKey, find_key, key_hash

# A revoked key keeps working for at most this long in each API process: every request does
# not have to pay a database round trip for the key.
KEY_CACHE_TTL_S = 5.0
KEY_CACHE_MAX = 10_000


class KeyCache:
    def __init__(self, engine):
        self.engine = engine
        self.entries: dict[str, tuple[float, ApiKey | None]] = {}

    async def find(self, key: str) -> ApiKey | None:
        digest = key_hash(key)
        now = time.monotonic()
        hit = self.entries.get(digest)
        if hit is not None and now - hit[0] < KEY_CACHE_TTL_S:
            return hit[1]
        found = await find_key(self.engine, key)
        if len(self.entries) >= KEY_CACHE_MAX:
            self.entries.clear()
        self.entries[digest] = (now, found)
        return found


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise ApiError(401, "missing_key", "Authorization: send `Bearer KEY`", headers={"WWW-Authenticate": "Bearer"})
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "missing_key", "Authorization: send `Bearer KEY`", headers={"WWW-Authenticate": "Bearer"})
    return key.strip()


def require(scope: str):
    """A dependency giving the request's key once it is known, has `scope` and is under its rate."""

    async def dependency(request: Request) -> ApiKey:
        runtime = request.app.state.runtime
        key = await runtime.keys.find(_bearer(request))
        if key is None:
            raise ApiError(
                401, "unknown_key", "Authorization: unknown or revoked key", headers={"WWW-Authenticate": "Bearer"}
            )
        request.state.key_name = key.name
        if scope not in key.scopes:
            raise ApiError(403, "missing_scope", f"this key does not have the {scope} scope")
        if not await runtime.limiter.allow(key.name):
            raise ApiError(
                429,
                "rate_limited",
                f"over {runtime.limiter.per_second} requests per second for this key",
                headers={"Retry-After": "1"},
            )
        return key

    return Depends(dependency)


def source_not_allowed(source: str, *, where: str = "source", doing: str = "send") -> ApiError:
    """403 for a key restricted (`--sources`) to other sources than `source`; `doing` is what
    the request would do with its events (send, read)."""
    return ApiError(
        403, "source_not_allowed", f"{where}: this key may not {doing} events from source {source!r}", field=where
    )
