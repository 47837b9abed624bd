"""Shared fixtures. Integration tests run against real PostgreSQL and Redis.

Each test run gets its own database (loyalty_test_<id>) and its own Redis key namespace,
so several runs can share one server; both are removed at the end of the run. Tables are
truncated between tests.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from db import migrate
from db.engine import async_url, create_engine
from worker.config import Settings

ADMIN_URL = os.environ.get("LOYALTY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("LOYALTY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
RUN_ID = uuid.uuid4().hex[:8]

# A fixed "now" for tests that do not care about the clock: after every date used in tests.
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _database_url() -> str:
    return make_url(async_url(ADMIN_URL)).set(database=f"loyalty_test_{RUN_ID}").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url() -> str:
    url = _database_url()
    asyncio.run(migrate.upgrade(url))
    yield url
    asyncio.run(_drop(url))


async def _drop(url: str) -> None:
    parsed = make_url(url)
    admin = await asyncpg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password, database="postgres"
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def redis_namespace() -> str:
    namespace = f"loyalty-test-{RUN_ID}"
    yield namespace
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{namespace}:*", count=1000):
        client.delete(key)


@pytest.fixture
def settings(database_url: str, redis_namespace: str) -> Settings:
    return Settings(database_url=database_url, redis_url=REDIS_URL, namespace=redis_namespace, strict_checks=True)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator:
    engine = create_engine(database_url, pool_size=10, max_overflow=10)
    yield engine
    await engine.dispose()


async def truncate_all(engine) -> None:
    async with engine.begin() as conn:
        names = (
            (
                await conn.execute(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                    )
                )
            )
            .scalars()
            .all()
        )
        await conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))


@pytest.fixture
async def db(engine):
    """An engine on an empty schema."""
    await truncate_all(engine)
    return engine


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """Environment for `loyalty` subprocesses pointed at this run's database and namespace."""
    return {
        **os.environ,
        "LOYALTY_DATABASE_URL": settings.database_url,
        "LOYALTY_REDIS_URL": settings.redis_url,
        "LOYALTY_NAMESPACE": settings.namespace,
        "LOYALTY_STRICT_CHECKS": "1",
        "LOYALTY_LOG_FORMAT": "json",
    }


@pytest.fixture
def broker(settings, db):
    """The real Redis broker on this run's namespace, emptied before and after the test."""
    from worker.broker import build_broker

    broker = build_broker(settings)
    broker.flush_all()
    yield broker
    broker.flush_all()
    broker.close()
