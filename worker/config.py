"""Settings from the environment. Secrets live only here and in the process environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/loyalty"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# A dead worker's unacked messages go back on the queue once its last heartbeat is this old.
# Every broker call of a live worker is a heartbeat (an idle one polls at least every second),
# so the value must only stay well above the longest stall of a whole worker process.
DEFAULT_HEARTBEAT_TIMEOUT_MS = 30_000
# Out of a million broker calls, how many also run the requeue of dead workers' messages.
# dramatiq's default (1000) means an idle queue can wait a quarter of an hour for it; at
# 100_000 an idle worker polling once a second requeues within ~30 s after the timeout.
DEFAULT_MAINTENANCE_CHANCE = 100_000
MAINTENANCE_SCALE = 1_000_000
# Workers, API processes and the scheduler look for a newly published program version this
# often (one indexed query); a new version is in force everywhere within about this long.
DEFAULT_PROGRAM_RELOAD_S = 5
# Group commit of one-event messages (worker/services/group_commit.py): at most this many
# events per transaction (1 turns grouping off: a transaction per event, as before), a wait
# of at most this long for more once a connection is free, and this many groups committing
# at once per worker process. Defaults chosen by measurement (docs/performance.md).
DEFAULT_GROUP_MAX = 64
DEFAULT_GROUP_WAIT_MS = 0
DEFAULT_GROUP_CONCURRENCY = 2


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
    heartbeat_timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS
    maintenance_chance: int = DEFAULT_MAINTENANCE_CHANCE
    program_reload_s: int = DEFAULT_PROGRAM_RELOAD_S
    group_max: int = DEFAULT_GROUP_MAX
    group_wait_ms: int = DEFAULT_GROUP_WAIT_MS
    group_concurrency: int = DEFAULT_GROUP_CONCURRENCY

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            database_url=with_password(
                env.get("LOYALTY_DATABASE_URL") or DEFAULT_DATABASE_URL, env.get("LOYALTY_DATABASE_PASSWORD") or None
            ),
            redis_url=env.get("LOYALTY_REDIS_URL") or DEFAULT_REDIS_URL,
            program_file=env.get("LOYALTY_PROGRAM_FILE") or None,
            namespace=env.get("LOYALTY_NAMESPACE") or "loyalty",
            strict_checks=env.get("LOYALTY_STRICT_CHECKS", "") in ("1", "true", "yes"),
            webhook_url=env.get("LOYALTY_WEBHOOK_URL") or None,
            webhook_secret=env.get("LOYALTY_WEBHOOK_SECRET") or None,
            templates_dir=env.get("LOYALTY_TEMPLATES_DIR") or None,
            heartbeat_timeout_ms=_int_setting(
                env, "LOYALTY_HEARTBEAT_TIMEOUT_MS", DEFAULT_HEARTBEAT_TIMEOUT_MS, 1_000, 3_600_000
            ),
            maintenance_chance=_int_setting(
                env, "LOYALTY_MAINTENANCE_CHANCE", DEFAULT_MAINTENANCE_CHANCE, 1, MAINTENANCE_SCALE
            ),
            program_reload_s=_int_setting(env, "LOYALTY_PROGRAM_RELOAD_S", DEFAULT_PROGRAM_RELOAD_S, 1, 3600),
            group_max=_int_setting(env, "LOYALTY_GROUP_MAX", DEFAULT_GROUP_MAX, 1, 1000),
            group_wait_ms=_int_setting(env, "LOYALTY_GROUP_WAIT_MS", DEFAULT_GROUP_WAIT_MS, 0, 1000),
            group_concurrency=_int_setting(env, "LOYALTY_GROUP_CONCURRENCY", DEFAULT_GROUP_CONCURRENCY, 1, 64),
        )


def _int_setting(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name) or ""
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def with_password(url: str, password: str | None) -> str:
    """The URL with `password` in it, percent-encoded, in place of any password it had.

    LOYALTY_DATABASE_PASSWORD is taken as is: a password pasted raw into a URL breaks it on
    `@`, `/`, `#`, `?` or `%` (`p@ss/w#rd` made the host `ss`)."""
    if password is None:
        return url
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{hostport}"))


DEFAULT_METRICS_PORT = 9191


def metrics_port() -> int:
    """Where the worker's /metrics listens (LOYALTY_METRICS_PORT; 0 turns metrics off)."""
    return int(os.environ.get("LOYALTY_METRICS_PORT") or DEFAULT_METRICS_PORT)


def metrics_host() -> str:
    return os.environ.get("LOYALTY_METRICS_HOST") or "0.0.0.0"


# Left in the metrics folder by a /metrics process that could not listen and stopped the
# worker: `loyalty worker` (worker/stopping.py) then exits 3, a failure for whoever supervises the worker.
METRICS_STOPPED_MARKER = "metrics-cannot-start"


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for log lines and error messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
