"""The routes. Each checks its key, calls one service and shapes the answer."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from worker.api.auth import require, source_not_allowed
from worker.api.errors import RETRY_AFTER_S, ApiError, body
from worker.api.idempotent import answer_once, check_key, key_reused, ledger_event_id
from worker.api.models import HoldRequest, RedemptionRequest
from worker.domain.errors import InvalidEvent
from worker.services import holds
from worker.services.api_keys import ApiKey
from worker.services.intake import BATCH_EVENTS_MAX, batch_problem
from worker.services.member_reads import (
    HISTORY_PAGE_DEFAULT,
    HISTORY_PAGE_MAX,
    history_page,
    member_state,
    recorded_outcome,
    rewards_for_member,
)
from worker.services.publish import publish_lines

router = APIRouter()

# How long the API remembers that it queued an event, for `GET /v1/events/...` to say
# `queued` until the worker records the outcome (far longer than any sane backlog).
ACCEPTED_MARKER_TTL_S = 7 * 24 * 3600

# The latest refusals of the id: before it was applied, the latest is its status; after,
# each is a resend that changed the payload, reported beside the first outcome.
_REJECTED = text(
    """
    SELECT reason, attempts, first_seen_at, last_seen_at FROM rejected_events
    WHERE source = :source AND event_id = :event_id
    ORDER BY last_seen_at DESC, rejected_id DESC
    LIMIT :n
    """
)
# Rejected rows are kept per distinct body, so a producer reusing one id for many payloads
# makes many; the answer names the latest this many, which is plenty to see the mistake.
CONFLICTS_SHOWN_MAX = 20
_MEMBER_EXISTS = text("SELECT 1 FROM members WHERE member_id = :member_id")
_SELECT_1 = text("SELECT 1")


def _runtime(request: Request):
    return request.app.state.runtime


def _marker(runtime, source: str, event_id: str) -> str:
    return f"{runtime.settings.namespace}:api:accepted:{source}:{event_id}"


# ---------------------------------------------------------------- health


@router.get("/healthz", tags=["health"])
async def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"])
async def readyz(request: Request):
    """PostgreSQL and Redis answer; 503 `unavailable` naming the one that does not."""
    runtime = _runtime(request)
    checks = {}
    try:
        async with runtime.engine.connect() as conn:
            await conn.execute(_SELECT_1)
        checks["postgresql"] = "ok"
    except Exception as error:  # any failure means not ready; the type is enough to say why
        checks["postgresql"] = type(error).__name__
    try:
        await runtime.redis.ping()
        checks["redis"] = "ok"
    except Exception as error:
        checks["redis"] = type(error).__name__
    if all(v == "ok" for v in checks.values()):
        return {"status": "ready", **checks}
    failing = ", ".join(k for k, v in checks.items() if v != "ok")
    return JSONResponse(
        body("unavailable", f"unreachable: {failing}", **checks), 503, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


# ---------------------------------------------------------------- events


@router.post("/v1/events", status_code=202, tags=["events"])
async def post_events(request: Request, key: ApiKey = require("events:write")):
    """One event object or an array of up to 1,000, validated exactly as `loyalty publish`
    validates them. All valid: 202 and every event queued. Any invalid: 422 with the reason
    of each invalid event, and none of the events is queued (fix and resend the whole body)."""
    runtime = _runtime(request)
    raw = await request.body()
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "invalid_json", "body: is not valid JSON") from None
    single = not isinstance(parsed, list)
    items = [parsed] if single else parsed
    if not items:
        raise ApiError(422, "invalid_request", "body: an empty array has no events", field="body")
    if len(items) > BATCH_EVENTS_MAX:
        raise ApiError(
            413, "too_many_events", f"body: {len(items)} events is over the limit of {BATCH_EVENTS_MAX}", field="body"
        )
    for index, item in enumerate(items):
        # A source that is not a string is invalid anyway: validation names it below.
        if isinstance(item, dict) and isinstance(item.get("source"), str) and not key.may_send(item["source"]):
            raise source_not_allowed(item["source"], where="source" if single else f"{index}.source")
    valid: list[dict] = []
    # The publish path itself: the same validation, the same reasons.
    # Each event as compact JSON: the measure the worker applies to what it receives.
    report = publish_lines(
        (json.dumps(item, ensure_ascii=False, separators=(",", ":")) for item in items),
        runtime.timeline,
        runtime.clock(),
        valid.append,
    )
    if report.invalid:
        invalid = [{"index": number - 1, "reason": reason} for number, reason in report.invalid]
        detail = (
            invalid[0]["reason"] if single else f"{len(invalid)} of {len(items)} events are invalid; none was queued"
        )
        raise ApiError(422, "invalid_events", detail, events=invalid)
    if not single and (problem := batch_problem(valid)) is not None:
        raise ApiError(413, "batch_too_large", problem, field="body")
    await run_in_threadpool(_send, runtime, valid)
    now_s = f"{runtime.clock().timestamp():.6f}"
    async with runtime.redis.pipeline(transaction=False) as pipe:
        for event in valid:
            pipe.set(_marker(runtime, event["source"], event["event_id"]), now_s, ex=ACCEPTED_MARKER_TTL_S)
        await pipe.execute()
    return {"accepted": len(valid), "events": [{"source": e["source"], "event_id": e["event_id"]} for e in valid]}


def _send(runtime, events: list[dict]) -> None:
    if len(events) == 1:
        runtime.send_one(events[0])
    else:
        runtime.send_many(events)


# `path`: event ids may contain "/" (the contract allows it).
@router.get("/v1/events/{source}/{event_id:path}", tags=["events"])
async def get_event(source: str, event_id: str, request: Request, key: ApiKey = require("events:write")):
    """The outcome of the event's first delivery (queued, applied, deferred or rejected), and
    the resends of its id with another payload as `conflicts`."""
    runtime = _runtime(request)
    if not key.may_send(source):
        raise source_not_allowed(source, doing="read")
    params = {"source": source, "event_id": event_id}
    async with runtime.engine.connect() as conn:
        processed = await recorded_outcome(conn, source, event_id)
        rejected = (await conn.execute(_REJECTED, {**params, "n": CONFLICTS_SHOWN_MAX})).all()
    out: dict[str, Any] = {"source": source, "event_id": event_id}
    if processed is not None:
        # The outcome of the delivery that claimed the id; a later one with another payload
        # changed nothing and is listed beside it (an identical one is not: it is the same event).
        processed_at = processed["processed_at"]
        return {
            **out,
            **processed,
            "processed_at": processed_at.isoformat(),
            "conflicts": [_conflict(r) for r in reversed(rejected) if r.last_seen_at >= processed_at],
        }
    if rejected:
        latest = rejected[0]
        return {
            **out,
            "status": "rejected",
            "points": 0,
            "reason": latest.reason,
            "processed_at": latest.last_seen_at.isoformat(),
            "conflicts": [],
        }
    if await runtime.redis.get(_marker(runtime, source, event_id)):
        return {**out, "status": "queued", "points": 0, "reason": None, "processed_at": None, "conflicts": []}
    raise ApiError(
        404, "unknown_event", f"event_id: no event {event_id!r} from source {source!r} is known", field="event_id"
    )


def _conflict(row) -> dict[str, Any]:
    return {
        "status": "conflict",
        "reason": row.reason,
        "attempts": row.attempts,
        "first_seen_at": row.first_seen_at.isoformat(),
        "last_seen_at": row.last_seen_at.isoformat(),
    }


# ---------------------------------------------------------------- members


async def _member_or_404(request: Request, member_id: str) -> dict:
    runtime = _runtime(request)
    state = await member_state(
        runtime.engine, runtime.program, member_id, now=runtime.clock(), read_engine=runtime.read_engine
    )
    if state is None:
        raise ApiError(404, "unknown_member", f"member_id: no member {member_id!r}", field="member_id")
    return state


@router.get("/v1/members/{member_id}", tags=["members"])
async def get_member(member_id: str, request: Request, key: ApiKey = require("members:read")):
    """`loyalty member show --json`, plus held points and points expiring in the next 30 days."""
    # The hottest route: the dict is plain JSON already, so skip FastAPI's generic encoder.
    return JSONResponse(await _member_or_404(request, member_id))


@router.get("/v1/members/{member_id}/history", tags=["members"])
async def get_history(
    member_id: str,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=HISTORY_PAGE_MAX)] = HISTORY_PAGE_DEFAULT,
    before: Annotated[int | None, Query(ge=1, description="next_before of the previous page")] = None,
    key: ApiKey = require("members:read"),
):
    """Ledger entries in the order they occurred, newest first, with the rules behind each;
    page on with `before`."""
    runtime = _runtime(request)
    await _member_or_404(request, member_id)
    page = await history_page(runtime.engine, member_id, limit=limit, before=before)
    if page is None:
        raise ApiError(
            422, "invalid_request", f"before: {before} is not an entry of member {member_id!r}", field="before"
        )
    return {"member_id": member_id, **page}


@router.get("/v1/members/{member_id}/rewards", tags=["members"])
async def get_rewards(member_id: str, request: Request, key: ApiKey = require("members:read")):
    """The catalog as this member sees it: eligible, or locked with the reason in the member's language."""
    runtime = _runtime(request)
    member = await _member_or_404(request, member_id)
    rewards = await rewards_for_member(runtime.engine, runtime.program, member, now=runtime.clock())
    return {"member_id": member_id, "rewards": rewards}


