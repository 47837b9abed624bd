"""Fixtures for fault tests: a fresh Redis namespace per test and a reference database."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from db import migrate
from db.engine import create_engine
from tests.conftest import _drop, truncate_all

# Every birthday the fault workloads use falls in 1900-1999; no other date in a log does.
_BIRTHDAY = re.compile(r"\b19[0-9]{2}-[01][0-9]-[0-3][0-9]\b")


def birthdays_in_logs(directory: Path) -> list[tuple[str, str]]:
    found = []
    for log in sorted(directory.rglob("*.log")):
        text = log.read_text(errors="replace")
        found += [(log.name, match.group()) for match in _BIRTHDAY.finditer(text)]
    return found


@pytest.fixture(autouse=True)
def no_birthdays_in_logs(tmp_path):
    """The output of every process a fault test started (worker, servers, CLI logs under its
    temp dir) is searched for the birthdays it used: personal data never reaches a log."""
    yield
    assert birthdays_in_logs(tmp_path) == []


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
