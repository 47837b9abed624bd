"""Requests sent with an `Idempotency-Key` header: the key checked, the first answer stored and
given back to a retry, the same key with another request refused.

The routes that change the ledger at once (redemptions, adjustments) answer through
`answer_once`; the answers themselves are stored by worker/services/idempotency.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.api.errors import ApiError
from worker.services import idempotency

IDEMPOTENCY_KEY_MAX = 128


def check_key(idempotency_key: str | None, *, required: bool, code: str) -> None:
    """400 `code` for a key that is empty, too long or not printable, or missing when `required`."""
    if idempotency_key is None and not required:
        return
    if not idempotency_key or len(idempotency_key) > IDEMPOTENCY_KEY_MAX or not idempotency_key.isprintable():
        raise ApiError(
            400,
            code,
            f"Idempotency-Key: send a printable key of 1 to {IDEMPOTENCY_KEY_MAX} characters",
            field="Idempotency-Key",
        )


def key_reused() -> ApiError:
    return ApiError(
        422, "idempotency_key_reused", "Idempotency-Key: already used for a different request", field="Idempotency-Key"
    )


def ledger_event_id(key_name: str, idempotency_key: str) -> str:
    """The ledger's event id of a keyed request: per API key, so keys of two callers cannot collide."""
    return "api-" + hashlib.sha256(f"{key_name}\x00{idempotency_key}".encode()).hexdigest()[:40]


async def answer_once(
    engine: AsyncEngine,
    key_name: str,
    idempotency_key: str | None,
    request: dict[str, Any],
    answer: Callable[[], Awaitable[tuple[int, dict[str, Any]]]],
) -> JSONResponse:
    """The stored answer to `request` under the key, else `answer()` (status, body), stored when
    there is a key. An ApiError raised by `answer` is not stored: a retry asks again."""
    digest = idempotency.request_hash(request)
    stored = None
    if idempotency_key is not None:
        stored = await idempotency.stored_answer(engine, key_name, idempotency_key)
    if stored is None:
        status_code, payload = await answer()
        if idempotency_key is None:
            return JSONResponse(payload, status_code)
        stored = await idempotency.store_answer(engine, key_name, idempotency_key, digest, status_code, payload)
    stored_digest, status_code, payload = stored
    if stored_digest != digest:
        raise key_reused()
    return JSONResponse(payload, status_code)
