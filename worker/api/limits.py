"""Request limits and the access log: body size, per-key rate, and what a log line may say."""

from __future__ import annotations

import json
import time
from typing import Any

import structlog

log = structlog.get_logger("worker.api.access")


class _TooLarge(Exception):
    pass


def json_answer(status: int, payload: dict, headers: list[tuple[bytes, bytes]] | None = None):
    """The two ASGI messages of a JSON answer."""
    data = json.dumps(payload).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            *(headers or []),
        ],
    }
    return start, {"type": "http.response.body", "body": data}


class TrackedSend:
    """An ASGI `send` that remembers whether the answer has started: after that, an error can
    only close the connection, never replace the answer."""

    def __init__(self, send):
        self.send = send
        self.started = False

    async def __call__(self, message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


class BodyLimit:
    """Refuse bodies over `max_bytes` with 413, from Content-Length or while reading a chunked body."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes
        self.too_large = json_answer(
            413, {"error": "body_too_large", "detail": f"body: over the limit of {max_bytes} bytes"}
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = self.too_large
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                for message in too_large:
                    await send(message)
                return
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        tracked = TrackedSend(send)
        try:
            await self.app(scope, limited_receive, tracked)
        except _TooLarge:
            if tracked.started:
                raise
            for message in too_large:
                await send(message)


class AccessLog:
    """One line per request: method, the route's template (never the raw path, which holds
    member ids), status, duration and the key's name. Never headers, query or body."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def tracking_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            state: dict[str, Any] = scope.get("state") or {}
            log.info(
                "http_request",
                method=scope["method"],
                route=getattr(route, "path", "-"),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                key=state.get("key_name"),
            )


class RateLimiter:
    """Per key, `per_second` requests in each one-second window, counted in Redis so that
    every API process behind the load balancer shares the budget."""

    def __init__(self, redis, namespace: str, per_second: int):
        self.redis, self.namespace, self.per_second = redis, namespace, per_second

    async def allow(self, key_name: str) -> bool:
        window = int(time.time())
        counter = f"{self.namespace}:api:rate:{key_name}:{window}"
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.incr(counter)
            pipe.expire(counter, 2)
            count, _ = await pipe.execute()
        return count <= self.per_second
