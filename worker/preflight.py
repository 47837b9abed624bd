"""Checks a process runs before it takes work, and one-line descriptions of what went wrong.

A worker that cannot work must refuse to start: a program or templates file that does not
validate, a schema that is missing or behind the code, an unreachable PostgreSQL or Redis.
Each problem becomes a `PreflightError` whose message is one line naming the cause (the key,
the server and its host:port, the command to run); never a traceback, and never a password.
The `loyalty` commands use `describe` for the same errors met later, mid-command.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from worker.config import Settings
from worker.domain.engine import load_program
from worker.domain.errors import LoyaltyError
from worker.domain.program import Program

# How long a start-up check waits for a server: long enough for a slow network, short enough
# that an operator sees the cause "within seconds" instead of a hung process.
CONNECT_TIMEOUT_S = 5.0

T = TypeVar("T")
# What a busy metrics port's line says to do about it.
METRICS_PORT_HINT = "; set LOYALTY_METRICS_PORT to a free port, or to 0 to run without metrics"


class PreflightError(Exception):
    """A condition the operator must fix before the process can work; `str()` is one line."""

    def __init__(self, message: str, code: int = 3):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Address:
    server: str  # "PostgreSQL" or "Redis"
    host: str
    port: int | None
    database: str | None = None

    def __str__(self) -> str:
        return f"{self.server} at {self.host}:{self.port}" if self.port else f"{self.server} at {self.host}"


def postgres_address(url: str) -> Address:
    """Where the database URL points; PreflightError (code 2) when it is not a PostgreSQL URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from db.engine import async_url

    try:
        parsed = make_url(async_url(url))
    except (ArgumentError, ValueError) as error:
        raise PreflightError(
            f"LOYALTY_DATABASE_URL is not a PostgreSQL URL ({_first_line(error)}); "
            "expected postgresql://user:password@host:5432/database",
            code=2,
        ) from None
    host = parsed.query.get("host") or parsed.host or "localhost"
    return Address("PostgreSQL", str(host), parsed.port or 5432, parsed.database)


