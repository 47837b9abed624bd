"""Create or migrate the schema: `loyalty db upgrade`. Safe to run twice, and concurrently."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool, text
from sqlalchemy.engine import make_url

from db.engine import async_url, create_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# Serializes concurrent `db upgrade` runs (e.g. several containers starting at once).
_LOCK_KEY = 0x10_7A17


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


async def ensure_database(url: str) -> bool:
    """Create the database named in the URL if it does not exist. True when it was created."""
    parsed = make_url(async_url(url))
    name = parsed.database
    connect_args = {
        # A socket directory can come as ?host=/path (as libpq URLs write it).
        "host": parsed.query.get("host") or parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        **{k: v for k, v in parsed.query.items() if k in ("ssl",)},
    }
    try:
        conn = await asyncpg.connect(database=name, **connect_args)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    admin = await asyncpg.connect(database="postgres", **connect_args)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.DuplicateDatabaseError:
        return False
    finally:
        await admin.close()
    return True


def heads() -> list[str]:
    """Feature migrations branch from the core revision; `upgrade` applies every head."""
    return sorted(ScriptDirectory.from_config(_config()).get_heads())


def up_to_date(current: set[str]) -> bool:
    """Whether a database at revisions `current` has every head applied. A revision that depends
    on another head (`depends_on`) stands for both in alembic_version, so the current revisions
    and the heads are compared through what they contain, not as sets."""
    script = ScriptDirectory.from_config(_config())
    known = {r.revision for r in script.walk_revisions()}
    if not current or not current <= known:
        return False
    applied = {r.revision for r in script.iterate_revisions(tuple(sorted(current)), "base")}
    return set(heads()) <= applied


async def revisions_in(engine) -> set[str]:
    """The revisions the database's schema is at; empty when it has no schema yet."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: set(MigrationContext.configure(sync).get_current_heads()))


async def current_revision(url: str) -> str:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda sync: ",".join(MigrationContext.configure(sync).get_current_heads()))
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "heads") -> str:
    """Bring the schema to `revision` in one transaction; returns the revision now in place."""
    await ensure_database(url)
    engine = create_engine(url, poolclass=pool.NullPool)
    config = _config()

    def run(sync_connection) -> None:
        config.attributes["connection"] = sync_connection
        command.upgrade(config, revision)

    try:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            await conn.run_sync(run)
    finally:
        await engine.dispose()
    return ", ".join(heads()) if revision == "heads" else revision
