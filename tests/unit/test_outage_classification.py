"""Which errors mean "a server is out of reach" (503 unavailable) and which are faults (500)."""

from __future__ import annotations

import errno
import socket

import asyncpg
import pytest
import redis

from worker.preflight import unavailable_server


def _raised_from(error: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise error from inner
    except BaseException as outer:
        return outer


@pytest.mark.parametrize(
    ("error", "server"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"), "PostgreSQL"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "PostgreSQL"),
        (socket.gaierror(-2, "Name or service not known"), "PostgreSQL"),
        (asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"), "PostgreSQL"),
        (asyncpg.AdminShutdownError("terminating connection due to administrator command"), "PostgreSQL"),
        (asyncpg.CannotConnectNowError("the database system is starting up"), "PostgreSQL"),
        (redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379."), "Redis"),
        (redis.exceptions.TimeoutError("Timeout reading from socket"), "Redis"),
        (redis.exceptions.ReadOnlyError("You can't write against a read only replica."), "Redis"),
        # The driver's error two levels down, as SQLAlchemy and anyio wrap it.
        (_raised_from(RuntimeError("wrapped"), ConnectionResetError(errno.ECONNRESET, "reset")), "PostgreSQL"),
        (ExceptionGroup("task group", [ValueError("x"), redis.exceptions.ConnectionError("down")]), "Redis"),
        # Faults of the process, not of a server.
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), None),
        (ValueError("invalid literal for int() with base 10: 'many'"), None),
        (asyncpg.UniqueViolationError("duplicate key value"), None),
        (redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), None),
    ],
)
def test_unavailable_server(error, server):
    assert unavailable_server(error) == server
