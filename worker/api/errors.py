"""Every error answer is `{"error": code, "detail": text}`, with `field` when one field is at fault.

What no handler takes is answered by `Unexpected`: 503 `unavailable` with `Retry-After` when
PostgreSQL or Redis is out of reach, else 500 `internal`; never a plain-text body.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from worker.api.limits import TrackedSend, json_answer
from worker.preflight import describe, unavailable_server
from worker.services.holds import HoldRefused

log = structlog.get_logger("worker.api.errors")

# Seconds a client is told to wait after a 503: PostgreSQL and Redis restarts and fail-overs
# take seconds, and every API process tries the server again on the next request.
RETRY_AFTER_S = 5


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(detail)
        self.status, self.code, self.detail, self.field = status, code, detail, field
        self.headers, self.extra = headers, extra


def body(code: str, detail: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"error": code, "detail": detail}
    if field is not None:
        out["field"] = field
    out.update(extra)
    return out


def _path(loc: tuple) -> str:
    # ("body", "points") -> "points"; ("query", "limit") -> "limit"; list indexes stay as numbers.
    parts = (
        [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "query", "path", "header") else [str(p) for p in loc]
    )
    return ".".join(parts) or str(loc[0] if loc else "body")


def _message(error: dict, path: str) -> str:
    """Worded as the event contract's reasons are (worker/domain/events.py)."""
    kind = error.get("type", "")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind in ("string_pattern_mismatch", "string_too_long", "string_too_short") and path.endswith("_id"):
        return "must be 1-128 characters: letters, digits and . _ : @ # / + - (starting with a letter or digit)"
    message = error.get("msg", "is invalid").removeprefix("Value error, ")
    if message.startswith("Input should be "):
        return "must be " + message.removeprefix("Input should be ")
    return message[0].lower() + message[1:] if message else "is invalid"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError):
        return JSONResponse(
            body(error.code, error.detail, error.field, **error.extra), error.status, headers=error.headers
        )

    @app.exception_handler(HoldRefused)
    async def _refused(request: Request, error: HoldRefused):
        field = error.detail.split(":", 1)[0] if ":" in error.detail else None
        return JSONResponse(body(error.code, error.detail, field), error.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError):
        first = error.errors()[0]
        path = _path(tuple(first.get("loc", ())))
        if first.get("type") == "json_invalid":
            return JSONResponse(body("invalid_json", "body: is not valid JSON"), 400)
        return JSONResponse(body("invalid_request", f"{path}: {_message(first, path)}", path), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException):
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(error.status_code, "http_error")
        detail = str(error.detail) if error.detail else code
        if error.status_code == 404 and detail == "Not Found":
            detail = f"no such path: {request.method} {request.url.path}"
        return JSONResponse(body(code, detail), error.status_code, headers=getattr(error, "headers", None))


def _log_unavailable(scope: dict, server: str, error: BaseException) -> None:
    runtime = getattr(getattr(scope.get("app"), "state", None), "runtime", None)
    problem = describe(error, runtime.settings) if runtime is not None else None
    route = getattr(scope.get("route"), "path", "-")
    log.warning("request_unavailable", server=server, reason=str(problem) if problem else server, route=route)


class Unexpected:
    """ASGI middleware: an exception no handler took becomes a JSON answer.

    PostgreSQL or Redis out of reach: 503 `unavailable` with `Retry-After`, one warning line
    naming the server. Anything else: 500 `internal` whose detail gives a reference, and one
    error line with that reference and the traceback (structlog renders it into the line).
    The exception is not raised further, so no server prints a second, plain-text traceback.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        tracked = TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except Exception as error:
            if tracked.started:  # half an answer is out: the connection can only be closed
                raise
            server = unavailable_server(error)
            if server is not None:
                _log_unavailable(scope, server, error)
                answer = json_answer(
                    503,
                    body("unavailable", f"{server} is unavailable"),
                    [(b"retry-after", str(RETRY_AFTER_S).encode())],
                )
            else:
                reference = uuid.uuid4().hex[:12]
                log.error(
                    "request_failed",
                    reference=reference,
                    method=scope.get("method"),
                    route=getattr(scope.get("route"), "path", "-"),
                    exc_info=error,
                )
                answer = json_answer(
                    500, body("internal", f"unexpected error; the API log has it under reference {reference}")
                )
            for message in answer:
                await send(message)
