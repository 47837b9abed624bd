"""A worker that cannot work refuses to start, and every server or URL mistake is one line.

Real processes: `loyalty worker`, `dramatiq worker.main` and other commands, each pointed at
a broken program, an empty or old schema, or a server that is not there.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

import asyncpg
import pytest
import typer
from sqlalchemy.engine import make_url

from db import migrate
from db.engine import async_url
from tests.conftest import ADMIN_URL
from tests.e2e.test_cli import loyalty

# Every refusal must come within seconds, not after a connect timeout of a minute.
REFUSAL_S_MAX = 20


@pytest.fixture
def empty_database_url():
    """A database that exists but has no schema; dropped after the test."""
    name = f"loyalty_test_empty_{uuid.uuid4().hex[:8]}"
    parsed = make_url(async_url(ADMIN_URL))

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(
            host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password, database="postgres"
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield parsed.set(database=name).render_as_string(hide_password=False)
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def refused(env: dict, *args: str) -> subprocess.CompletedProcess:
    started = time.monotonic()
    done = loyalty(env, *args, timeout=REFUSAL_S_MAX)
    assert time.monotonic() - started < REFUSAL_S_MAX
    assert "Traceback" not in done.stderr
    return done


def test_worker_refuses_a_program_file_that_does_not_validate(env, tmp_path):
    program = tmp_path / "program.toml"
    program.write_text('nmae = "x"\n')
    done = refused({**env, "LOYALTY_PROGRAM_FILE": str(program)}, "worker", "--processes", "1", "--threads", "1")
    assert done.returncode == 2
    assert done.stderr == f"error: {program}: nmae: unknown key\n"


def test_worker_refuses_templates_that_do_not_validate(env, tmp_path):
    done = refused({**env, "LOYALTY_TEMPLATES_DIR": str(tmp_path)}, "worker", "--processes", "1")
    assert done.returncode == 2
    assert done.stderr == f"error: {tmp_path}/notifications.en.toml: no such template file\n"


def test_worker_and_drain_refuse_a_missing_schema(env, empty_database_url):
    for args in (["worker", "--processes", "1"], ["drain", "--timeout", "5"]):
        done = refused({**env, "LOYALTY_DATABASE_URL": empty_database_url}, *args)
        assert (done.returncode, done.stderr) == (
            3,
            "error: the schema on PostgreSQL at 127.0.0.1:5432 is missing; run loyalty db upgrade\n",
        ), args


def test_worker_refuses_a_schema_behind_the_code(env, empty_database_url):
    asyncio.run(migrate.upgrade(empty_database_url, "0001_core"))
    done = refused({**env, "LOYALTY_DATABASE_URL": empty_database_url}, "worker", "--processes", "1")
    assert done.returncode == 3
    assert done.stderr == (
        f"error: the schema is behind the code (database at 0001_core, code at {', '.join(migrate.heads())}); "
        "run loyalty db upgrade\n"
    )


def test_worker_refuses_unreachable_servers(env):
    postgres = refused({**env, "LOYALTY_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/loyalty"}, "worker")
    redis = refused({**env, "LOYALTY_REDIS_URL": "redis://127.0.0.1:1/0"}, "worker")
    assert (postgres.returncode, postgres.stderr) == (
        3,
        "error: cannot connect to PostgreSQL at 127.0.0.1:1: connection refused\n",
    )
    assert (redis.returncode, redis.stderr) == (
        3,
        "error: cannot connect to Redis at 127.0.0.1:1: connection refused\n",
    )


def test_dramatiq_worker_process_exits_at_boot_without_a_schema(env, empty_database_url):
    """Started without `loyalty worker` (e.g. `dramatiq worker.main`), the boot hook refuses."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "dramatiq", "worker.main", "--processes", "1", "--threads", "1"],
        env={**env, "LOYALTY_DATABASE_URL": empty_database_url, "LOYALTY_METRICS_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=REFUSAL_S_MAX,
    )
    assert time.monotonic() - started < REFUSAL_S_MAX
    assert done.returncode == 3
    assert '"reason": "the schema on PostgreSQL at 127.0.0.1:5432 is missing; run loyalty db upgrade"' in done.stderr
    assert "Worker process is ready for action" not in done.stderr


