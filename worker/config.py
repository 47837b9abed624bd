"""Settings from the environment. Secrets live only here and in the process environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/loyalty"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    program_file: str | None = None
    # Prefix of every Redis key the broker writes; lets several deployments share a Redis.
    namespace: str = "loyalty"
    # Run the full balance-versus-entries check inside every ledger transaction (tests, audits).
    strict_checks: bool = False
    # Notification delivery: where the webhook channel POSTs, the key it signs with (never
    # logged or printed), and a directory of operator-edited templates.
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    templates_dir: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            database_url=env.get("LOYALTY_DATABASE_URL") or DEFAULT_DATABASE_URL,
            redis_url=env.get("LOYALTY_REDIS_URL") or DEFAULT_REDIS_URL,
            program_file=env.get("LOYALTY_PROGRAM_FILE") or None,
            namespace=env.get("LOYALTY_NAMESPACE") or "loyalty",
            strict_checks=env.get("LOYALTY_STRICT_CHECKS", "") in ("1", "true", "yes"),
            webhook_url=env.get("LOYALTY_WEBHOOK_URL") or None,
            webhook_secret=env.get("LOYALTY_WEBHOOK_SECRET") or None,
            templates_dir=env.get("LOYALTY_TEMPLATES_DIR") or None,
        )
