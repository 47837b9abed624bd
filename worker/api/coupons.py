"""The coupon routes: a till looks a code up and uses it, once."""

from __future__ import annotations

from fastapi import APIRouter, Request

from worker.api.auth import require
from worker.api.errors import ApiError
from worker.services import coupons
from worker.services.api_keys import ApiKey

router = APIRouter()


def _unknown(code: str) -> ApiError:
    return ApiError(404, "unknown_coupon", f"code: no coupon {code!r}", field="code")


@router.get("/v1/coupons/{code}", tags=["coupons"])
async def get_coupon(code: str, request: Request, key: ApiKey = require("coupons:read")):
    """The coupon's status (`issued`, `used`, `expired`, `cancelled`), reward, member, last day
    and use; 404 `unknown_coupon` for a code no member was given."""
    runtime = request.app.state.runtime
    coupon = await coupons.coupon_view(runtime.engine, runtime.program, code, now=runtime.clock())
    if coupon is None:
        raise _unknown(code)
    return coupon


@router.post("/v1/coupons/{code}/use", tags=["coupons"])
async def use_coupon(code: str, request: Request, key: ApiKey = require("coupons:use")):
    """Use the coupon at the till: 200 with the coupon once; after that 409 `coupon_used`, and
    409 `coupon_expired` or `coupon_cancelled` for a coupon that may not be used."""
    runtime = request.app.state.runtime
    outcome = await coupons.use_coupon(runtime.engine, runtime.program, code, now=runtime.clock(), used_by=key.name)
    if outcome.coupon is None:
        raise _unknown(code)
    if outcome.refusal is not None:
        coupon = outcome.coupon
        why = {
            "coupon_used": f"used at {coupon['used_at']}",
            "coupon_expired": f"expired: its last day was {coupon['expires_on']}",
            "coupon_cancelled": f"cancelled at {coupon['cancelled_at']} with its redemption",
        }[outcome.refusal]
        raise ApiError(409, outcome.refusal, f"coupon {code!r} {why}", coupon=coupon)
    return outcome.coupon
