"""Notification texts. Pure: kind, parameters and locale in, text out."""

from __future__ import annotations

TEMPLATES_EN = {
    "points_earned": "You earned {points} points. Available balance: {available_points}.",
    "tier_upgraded": "Congratulations! You are now a {to_tier} member.",
    "tier_nudge": "You're only {points_away} points away from {tier}.",
}


def render(kind: str, params: dict, locale: str | None = None) -> str:
    template = TEMPLATES_EN.get(kind)
    if template is None:
        return f"{kind}: {params}"
    return template.format(**params)