@pytest.mark.parametrize(
    ("variable", "value", "code", "message"),
    [
        (
            "LOYALTY_DATABASE_URL",
            "notaurl",
            2,
            "LOYALTY_DATABASE_URL is not a PostgreSQL URL (Could not parse SQLAlchemy URL from given URL string); "
            "expected postgresql://user:password@host:5432/database",
        ),
        (
            "LOYALTY_DATABASE_URL",
            "postgresql://postgres@nohost.invalid:5432/loyalty",
            3,
            "cannot connect to PostgreSQL at nohost.invalid:5432: host name not found",
        ),
        (
            "LOYALTY_DATABASE_URL",
            "postgresql://postgres@127.0.0.1:5432/loyalty_test_no_such_db",
            3,
            "PostgreSQL at 127.0.0.1:5432 has no database 'loyalty_test_no_such_db'; run loyalty db upgrade (it creates it)",
        ),
    ],
)
def test_database_problems_are_one_line_in_every_command(env, variable, value, code, message):
    for args in (["member", "show", "M1"], ["audit"], ["rejected", "list"], ["stats"]):
        done = refused({**env, variable: value}, *args)
        assert (done.returncode, done.stderr) == (code, f"error: {message}\n"), args


@pytest.mark.parametrize(
    ("value", "code", "message"),
    [
        (
            "127.0.0.1:6379",
            2,
            "LOYALTY_REDIS_URL is not a Redis URL (it must start with redis://, rediss:// or "
            "unix://); expected redis://host:6379/0",
        ),
        ("redis://nohost.invalid:6379/0", 3, "cannot connect to Redis at nohost.invalid:6379: host name not found"),
        ("redis://127.0.0.1:1/0", 3, "cannot connect to Redis at 127.0.0.1:1: connection refused"),
    ],
)
def test_redis_problems_are_one_line(env, tmp_path, value, code, message):
    events = tmp_path / "e.jsonl"
    events.write_text(
        '{"event_id": "s-1", "type": "signup", "source": "app", "member_id": "M1", '
        '"occurred_at": "2026-11-03T10:00:00+08:00", "payload": {}}\n'
    )
    for args in (["dlq", "list"], ["publish", str(events)]):
        done = refused({**env, "LOYALTY_REDIS_URL": value}, *args)
        assert (done.returncode, done.stderr) == (code, f"error: {message}\n"), args


def test_debug_shows_the_traceback(env):
    done = loyalty({**env, "LOYALTY_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"}, "--debug", "audit")
    assert done.returncode == 1
    assert "Traceback" in done.stderr or "ConnectionRefusedError" in done.stderr


def test_version(env):
    from importlib.metadata import version

    done = loyalty(env, "--version")
    assert (done.returncode, done.stdout) == (0, f"loyalty {version('loyalty-engine')}\n")


def test_every_command_and_option_has_help_text():
    from worker.cli import app

    root = typer.main.get_command(app)
    missing = []

    def walk(command, path, ctx):
        if not command.help:
            missing.append(" ".join(path))
        missing.extend(f"{' '.join(path)} {p.name}" for p in command.params if not getattr(p, "help", None))
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                walk(sub, [*path, name], type(ctx)(sub, parent=ctx, info_name=name))

    walk(root, ["loyalty"], root.make_context("loyalty", [], resilient_parsing=True))
    assert missing == []


def test_scheduler_refuses_a_bad_program_file_and_an_unreachable_redis(env, tmp_path):
    program = tmp_path / "program.toml"
    program.write_text('nmae = "x"\n')

    bad_file = refused({**env, "LOYALTY_PROGRAM_FILE": str(program)}, "scheduler")
    no_redis = refused({**env, "LOYALTY_REDIS_URL": "redis://127.0.0.1:1/0"}, "scheduler")

    assert (bad_file.returncode, bad_file.stderr) == (2, f"error: {program}: nmae: unknown key\n")
    assert (no_redis.returncode, no_redis.stderr) == (
        3,
        "error: cannot connect to Redis at 127.0.0.1:1: connection refused\n",
    )


