"""Expected failures, as typed exceptions. Infrastructure errors are not here: they retry."""

from __future__ import annotations


class LoyaltyError(Exception):
    """Base class for the errors this project raises on purpose."""


class ProgramError(LoyaltyError):
    """The program file is missing, unreadable or invalid; the message names the bad key."""


class InvalidEvent(LoyaltyError):
    """An event breaks the contract or the program; never retried, recorded as rejected.

    `reason` starts with the dotted path of the offending field, e.g. ``payload.amount: ...``.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class UnknownMember(LoyaltyError):
    """A synchronous request names a member who is not enrolled; nothing was written."""

    def __init__(self, member_id: str):
        super().__init__(f"no member {member_id!r}")
        self.member_id = member_id


class InvalidFloor(LoyaltyError):
    """An operator's tier floor names no tier of the program, or ends before today."""


class InvariantViolation(LoyaltyError):
    """The ledger disagrees with itself; a bug, never an input problem."""


class RuleStateError(LoyaltyError):
    """Stored rule state does not have the shape the engine writes; the message names the key."""


class EngineError(LoyaltyError):
    """An event or member snapshot the rule engine cannot evaluate (e.g. an unknown tier)."""


class PublishRefused(LoyaltyError):
    """A program version that cannot be published as asked: its version id is taken by other
    content or another start, or its start is in the past. Nothing was written."""


class MemberMerged(LoyaltyError):
    """The event's member was merged into another after intake resolved it; the transaction is
    rolled back and the event resolved again (to `survivor_id`)."""

    def __init__(self, member_id: str, survivor_id: str):
        super().__init__(f"member {member_id!r} was merged into {survivor_id!r}")
        self.member_id = member_id
        self.survivor_id = survivor_id


class LinkContended(LoyaltyError):
    """Concurrent merges kept moving an identity's owner while a link tried to lock it; the
    message is retried like an outage."""


class CouponRefused(LoyaltyError):
    """A coupon codes file or load that cannot be honoured: a bad line, a reward that is not a
    coupon with a pool. The message names the line or the reward; nothing was written."""
