"""Settings, URL handling and the Redis durability rules: pure, no server."""

from __future__ import annotations

import pytest
from redis.connection import SSLConnection
from sqlalchemy.engine import make_url

from db.engine import async_url
from worker.broker import build_broker
from worker.config import DEFAULT_HEARTBEAT_TIMEOUT_MS, Settings, redact_url
from worker.durability import durability_warnings


def test_heartbeat_and_maintenance_come_from_the_environment():
    s = Settings.from_env({"LOYALTY_HEARTBEAT_TIMEOUT_MS": "2500", "LOYALTY_MAINTENANCE_CHANCE": "1000000"})
    assert (s.heartbeat_timeout_ms, s.maintenance_chance) == (2500, 1_000_000)
    assert Settings.from_env({}).heartbeat_timeout_ms == DEFAULT_HEARTBEAT_TIMEOUT_MS == 30_000


def test_group_commit_settings_come_from_the_environment_and_1_turns_grouping_off():
    s = Settings.from_env({"LOYALTY_GROUP_MAX": "1", "LOYALTY_GROUP_WAIT_MS": "3", "LOYALTY_GROUP_CONCURRENCY": "4"})
    assert (s.group_max, s.group_wait_ms, s.group_concurrency) == (1, 3, 4)
    with pytest.raises(ValueError, match="LOYALTY_GROUP_MAX must be between 1 and 1000, got 0"):
        Settings.from_env({"LOYALTY_GROUP_MAX": "0"})


@pytest.mark.parametrize(
    "value, message",
    [
        ("fast", "LOYALTY_HEARTBEAT_TIMEOUT_MS must be an integer, got 'fast'"),
        ("10", "LOYALTY_HEARTBEAT_TIMEOUT_MS must be between 1000 and 3600000, got 10"),
    ],
)
def test_bad_heartbeat_setting_is_refused_with_its_name(value, message):
    with pytest.raises(ValueError) as error:
        Settings.from_env({"LOYALTY_HEARTBEAT_TIMEOUT_MS": value})
    assert str(error.value) == message


def test_broker_uses_the_configured_heartbeat_and_a_tls_redis_url_with_password():
    s = Settings(
        redis_url="rediss://worker:s3cr%40t@redis.internal:6380/2",
        heartbeat_timeout_ms=4000,
        maintenance_chance=500_000,
    )
    broker = build_broker(s)
    pool = broker.client.connection_pool
    assert (broker.heartbeat_timeout, broker.maintenance_chance) == (4000, 500_000)
    assert pool.connection_class is SSLConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("redis.internal", 6380, 2)
    assert (kwargs["username"], kwargs["password"]) == ("worker", "s3cr@t")


@pytest.mark.parametrize(
    "url, ssl",
    [
        ("postgresql://app:pw@db:5432/loyalty?sslmode=require", "require"),
        ("postgres://app:pw@db/loyalty?ssl=require", "require"),
        ("postgresql://app:pw@db/loyalty?ssl=true", "require"),
        ("postgresql+asyncpg://app:pw@db/loyalty?sslmode=verify-full", "verify-full"),
        ("postgresql://app:pw@db/loyalty", None),
    ],
)
def test_database_url_maps_tls_mode_to_asyncpg_and_keeps_the_password(url, ssl):
    parsed = make_url(async_url(url))
    assert parsed.drivername == "postgresql+asyncpg"
    assert parsed.password == "pw"
    assert parsed.query.get("ssl") == ssl
    assert "sslmode" not in parsed.query


def test_database_url_with_unknown_tls_mode_or_driver_is_refused():
    with pytest.raises(
        ValueError, match="ssl must be one of disable, allow, prefer, require, verify-ca, verify-full, got 'on'"
    ):
        async_url("postgresql://db/loyalty?sslmode=on")
    with pytest.raises(ValueError, match=r"must be postgresql://\.\.\., got mysql://"):
        async_url("mysql://db/loyalty")


def test_password_with_special_characters_survives_the_mapping():
    parsed = make_url(async_url("postgresql://app:p%40ss%3Aw%2Fd@db/loyalty?sslmode=require"))
    assert parsed.password == "p@ss:w/d"


@pytest.mark.parametrize(
    "url, shown",
    [
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql://app:hunter2@db/loyalty?ssl=require", "postgresql://app:***@db/loyalty?ssl=require"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
    ],
)
def test_redact_url_hides_only_the_password(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "config, warnings",
    [
        ({"appendonly": "yes", "save": "", "maxmemory-policy": "noeviction"}, []),
        (
            {"appendonly": "no", "save": "", "maxmemory-policy": "noeviction"},
            ["Redis has no persistence (appendonly no, no save points): a restart loses queued events"],
        ),
        (
            {"appendonly": "no", "save": "3600 1", "maxmemory-policy": "noeviction"},
            ["Redis persists only by snapshots (appendonly no): a restart loses events queued since the last one"],
        ),
        (
            {"appendonly": "yes", "save": "", "maxmemory-policy": "allkeys-lru"},
            ["Redis maxmemory-policy is allkeys-lru, not noeviction: under memory pressure it drops queued events"],
        ),
    ],
)
def test_durability_warnings(config, warnings):
    assert durability_warnings(config) == warnings
