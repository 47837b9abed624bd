"""Whether a referral pays: only for a new member, judged by event time. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta

# The outcome note of a referral (and of its referee bonus) for a member who is not new.
NOT_NEW = "referral.referee_not_new"
# The note of a referral (and of its referee bonus) of a member another referral won first.
ALREADY_REFERRED = "referral.referee_already_referred"
# The events that show a member enrolled: what they did themselves. Refunds and reviews are
# about a purchase, which counts itself (and they may wait for it, applied later); spending
# and identity links need an enrolled member first; the engine's own effects (the referee
# bonus, a birthday gift) are not the member's doing. Each of these is replayed, and a late
# one re-evaluates its member, so a late enrolment reaches the referral it unmakes.
ENROLMENT_TYPES = ("purchase", "signup", "check_in", "activity", "referral")


def referee_is_new(referred_at: datetime, first_event_at: datetime | None, purchased_before: bool, days: int) -> bool:
    """Whether a referral that occurred at `referred_at` pays: the referee made no purchase
    before it, and their first event (their enrolment by event time; None when they had none
    before the referral) occurred at most `days` days before it."""
    if purchased_before:
        return False
    return first_event_at is None or first_event_at >= referred_at - timedelta(days=days)
