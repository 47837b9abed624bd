"""Request bodies. Identifiers and the redemption body are the event contract's own types."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from worker.domain.events import Identifier, RedemptionPayload
from worker.services.holds import HOLD_EXPIRES_IN_S_DEFAULT, HOLD_EXPIRES_IN_S_MAX

# One checkout cannot be paid with more points than this (a typo guard, like the contract's caps).
HOLD_POINTS_MAX = 100_000_000


class HoldRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hold_id: Identifier
    points: Annotated[int, Field(ge=1, le=HOLD_POINTS_MAX, strict=True)]
    order_id: Identifier
    expires_in_s: Annotated[int, Field(ge=1, le=HOLD_EXPIRES_IN_S_MAX, strict=True)] = HOLD_EXPIRES_IN_S_DEFAULT


class RedemptionRequest(RedemptionPayload):
    """`{"reward_id", "quantity"}`, exactly the payload of a `redemption` event."""
