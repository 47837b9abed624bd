"""Quantities as operators read them. Pure."""

from __future__ import annotations


def human_duration(seconds: float | None) -> str:
    """`42.0 s`, `3.5 min`, `2.0 h`, `22.3 d`: the unit that keeps the number short; `-` for None."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"