# ---------------------------------------------------------------- points at checkout


@router.post("/v1/members/{member_id}/holds", status_code=201, tags=["checkout"])
async def post_hold(member_id: str, hold: HoldRequest, request: Request, key: ApiKey = require("points:spend")):
    """Reserve points for an order: 201, or 200 with the same hold when the request is repeated."""
    runtime = _runtime(request)
    result = await holds.place_hold(
        runtime.engine,
        runtime.program,
        hold_id=hold.hold_id,
        member_id=member_id,
        points=hold.points,
        order_id=hold.order_id,
        expires_in_s=hold.expires_in_s,
        key_name=key.name,
        now=runtime.clock(),
    )
    return JSONResponse(result.hold, 201 if result.created else 200)


@router.post("/v1/holds/{hold_id}/capture", tags=["checkout"])
async def post_capture(hold_id: str, request: Request, key: ApiKey = require("points:spend")):
    """Book the held points as spent on the order; a repeat answers 200 with the same hold."""
    runtime = _runtime(request)
    return await holds.capture(runtime.engine, runtime.program, hold_id, now=runtime.clock())


@router.post("/v1/holds/{hold_id}/void", tags=["checkout"])
async def post_void(hold_id: str, request: Request, key: ApiKey = require("points:spend")):
    """Release the held points; a repeat (or an already expired hold) answers 200 as it is."""
    runtime = _runtime(request)
    return await holds.void(runtime.engine, runtime.program, hold_id, now=runtime.clock())


