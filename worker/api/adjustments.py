"""`POST /v1/members/{member_id}/adjustments`: an operator's goodwill credit or debit, at once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from worker.api.auth import require, source_not_allowed
from worker.api.errors import ApiError, body
from worker.api.idempotent import answer_once, check_key, key_reused, ledger_event_id
from worker.domain.errors import UnknownMember
from worker.services.adjustments import Adjustment, AdjustmentRefused, adjust_now
from worker.services.api_keys import ApiKey

router = APIRouter()

# The `source` of adjustments made through the API; the entry's `by` is the key's name.
SOURCE = "api"


class AdjustmentRequest(BaseModel):
    """`{"points", "reason", "expires_on"?, "qualifying"?}`: the `adjustment` event's payload
    without `by`. The values are checked by the event contract, whose reasons name the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    points: Annotated[int, Field(strict=True)]
    reason: StrictStr | None = None
    expires_on: StrictStr | None = None
    qualifying: StrictBool = False


def _refused(error: AdjustmentRefused) -> ApiError:
    if error.kind == "conflict":
        return key_reused()
    if error.kind == "refused":
        return ApiError(409, "not_enough_points", error.detail, field=error.field)
    return ApiError(422, "invalid_request", error.detail, field=error.field)


@router.post("/v1/members/{member_id}/adjustments", status_code=201, tags=["members"])
async def post_adjustment(
    member_id: str,
    adjustment: AdjustmentRequest,
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    key: ApiKey = require("points:adjust"),
):
    """Credit (positive `points`) or debit (negative) the member's points at once, by the key's
    name and for `reason`. 201 with the entry, the credit's lot or the lots the debit took from,
    and the available points after it; 409 `not_enough_points` for a debit beyond the
    spendable points; 422 naming the field; 403 `source_not_allowed` for a key whose
    `--sources` leave out `api`. A retry with the same Idempotency-Key gets the first
    answer back, status and body; the same key with another body is refused (422)."""
    runtime = request.app.state.runtime
    # An adjustment is an event of source `api` (its entry's and stored event's source), so a
    # key restricted to other sources may not make one, as it may not send one.
    if not key.may_send(SOURCE):
        raise source_not_allowed(SOURCE)
    check_key(idempotency_key, required=False, code="invalid_idempotency_key")
    # The ledger's idempotency key for this request (a fresh one without a header).
    event_id = ledger_event_id(key.name, idempotency_key) if idempotency_key is not None else None

    async def answer() -> tuple[int, dict[str, Any]]:
        asked = Adjustment(
            member_id,
            adjustment.points,
            adjustment.reason,
            key.name,
            expires_on=adjustment.expires_on,
            qualifying=adjustment.qualifying,
        )
        try:
            done = await adjust_now(
                runtime.engine, runtime.timeline, asked, source=SOURCE, now=runtime.clock(), event_id=event_id
            )
        except UnknownMember:
            raise ApiError(404, "unknown_member", f"member_id: no member {member_id!r}", field="member_id") from None
        except AdjustmentRefused as error:
            if error.kind != "refused":
                raise _refused(error) from None
            # A refusal is an answer too: a retry of it gets it back.
            return 409, body("not_enough_points", error.detail, error.field)
        return 201, done

    request_body = {"member_id": member_id, **adjustment.model_dump()}
    return await answer_once(runtime.engine, key.name, idempotency_key, request_body, answer)
