"""The app factory and its lifespan: engine, broker and Redis are built when the process starts."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import FastAPI

from worker.config import Settings, _int_setting
from worker.domain.program import Program

log = structlog.get_logger(__name__)

# 4 MiB: a full batch of 1,000 events (the worker's own batch limit) fits with room to spare.
BODY_BYTES_MAX_DEFAULT = 4 * 1024 * 1024 + 64 * 1024
RATE_PER_KEY_DEFAULT = 200
# How often each API process releases expired holds and restores points of refunded orders.
SWEEP_S_DEFAULT = 15
# Connections per API process: uvicorn runs one event loop; requests wait for a free one.
POOL_SIZE = 10
# A request waits at most this long for a connection to PostgreSQL or Redis before it answers
# 503: a server that does not answer at all (a host gone from the network) must not hold
# clients for the drivers' default of a minute or more.
CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class ApiSettings:
    body_bytes_max: int = BODY_BYTES_MAX_DEFAULT
    rate_per_key: int = RATE_PER_KEY_DEFAULT
    sweep_s: int = SWEEP_S_DEFAULT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        env = os.environ if env is None else env
        return cls(
            body_bytes_max=_int_setting(
                env, "LOYALTY_API_BODY_BYTES_MAX", BODY_BYTES_MAX_DEFAULT, 1024, 64 * 1024 * 1024
            ),
            rate_per_key=_int_setting(env, "LOYALTY_API_RATE_PER_KEY", RATE_PER_KEY_DEFAULT, 1, 1_000_000),
            sweep_s=_int_setting(env, "LOYALTY_API_SWEEP_S", SWEEP_S_DEFAULT, 0, 3600),
        )


@dataclass
class Runtime:
    """What the routes use, built in the lifespan (nothing at import time)."""

    settings: Settings
    api: ApiSettings
    programs: Any  # worker.services.program_versions.ProgramInForce
    engine: Any
    # The same pool without BEGIN/ROLLBACK around each checkout, for single-statement reads only.
    read_engine: Any
    redis: Any
    send_one: Callable[[dict], Any]
    send_many: Callable[[list[dict]], Any]
    keys: Any
    limiter: Any
    clock: Callable[[], Any]
    tasks: list[asyncio.Task] = field(default_factory=list)

    @property
    def program(self) -> Program:
        """The program in force now, as the workers have it (re-read every few seconds)."""
        return self.programs.program

    @property
    def timeline(self) -> Any:
        """Every version by its start (worker.domain.program_timeline.ProgramTimeline): an event
        is checked and decided by the one in force at its occurred_at."""
        return self.programs.timeline


async def _sweeper(runtime: Runtime) -> None:
    from worker.services.holds import sweep

    while True:
        await asyncio.sleep(runtime.api.sweep_s)
        try:
            settled = await sweep(runtime.engine, runtime.program, now=runtime.clock())
            if settled:
                log.info("holds_swept", members=settled)
        except Exception as error:  # an outage must not end the loop; the next period tries again
            from worker.preflight import unavailable_server

            server = unavailable_server(error)
            if server is None:
                log.exception("holds_sweep_failed")
            else:  # an operating condition, said in one line each period, not a traceback
                log.warning("holds_sweep_failed", unavailable=server)


def create_app(
    settings: Settings | None = None, api_settings: ApiSettings | None = None, program: Program | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        import redis.asyncio as aioredis

        from db.engine import create_engine
        from worker.api.auth import KeyCache
        from worker.api.limits import RateLimiter
        from worker.broker import build_broker
        from worker.domain.engine import load_program
        from worker.runtime import utc_now
        from worker.services.program_versions import ProgramInForce, StoredVersions

        s = settings or Settings.from_env()
        a = api_settings or ApiSettings.from_env()
        prog = program or load_program(s.program_file)
        engine = create_engine(
            s.database_url, pool_size=POOL_SIZE, max_overflow=0, connect_args={"timeout": CONNECT_TIMEOUT_S}
        )
        broker = build_broker(s, program=prog)
        client = aioredis.Redis.from_url(s.redis_url, socket_connect_timeout=CONNECT_TIMEOUT_S)
        # The same program in force as the workers': a given `program` is fixed (tests).
        programs = ProgramInForce(prog, StoredVersions(engine) if program is None else None, s.program_reload_s)
        reloader = await programs.start(utc_now)
        runtime = Runtime(
            settings=s,
            api=a,
            programs=programs,
            engine=engine,
            read_engine=engine.execution_options(isolation_level="AUTOCOMMIT"),
            redis=client,
            send_one=broker.get_actor("process_event").send,
            send_many=broker.get_actor("process_batch").send,
            keys=KeyCache(engine),
            limiter=RateLimiter(client, s.namespace, a.rate_per_key),
            clock=utc_now,
        )
        if a.sweep_s > 0:
            runtime.tasks.append(asyncio.create_task(_sweeper(runtime)))
        if reloader is not None:
            runtime.tasks.append(reloader)
        app.state.runtime = runtime
        try:
            yield
        finally:
            for task in runtime.tasks:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            await client.aclose()
            broker.close()
            await engine.dispose()

    from worker.api import adjustments, coupons, docs, errors, routes, segments
    from worker.api.limits import AccessLog, BodyLimit

    app = FastAPI(
        title="Loyalty engine API",
        version="1",
        summary="Events in, outcomes and member state out, points as payment at checkout.",
        lifespan=lifespan,
        # Served from this process by docs.install (FastAPI's own pages load them from a CDN).
        docs_url=None,
        redoc_url=None,
    )
    docs.install(app)
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(adjustments.router)
    app.include_router(coupons.router)
    app.include_router(segments.router)
    limit = (api_settings or ApiSettings.from_env()).body_bytes_max
    # Outermost last: the access log sees the status `Unexpected` answers with, and `Unexpected`
    # is outside BodyLimit, which answers its own 413.
    app.add_middleware(BodyLimit, max_bytes=limit)
    app.add_middleware(errors.Unexpected)
    app.add_middleware(AccessLog)
    return app