# ---------------------------------------------------------------- redemptions


@router.post("/v1/members/{member_id}/redemptions", status_code=201, tags=["rewards"])
async def post_redemption(
    member_id: str,
    redemption: RedemptionRequest,
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    key: ApiKey = require("rewards:redeem"),
):
    """Redeem at once. 201 confirmed, 409 with the reason when rejected; a retry with the same
    Idempotency-Key gets the first answer back, status and body."""
    from worker.services.redeem import redeem_now

    runtime = _runtime(request)
    check_key(idempotency_key, required=True, code="missing_idempotency_key")
    assert idempotency_key is not None

    async def answer() -> tuple[int, dict[str, Any]]:
        async with runtime.engine.connect() as conn:
            known = (await conn.execute(_MEMBER_EXISTS, {"member_id": member_id})).first()
        if known is None:
            raise ApiError(404, "unknown_member", f"member_id: no member {member_id!r}", field="member_id")
        await holds.settle_member(runtime.engine, runtime.program, member_id, now=runtime.clock())
        try:
            outcome = await redeem_now(
                runtime.engine,
                runtime.timeline,
                member_id,
                redemption.reward_id,
                redemption.quantity,
                now=runtime.clock(),
                event_id=ledger_event_id(key.name, idempotency_key),
            )
        except InvalidEvent as error:
            raise ApiError(422, "invalid_request", error.reason, field=error.reason.split(":", 1)[0]) from None
        if outcome["status"] == "conflict":  # the first attempt's answer was never stored
            raise key_reused()
        shown = {
            key_: outcome[key_]
            for key_ in (
                "status",
                "event_id",
                "member_id",
                "reward_id",
                "reward_name",
                "quantity",
                "points",
                "reason",
                "available_points",
                "coupons",
            )
        }
        if outcome["status"] == "confirmed":
            return 201, shown
        return 409, body(outcome["reason"] or "rejected", f"redemption rejected: {outcome['reason']}", redemption=shown)

    request_body = {"member_id": member_id, **redemption.model_dump()}
    return await answer_once(runtime.engine, key.name, idempotency_key, request_body, answer)