def _listening(port: int | None = None):
    """A socket listening on 127.0.0.1, as another server holding the port would be."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", port or 0))
    sock.listen()
    return sock


def _free_port() -> int:
    with _listening() as sock:
        return sock.getsockname()[1]


def _servers(env: dict) -> list[tuple[dict, list[str]]]:
    """The long-running commands besides the worker, each on a free port of its own."""
    dashboard_env = {**env, "LOYALTY_DASHBOARD_PASSWORD": "pw"}
    return [
        (env, ["api", "--port", str(_free_port())]),
        (dashboard_env, ["dashboard", "--port", str(_free_port())]),
        (env, ["scheduler"]),
    ]


def test_api_dashboard_and_scheduler_refuse_a_missing_schema(env, empty_database_url):
    for command_env, args in _servers({**env, "LOYALTY_DATABASE_URL": empty_database_url}):
        done = refused(command_env, *args)
        assert (done.returncode, done.stderr) == (
            3,
            "error: the schema on PostgreSQL at 127.0.0.1:5432 is missing; run loyalty db upgrade\n",
        ), args


def test_api_dashboard_and_scheduler_refuse_a_schema_behind_the_code(env, empty_database_url):
    asyncio.run(migrate.upgrade(empty_database_url, "0001_core"))
    for command_env, args in _servers({**env, "LOYALTY_DATABASE_URL": empty_database_url}):
        done = refused(command_env, *args)
        assert (done.returncode, done.stderr) == (
            3,
            f"error: the schema is behind the code (database at 0001_core, code at {', '.join(migrate.heads())}); "
            "run loyalty db upgrade\n",
        ), args


def test_api_dashboard_and_scheduler_refuse_unreachable_servers(env):
    for command_env, args in _servers({**env, "LOYALTY_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/loyalty"}):
        done = refused(command_env, *args)
        assert (done.returncode, done.stderr) == (
            3,
            "error: cannot connect to PostgreSQL at 127.0.0.1:1: connection refused\n",
        ), args
    for command_env, args in _servers({**env, "LOYALTY_REDIS_URL": "redis://127.0.0.1:1/0"}):
        done = refused(command_env, *args)
        assert (done.returncode, done.stderr) == (
            3,
            "error: cannot connect to Redis at 127.0.0.1:1: connection refused\n",
        ), args


def test_api_and_dashboard_refuse_a_busy_port(env, db):
    with _listening() as taken:
        port = taken.getsockname()[1]
        api = refused(env, "api", "--host", "127.0.0.1", "--port", str(port))
        dashboard = refused({**env, "LOYALTY_DASHBOARD_PASSWORD": "pw"}, "dashboard", "--port", str(port))

    assert (api.returncode, api.stderr) == (3, f"error: port {port} is already in use\n")
    assert (dashboard.returncode, dashboard.stderr) == (3, f"error: port {port} is already in use\n")


def test_worker_and_scheduler_refuse_a_busy_metrics_port_and_leave_no_metrics_folder(env, db, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    with _listening() as taken:
        port = taken.getsockname()[1]
        metrics = {**env, "LOYALTY_METRICS_PORT": str(port), "LOYALTY_METRICS_HOST": "127.0.0.1", "TMPDIR": str(temp)}
        worker = refused(metrics, "worker", "--processes", "1", "--threads", "1")
        scheduler = refused(metrics, "scheduler")

    line = (
        f"error: metrics port {port} is already in use; "
        "set LOYALTY_METRICS_PORT to a free port, or to 0 to run without metrics\n"
    )
    assert (worker.returncode, worker.stderr) == (3, line)
    assert (scheduler.returncode, scheduler.stderr) == (3, line)
    assert list(temp.iterdir()) == []
