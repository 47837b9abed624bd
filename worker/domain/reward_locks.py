"""Why a reward is locked for a member, in the member's language. Pure; no I/O.

The codes are the mall's rejection reasons (`worker.domain.mall.REASONS`); the text is what
the member app shows next to a locked reward.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.domain import mall

TEXTS: Mapping[str, Mapping[str, str]] = {
    "en": {
        mall.NOT_ENOUGH_POINTS: "You need {points_short} more points.",
        mall.TIER_TOO_LOW: "For {min_tier} members and above.",
        mall.LIMIT_REACHED: "You have reached the limit for this reward.",
        mall.OUT_OF_STOCK: "Out of stock.",
        mall.NOT_AVAILABLE: "Not available at the moment.",
        mall.NO_CODES_LEFT: "No codes left.",
    },
    "zh-Hans": {
        mall.NOT_ENOUGH_POINTS: "还差 {points_short} 积分。",
        mall.TIER_TOO_LOW: "{min_tier}及以上会员专享。",
        mall.LIMIT_REACHED: "您已达到该礼品的兑换上限。",
        mall.OUT_OF_STOCK: "已兑完。",
        mall.NOT_AVAILABLE: "暂不可兑换。",
        mall.NO_CODES_LEFT: "券码已发完。",
    },
    "zh-Hant": {
        mall.NOT_ENOUGH_POINTS: "還差 {points_short} 積分。",
        mall.TIER_TOO_LOW: "{min_tier}及以上會員專享。",
        mall.LIMIT_REACHED: "您已達到該禮品的兌換上限。",
        mall.OUT_OF_STOCK: "已兌完。",
        mall.NOT_AVAILABLE: "暫不可兌換。",
        mall.NO_CODES_LEFT: "券碼已發完。",
    },
}


def lock_text(reason: str, locale: str | None, default_locale: str, **params: Any) -> str:
    """The member-facing sentence for `reason`; the program's default language when the
    member has none we know, English as the last resort."""
    texts = TEXTS.get(locale or "") or TEXTS.get(default_locale) or TEXTS["en"]
    return texts[reason].format(**params)
