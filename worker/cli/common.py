"""Helpers shared by the commands: settings, engine lifetime, JSON output."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine
from worker.config import Settings
from worker.domain.engine import load_program
from worker.domain.errors import ProgramError
from worker.domain.program import Program
from worker.domain.program_timeline import ProgramTimeline

T = TypeVar("T")
CONNECT_TIMEOUT_S = 10


def settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as error:
        fail(str(error))


def program_file(s: Settings) -> Program:
    """The program of LOYALTY_PROGRAM_FILE (or the built-in default), read without the database."""
    try:
        return load_program(s.program_file)
    except ProgramError as error:
        fail(str(error))


def program(s: Settings, at: datetime | None = None) -> Program:
    """The program in force, as the workers have it: the published version whose start has
    passed (at `at`, default now), else the program file's."""
    from worker.runtime import utc_now
    from worker.services.program_versions import program_in_force

    fallback = program_file(s)
    try:
        return run(lambda engine: program_in_force(engine, fallback, at or utc_now()), s)
    except ProgramError as error:
        fail(str(error))


def timeline(s: Settings, at: datetime | None = None) -> ProgramTimeline:
    """Every published version by its start, as the workers have them (at `at`, default now),
    for a command that applies or explains events: each is decided by the version in force at
    its occurred_at (before any version has started, by the program file's program)."""
    from worker.runtime import utc_now
    from worker.services.program_versions import timeline_in_force

    fallback = program_file(s)
    try:
        return run(lambda engine: timeline_in_force(engine, fallback, at or utc_now()), s)
    except ProgramError as error:
        fail(str(error))


def parse_time(value: str, option: str) -> datetime:
    """An option's ISO 8601 time, which must carry a UTC offset; exit 2 naming the option otherwise."""
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option}: {value!r} is not an ISO 8601 time, e.g. 2026-01-02T00:05:00+08:00")
    if at.tzinfo is None:
        fail(f"{option}: {value!r} needs a UTC offset, e.g. 2026-01-02T00:05:00+08:00")
    return at


def fail(message: str, code: int = 2):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@asynccontextmanager
async def engine_for(s: Settings) -> AsyncIterator[AsyncEngine]:
    # A bounded connect: an unreachable host is reported in seconds (worker.cli.main names it).
    engine = create_engine(s.database_url, pool_size=2, max_overflow=0, connect_args={"timeout": CONNECT_TIMEOUT_S})
    try:
        yield engine
    finally:
        await engine.dispose()


def run(fn: Callable[[AsyncEngine], Awaitable[T]], s: Settings | None = None) -> T:
    async def go() -> T:
        async with engine_for(s or settings()) as engine:
            return await fn(engine)

    return asyncio.run(go())


def emit_json(value: Any) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")
