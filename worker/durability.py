"""The worker's start-up check that Redis will keep queued messages.

A Redis without persistence loses every queued event when it restarts, and one that evicts
keys under memory pressure drops messages silently. Neither is an error the worker can
recover from later, so it says so loudly when it boots.
"""

from __future__ import annotations

from collections.abc import Mapping

import dramatiq
import structlog

log = structlog.get_logger(__name__)

# The only eviction policy under which Redis never drops a queued message.
REQUIRED_MAXMEMORY_POLICY = "noeviction"


def durability_warnings(config: Mapping[str, str]) -> list[str]:
    """What is unsafe in a Redis CONFIG GET answer (appendonly, save, maxmemory-policy)."""
    warnings = []
    appendonly = (config.get("appendonly") or "no").lower()
    save = (config.get("save") or "").strip()
    if appendonly != "yes" and not save:
        warnings.append("Redis has no persistence (appendonly no, no save points): a restart loses queued events")
    elif appendonly != "yes":
        warnings.append(
            "Redis persists only by snapshots (appendonly no): a restart loses events queued since the last one"
        )
    policy = (config.get("maxmemory-policy") or "").lower()
    if policy and policy != REQUIRED_MAXMEMORY_POLICY:
        warnings.append(
            f"Redis maxmemory-policy is {policy}, not noeviction: under memory pressure it drops queued events"
        )
    return warnings


def read_config(client) -> dict[str, str]:
    config: dict[str, str] = {}
    for key in ("appendonly", "save", "maxmemory-policy"):
        for name, value in client.config_get(key).items():
            config[name.decode() if isinstance(name, bytes) else name] = (
                value.decode() if isinstance(value, bytes) else str(value)
            )
    return config


class RedisDurabilityCheck(dramatiq.Middleware):
    """Logs a warning at worker boot for each unsafe Redis setting."""

    def before_worker_boot(self, broker, worker) -> None:
        client = getattr(broker, "client", None)
        if client is None:
            return
        try:
            config = read_config(client)
        except Exception as error:  # managed Redis often disables CONFIG; never block the boot on it
            log.info("redis_durability_unknown", error=type(error).__name__)
            return
        for warning in durability_warnings(config):
            log.warning("redis_not_durable", problem=warning)
