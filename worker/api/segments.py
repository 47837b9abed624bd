"""Member segments over HTTP: a member's labels set, and members listed by tier or label."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict

from worker.api.auth import require
from worker.api.errors import ApiError
from worker.domain.errors import UnknownMember
from worker.domain.labels import LabelError, Labels
from worker.services.api_keys import ApiKey
from worker.services.segments import LIST_PAGE_DEFAULT, LIST_PAGE_MAX, list_members, set_labels

router = APIRouter()

# The source of the member_update events label changes over HTTP send.
API_SOURCE = "api"


class LabelsRequest(BaseModel):
    """`{"labels": [...]}`: the member's labels from now on, the whole set (`[]`: none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: Labels


def _field(reason: str) -> str:
    return reason.split(":", 1)[0]


@router.put("/v1/members/{member_id}/labels", tags=["members"])
async def put_labels(member_id: str, wanted: LabelsRequest, request: Request, key: ApiKey = require("members:write")):
    """Replace the member's labels (a `member_update` event from source `api`, applied before the
    answer); answers the member's labels. 404 for a member who is not enrolled."""
    runtime = request.app.state.runtime
    try:
        done = await set_labels(
            runtime.engine, runtime.timeline, member_id, now=runtime.clock(), source=API_SOURCE, labels=wanted.labels
        )
    except UnknownMember:
        raise ApiError(404, "unknown_member", f"member_id: no member {member_id!r}", field="member_id") from None
    except LabelError as error:
        raise ApiError(422, "invalid_request", str(error), field=_field(str(error))) from None
    return {"member_id": done.member_id, "labels": done.labels}


@router.get("/v1/members", tags=["members"])
async def get_members(
    request: Request,
    tier: Annotated[str | None, Query(max_length=64, description="only members of this tier")] = None,
    label: Annotated[str | None, Query(max_length=64, description="only members with this label")] = None,
    cursor: Annotated[str | None, Query(max_length=128, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=LIST_PAGE_MAX)] = LIST_PAGE_DEFAULT,
    key: ApiKey = require("members:read"),
):
    """Members in member-id order (not erased, not merged into another), of a tier and with a
    label when given; page on with `cursor` until `next_cursor` is null."""
    runtime = request.app.state.runtime
    tiers = [t.name for t in runtime.program.tiers]
    if tier is not None and tier not in tiers:
        raise ApiError(
            422, "invalid_request", f"tier: {tier!r} is not a tier of the program ({', '.join(tiers)})", field="tier"
        )
    try:
        return await list_members(runtime.engine, tier=tier, label=label, cursor=cursor, limit=limit)
    except LabelError as error:
        raise ApiError(422, "invalid_request", str(error), field=_field(str(error))) from None