def redis_address(url: str) -> Address:
    """Where the Redis URL points; PreflightError (code 2) when it is not a Redis URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise PreflightError(
            "LOYALTY_REDIS_URL is not a Redis URL (it must start with redis://, rediss:// or unix://); "
            "expected redis://host:6379/0",
            code=2,
        )
    try:
        port = parts.port
    except ValueError:
        raise PreflightError("LOYALTY_REDIS_URL has a port that is not a number", code=2) from None
    if parts.scheme == "unix":
        return Address("Redis", parts.path, None)
    return Address("Redis", parts.hostname or "localhost", port or 6379)


def check_urls(settings: Settings) -> None:
    postgres_address(settings.database_url)
    redis_address(settings.redis_url)


def check_files(settings: Settings) -> Program:
    """The program and the notification templates, validated (the error names the file and key)."""
    from worker.domain import messages

    try:
        program = load_program(settings.program_file)
        messages.load_catalog(settings.templates_dir)
    except LoyaltyError as error:
        raise PreflightError(str(error), code=2) from None
    return program


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _reason(error: BaseException) -> str:
    if isinstance(error, socket.gaierror):
        return "host name not found"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return f"no answer within {CONNECT_TIMEOUT_S:g}s"
    return _first_line(error)


def describe_postgres(error: BaseException, url: str) -> str | None:
    """One line for a PostgreSQL connection, authentication or catalog error; None for others."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError

    address = postgres_address(url)
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    # SQLAlchemy's asyncpg adapter keeps the driver's exception as __cause__.
    if cause.__cause__ is not None and isinstance(cause.__cause__, (asyncpg.PostgresError, OSError)):
        cause = cause.__cause__
    if isinstance(cause, asyncpg.InvalidCatalogNameError):
        return f"{address} has no database {address.database!r}; run loyalty db upgrade (it creates it)"
    if isinstance(cause, asyncpg.UndefinedTableError):
        return f"the schema on {address} is missing; run loyalty db upgrade"
    if isinstance(cause, (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
        return f"{address} refused the login: {_first_line(cause)}"
    if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
        return None  # a port this process wanted to listen on, not the database (see `bind_port`)
    if isinstance(cause, (OSError, asyncio.TimeoutError, asyncpg.CannotConnectNowError)):
        return f"cannot connect to {address}: {_reason(cause)}"
    if isinstance(cause, asyncpg.PostgresError):
        return f"{address}: {_first_line(cause)}"
    return None


def describe_redis(error: BaseException, url: str) -> str | None:
    import redis

    if not isinstance(error, redis.exceptions.RedisError):
        return None
    address = redis_address(url)
    if isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        cause = error.__cause__ or error.__context__
        reason = _reason(cause) if isinstance(cause, OSError) else _first_line(error)
        return f"cannot connect to {address}: {reason}"
    return f"{address}: {_first_line(error)}"


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, the driver error SQLAlchemy wraps, its causes and the members of a group."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend((getattr(current, "orig", None), current.__cause__, current.__context__))


# Socket errors that mean "the server cannot be reached", as opposed to a local fault (a file
# not found is an OSError too).
_NETWORK_ERRNOS = frozenset(
    (
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ENETUNREACH,
        errno.ENETDOWN,
    )
)


def _network(error: BaseException) -> bool:
    return isinstance(error, (ConnectionError, TimeoutError, socket.gaierror)) or (
        isinstance(error, OSError) and error.errno in _NETWORK_ERRNOS
    )


def unavailable_server(error: BaseException) -> str | None:
    """The server whose being out of reach (down, restarting, refusing connections, out of
    connections) caused `error`: "PostgreSQL" or "Redis"; None for any other error."""
    import asyncpg
    import redis
    from dramatiq.errors import BrokerConnectionError
    from sqlalchemy import exc

    errors = list(_chain(error))
    redis_down = (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        redis.exceptions.ReadOnlyError,
        BrokerConnectionError,
    )
    if any(isinstance(e, redis_down) for e in errors):
        return "Redis"
    postgres_down = (
        asyncpg.PostgresConnectionError,
        asyncpg.OperatorInterventionError,
        asyncpg.TooManyConnectionsError,
        exc.TimeoutError,  # no free connection in the pool within its timeout
    )
    for e in errors:
        # asyncpg raises the socket's own error when it cannot connect; redis-py, the only
        # other client of these processes, wraps its own (above).
        if isinstance(e, postgres_down) or _network(e):
            return "PostgreSQL"
        if isinstance(e, exc.DBAPIError) and e.connection_invalidated:
            return "PostgreSQL"
    return None


def describe(error: BaseException, settings: Settings) -> PreflightError | None:
    """`error` as a one-line PreflightError when it is a server or URL problem, else None.

    Exit codes: 2 for a bad URL (configuration), 3 for a server that cannot be used.
    """
    from sqlalchemy.exc import ArgumentError

    if isinstance(error, PreflightError):
        return error
    try:
        if isinstance(error, (ArgumentError, ValueError)):
            # URL parsers raise these; name the variable when one of the URLs is the cause.
            check_urls(settings)
            return None
        line = describe_redis(error, settings.redis_url) or describe_postgres(error, settings.database_url)
    except PreflightError as bad_url:
        return bad_url
    return PreflightError(line) if line else None


async def check_database(settings: Settings) -> None:
    """PostgreSQL answers, the database exists and its schema is at the code's migration heads."""
    from sqlalchemy import pool
    from sqlalchemy.exc import DBAPIError

    from db import migrate
    from db.engine import create_engine

    postgres_address(settings.database_url)
    engine = create_engine(settings.database_url, poolclass=pool.NullPool, connect_args={"timeout": CONNECT_TIMEOUT_S})
    try:
        try:
            current = await asyncio.wait_for(migrate.revisions_in(engine), CONNECT_TIMEOUT_S * 2)
        except (TimeoutError, OSError, DBAPIError) as error:
            raise PreflightError(describe_postgres(error, settings.database_url) or _first_line(error)) from None
    finally:
        await engine.dispose()
    wanted = set(migrate.heads())
    if not current:
        raise PreflightError(
            f"the schema on {postgres_address(settings.database_url)} is missing; run loyalty db upgrade"
        )
    if not migrate.up_to_date(current):
        raise PreflightError(
            f"the schema is behind the code (database at {', '.join(sorted(current))}, code at "
            f"{', '.join(sorted(wanted))}); run loyalty db upgrade"
        )


def check_redis(settings: Settings) -> None:
    import redis

    address = redis_address(settings.redis_url)
    client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S
    )
    try:
        client.ping()
    except redis.exceptions.RedisError as error:
        raise PreflightError(describe_redis(error, settings.redis_url) or f"cannot use {address}") from None
    finally:
        client.close()


def check_servers(settings: Settings) -> None:
    """Redis answers, PostgreSQL answers and its schema is at the code's heads: what every
    long-running command (worker, API, scheduler, dashboard) needs before it serves."""
    check_urls(settings)
    check_redis(settings)
    _run(check_database(settings))


def bind_port(port: int, bind: Callable[[], T], what: str = "port", hint: str = "") -> T:
    """`bind()`, which binds a listening socket to `port`; PreflightError (code 3) naming the
    port when another process has it, rather than the OSError (which reads as a connection error)."""
    try:
        return bind()
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise PreflightError(f"{what} {port} is already in use{hint}") from None
        raise PreflightError(f"cannot listen on {what} {port}: {error.strerror or _first_line(error)}{hint}") from None


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, for a server to listen on (as uvicorn and http.server bind)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def check_port_free(host: str, port: int, what: str = "port", hint: str = "") -> None:
    """The port can be listened on now (a child process binds it later)."""
    bind_port(port, lambda: listening_socket(host, port), what, hint).close()


def check_all(settings: Settings) -> Program:
    """Every check a worker needs before it takes messages; returns the validated program."""
    check_urls(settings)
    program = check_files(settings)
    check_redis(settings)
    _run(check_database(settings))
    return program


def _run(coro):
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from inside an event loop (a worker booted by async code, as tests do): run the
    # check on its own loop in a helper thread rather than fail on a nested asyncio.run.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
