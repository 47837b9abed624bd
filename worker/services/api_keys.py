"""API keys: create (the key is shown once, only its hash is kept), list, revoke, look up."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

SCOPES = (
    "events:write",
    "members:read",
    "members:write",
    "points:spend",
    "rewards:redeem",
    "points:adjust",
    "coupons:read",
    "coupons:use",
)
# Keys are 32 random bytes: a fast hash is enough, there is nothing to brute-force.
KEY_PREFIX = "lk_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SOURCE = re.compile(r"^[a-z0-9_-]{1,32}$")  # as the event contract's `source`

_INSERT = text(
    """
    INSERT INTO api_keys (name, key_hash, scopes, sources) VALUES (:name, :key_hash, :scopes, :sources)
    ON CONFLICT (name) DO NOTHING RETURNING name
    """
)
_LIST = text("SELECT name, scopes, sources, created_at, revoked_at FROM api_keys ORDER BY name")
_REVOKE = text("UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE name = :name RETURNING revoked_at")
_BY_HASH = text("SELECT name, scopes, sources FROM api_keys WHERE key_hash = :key_hash AND revoked_at IS NULL")


class KeyRefused(ValueError):
    """A key request that cannot be honoured (bad name, unknown scope, name taken)."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    scopes: frozenset[str]
    sources: frozenset[str] | None  # None: any source

    def may_send(self, source: object) -> bool:
        return self.sources is None or source in self.sources


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", errors="replace")).hexdigest()


def parse_list(raw: str | None, what: str, allowed: tuple[str, ...] | None = None, pattern=None) -> list[str] | None:
    """A comma-separated option as a sorted list of distinct values (None when not given)."""
    if raw is None:
        return None
    values = sorted({v.strip() for v in raw.split(",") if v.strip()})
    if not values:
        raise KeyRefused(f"--{what}: give at least one value")
    for value in values:
        if allowed is not None and value not in allowed:
            raise KeyRefused(f"--{what}: unknown value {value!r} (one of {', '.join(allowed)})")
        if pattern is not None and not pattern.match(value):
            raise KeyRefused(f"--{what}: {value!r} is not a valid source name")
    return values


async def create_key(engine: AsyncEngine, name: str, scopes: str, sources: str | None = None) -> str:
    """The new key (shown once); raises KeyRefused on a bad request or a name in use."""
    if not _NAME.match(name):
        raise KeyRefused("--name: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    scope_list = parse_list(scopes, "scopes", SCOPES)
    source_list = parse_list(sources, "sources", pattern=_SOURCE)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                _INSERT, {"name": name, "key_hash": key_hash(key), "scopes": scope_list, "sources": source_list}
            )
        ).first()
    if row is None:
        raise KeyRefused(f"--name: a key named {name!r} already exists (revoked keys keep their name)")
    return key


async def list_keys(engine: AsyncEngine) -> list[dict]:
    async with engine.connect() as conn:
        rows = (await conn.execute(_LIST)).mappings().all()
    return [
        {
            "name": r["name"],
            "scopes": list(r["scopes"]),
            "sources": list(r["sources"]) if r["sources"] else None,
            "created_at": _iso(r["created_at"]),
            "revoked_at": _iso(r["revoked_at"]),
        }
        for r in rows
    ]


async def revoke_key(engine: AsyncEngine, name: str) -> datetime | None:
    """When the key was revoked (now, or earlier if it already was); None for an unknown name."""
    async with engine.begin() as conn:
        return (await conn.execute(_REVOKE, {"name": name})).scalar()


async def find_key(engine: AsyncEngine, key: str) -> ApiKey | None:
    """The live key with this value, or None (unknown or revoked)."""
    async with engine.connect() as conn:
        row = (await conn.execute(_BY_HASH, {"key_hash": key_hash(key)})).first()
    if row is None:
        return None
    return ApiKey(row.name, frozenset(row.scopes), frozenset(row.sources) if row.sources else None)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
