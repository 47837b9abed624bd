"""Stored answers of requests sent with an Idempotency-Key, per API key.

A retry with the same key and the same request gets the first answer back (status and body);
the same key with another request is refused by the caller (formance's idempotency key plus
a hash of the input).
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

_STORED = text(
    "SELECT request_hash, status_code, response FROM api_idempotency WHERE key_name = :key_name AND idempotency_key = :key"
)
_STORE = text(
    """
    INSERT INTO api_idempotency (key_name, idempotency_key, request_hash, status_code, response)
    VALUES (:key_name, :key, :request_hash, :status_code, :response)
    ON CONFLICT (key_name, idempotency_key) DO NOTHING
    """
).bindparams(bindparam("response", type_=JSONB))


def request_hash(request: dict) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def stored_answer(engine: AsyncEngine, key_name: str, key: str) -> tuple[str, int, dict] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(_STORED, {"key_name": key_name, "key": key})).first()
    return (row.request_hash, row.status_code, row.response) if row is not None else None


async def store_answer(engine: AsyncEngine, key_name: str, key: str, digest: str, status_code: int, response: dict):
    """Keep the first answer; returns the answer now stored (the first one if a retry raced this one)."""
    async with engine.begin() as conn:
        await conn.execute(
            _STORE,
            {
                "key_name": key_name,
                "key": key,
                "request_hash": digest,
                "status_code": status_code,
                "response": response,
            },
        )
        row = (await conn.execute(_STORED, {"key_name": key_name, "key": key})).first()
    return row.request_hash, row.status_code, row.response
