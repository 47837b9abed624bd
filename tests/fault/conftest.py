"""Fixtures for fault tests: a fresh Redis namespace per test and a reference database."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy.engine import make_url

from db import migrate
from db.engine import create_engine
from tests.conftest import REDIS_URL, _drop, truncate_all


@pytest.fixture
def fault_env(env, tmp_path):
    """Worker/CLI environment on this run's database, a namespace of its own, and a short
    heartbeat timeout with maintenance on every broker call, so a dead worker's messages
    come back within seconds."""
    return {
        **env,
        "LOYALTY_NAMESPACE": f"{env['LOYALTY_NAMESPACE']}-{uuid.uuid4().hex[:6]}",
        "LOYALTY_HEARTBEAT_TIMEOUT_MS": "3000",
        "LOYALTY_MAINTENANCE_CHANCE": "1000000",
    }


@pytest.fixture(scope="session")
def reference_url(database_url):
    """A second database for applying the same events in-process, in order."""
    url = make_url(database_url)
    url = url.set(database=f"{url.database}_ref").render_as_string(hide_password=False)
    asyncio.run(migrate.upgrade(url))
    yield url
    asyncio.run(_drop(url))


@pytest.fixture
async def reference(reference_url):
    engine = create_engine(reference_url, pool_size=2, max_overflow=0)
    await truncate_all(engine)
    yield engine
    await engine.dispose()
