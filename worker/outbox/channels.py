"""Delivery channels behind one small interface: `await channel.send(delivery)`.

A channel returns when the receiver has accepted the notification and raises
DeliveryError otherwise; the dispatcher decides about retries. Channels never log secrets.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import structlog

from worker.config import Settings
from worker.domain.errors import LoyaltyError
from worker.domain.program import Program
from worker.domain.signing import sign

log = structlog.get_logger(__name__)

DELIVERY_ID_HEADER = "X-Loyalty-Delivery-Id"
TIMESTAMP_HEADER = "X-Loyalty-Timestamp"
SIGNATURE_HEADER = "X-Loyalty-Signature"
# Receiver error bodies are kept in last_error for ops, cut to this length.
ERROR_BODY_CHARS_MAX = 200


class DeliveryError(LoyaltyError):
    """The receiver did not accept the notification; the message says why."""


class ChannelConfigError(LoyaltyError):
    """The configured channel cannot work (e.g. webhook without a URL or secret)."""


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    notification_id: int
    member_id: str
    kind: str
    locale: str
    text: str
    params: dict[str, Any]
    attempt: int
    created_at: str

    def as_json(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "notification_id": self.notification_id,
            "member_id": self.member_id,
            "kind": self.kind,
            "locale": self.locale,
            "text": self.text,
            "params": self.params,
            "attempt": self.attempt,
            "created_at": self.created_at,
        }


class Channel(Protocol):
    name: str

    async def send(self, delivery: Delivery) -> None: ...


class LogChannel:
    """Writes each notification as one structured log line (the default, and the demo's)."""

    name = "log"

    async def send(self, delivery: Delivery) -> None:
        log.info(
            "notification",
            delivery_id=delivery.delivery_id,
            notification_id=delivery.notification_id,
            member_id=delivery.member_id,
            kind=delivery.kind,
            locale=delivery.locale,
            text=delivery.text,
        )


class WebhookChannel:
    """POSTs the notification as JSON, signed with HMAC-SHA256 over "<timestamp>.<body>"."""

    name = "webhook"

    def __init__(self, client: httpx.AsyncClient, url: str, secret: str, timeout_s: float):
        self._client = client
        self._url = url
        self._secret = secret
        self._timeout = httpx.Timeout(timeout_s)
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"WebhookChannel(url={self._url!r})"

    def request(self, delivery: Delivery, now_s: float | None = None) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(delivery.as_json(), ensure_ascii=False, separators=(",", ":"), default=str).encode()
        timestamp = int(now_s if now_s is not None else time.time())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            DELIVERY_ID_HEADER: delivery.delivery_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        return body, headers

    async def send(self, delivery: Delivery) -> None:
        body, headers = self.request(delivery)
        try:
            response = await self._client.post(self._url, content=body, headers=headers, timeout=self._timeout)
        except httpx.TimeoutException:
            raise DeliveryError(f"timeout: no answer from the webhook within {self.timeout_s:g} s") from None
        except httpx.HTTPError as error:
            reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            raise DeliveryError(f"webhook unreachable: {reason}") from None
        if not 200 <= response.status_code < 300:
            detail = response.text[:ERROR_BODY_CHARS_MAX].strip()
            raise DeliveryError(f"webhook answered HTTP {response.status_code}" + (f": {detail}" if detail else ""))


# Concurrent webhook requests per dispatcher: enough that one slow receiver call does not
# hold up the batch, few enough not to flood the receiver.
WEBHOOK_CONNECTIONS_MAX = 32


@asynccontextmanager
async def open_channel(settings: Settings, program: Program) -> AsyncIterator[Channel]:
    """The program's channel, with its HTTP client open for the length of the block."""
    config = program.notifications
    if config.channel == "log":
        yield LogChannel()
        return
    url = settings.webhook_url or config.webhook_url
    if not url:
        raise ChannelConfigError(
            "notifications.channel is 'webhook' but neither LOYALTY_WEBHOOK_URL nor notifications.webhook_url is set"
        )
    if not settings.webhook_secret:
        raise ChannelConfigError("notifications.channel is 'webhook' but LOYALTY_WEBHOOK_SECRET is not set")
    limits = httpx.Limits(max_connections=WEBHOOK_CONNECTIONS_MAX, max_keepalive_connections=WEBHOOK_CONNECTIONS_MAX)
    async with httpx.AsyncClient(limits=limits, follow_redirects=False) as client:
        yield WebhookChannel(client, url, settings.webhook_secret, config.webhook_timeout_ms / 1000)
