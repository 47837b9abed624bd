"""Amounts in another currency than the program's base, converted before the rules see them. Pure.

A program's `[currencies]` table names its base currency and the others it accepts, each with
its rate: what one unit is worth in the base. A purchase in one of the others earns on its
amount (and its lines' amounts) converted to the base, so rates, minimum-order amounts, stepped
rates and caps all read base money. A program without the table converts nothing: amounts are
taken as sent, whatever their currency (docs/program.md#currencies).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from worker.domain.program import Program

# Converted amounts are money of the base: rounded once, to the cent, half away from zero,
# as a till rounds a converted price. Points are rounded later by the rules, on this amount.
CENT = Decimal("0.01")
ROUNDING = ROUND_HALF_UP


@dataclass(frozen=True)
class Conversion:
    """One amount as sent and in the base, with the rate used."""

    currency: str
    amount: Decimal
    base: str
    base_amount: Decimal
    rate: Decimal

    def describe(self) -> str:
        """`USD 100.00 = CNY 720.00 at 7.2`."""
        return f"{self.currency} {self.amount:.2f} = {self.base} {self.base_amount:.2f} at {self.rate}"

    def provenance(self) -> dict[str, str]:
        """What a ledger entry records of the conversion, beside the base amount it earned on."""
        return {"currency": self.currency, "currency_amount": f"{self.amount:.2f}", "currency_rate": str(self.rate)}


def rate_of(program: Program, currency: str) -> Decimal | None:
    """What one unit of `currency` is worth in the program's base; None when nothing is
    converted (the base itself, or a program without [currencies])."""
    table = program.currencies
    if table is None or currency == table.base:
        return None
    accepted = table.accepted.get(currency)
    if accepted is None:
        raise KeyError(currency)  # the worker's validation refuses such an event first
    return accepted.rate


def to_base(amount: Decimal, rate: Decimal) -> Decimal:
    """`amount` × `rate`, rounded to the cent (ROUNDING)."""
    return (amount * rate).quantize(CENT, rounding=ROUNDING)


def convert(program: Program, currency: str, amount: Decimal) -> Conversion | None:
    """The conversion of one amount, or None when it is in the base already (or nothing converts)."""
    rate = rate_of(program, currency)
    if rate is None:
        return None
    return Conversion(currency, amount, program.base_currency, to_base(amount, rate), rate)


def purchase_in_base(program: Program, payload: dict[str, Any]) -> tuple[dict[str, Any], Conversion | None]:
    """A purchase payload (plain data) with its amount and each line's amount in the base, and
    the order amount's conversion (None: nothing converted, the payload as given).

    Each line is converted on its own, so lines may add up to a cent more or less than the
    converted order; a line never earns more than its own amount converted."""
    conversion = convert(program, payload["currency"], payload["amount"])
    if conversion is None:
        return payload, None
    items = [{**item, "amount": to_base(item["amount"], conversion.rate)} for item in payload.get("items", ())]
    # The currency stays as sent, so a rule may still tell it (`when.payload = { currency = "USD" }`).
    converted = {**payload, "amount": conversion.base_amount, "items": tuple(items)}
    return converted, conversion


def refund_refusal(order_currency: str | None, order_id: str, refund_currency: str | None) -> str | None:
    """Why a refund cannot be applied to its order for its currency, or None. A refund is in
    its order's currency: one naming another is refused rather than converted, since the two
    rates in force at the purchase and at the refund would disagree about what was paid back."""
    if refund_currency is None or order_currency is None or refund_currency == order_currency:
        return None
    return f"payload.currency: {refund_currency} is not the currency of order {order_id} ({order_currency})"
