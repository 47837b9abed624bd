"""Per-process resources (engine, program in force, clock), created when a worker boots.

Nothing here runs at import time: the RuntimeMiddleware builds the runtime in
`before_worker_boot` and disposes of it in `before_worker_shutdown`. The program in force
is re-read from the published versions by a task on the process's event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dramatiq
import structlog
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.brokers.stub import StubBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine
from worker.config import Settings
from worker.domain import messages
from worker.domain.engine import load_program
from worker.domain.events import safe_text
from worker.domain.program import Program
from worker.domain.program_timeline import ProgramTimeline
from worker.services.group_commit import GroupCommit
from worker.services.program_versions import ProgramInForce, StoredVersions

log = structlog.get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    programs: ProgramInForce
    engine: AsyncEngine
    clock: Callable[[], datetime] = field(default=utc_now)
    # The task re-reading the program versions (None: the program is fixed).
    reloader: asyncio.Task | None = None
    # Commits the process's one-event messages in groups (None: a transaction per event).
    group: GroupCommit | None = None
    # The broker this process consumes from: what an actor that moves a message sends on.
    broker: dramatiq.Broker | None = None

    @property
    def program(self) -> Program:
        """The program in force now. A message reads it once and keeps it to its end."""
        return self.programs.program

    @property
    def timeline(self) -> ProgramTimeline:
        """Every version by its start: an event is decided by the one in force at its
        occurred_at. A message reads it once and keeps it to its end."""
        return self.programs.timeline


_current: Runtime | None = None


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("no worker runtime: the RuntimeMiddleware has not booted in this process")
    return _current


def install(runtime: Runtime | None) -> None:
    global _current
    _current = runtime


class RuntimeMiddleware(dramatiq.Middleware):
    """Builds the process's engine as the worker boots (before its threads take messages),
    sized to its worker threads, and the program in force. Listed after AsyncIO, whose event
    loop runs the program reloads and is needed at shutdown.

    A `program` given here is fixed (the demo, tests); otherwise the published version in
    force wins over LOYALTY_PROGRAM_FILE (or the built-in default) and is re-read every
    `settings.program_reload_s` seconds.
    """

    def __init__(self, settings: Settings, program: Program | None = None):
        self.settings = settings
        self.program = program

    def before_worker_boot(self, broker, worker) -> None:
        if self.program is None and not isinstance(broker, StubBroker):
            _preflight_or_exit(self.settings)
        fallback = self.program or load_program(self.settings.program_file)
        messages.install_catalog(messages.load_catalog(self.settings.templates_dir))
        # No pre-ping: it costs a round trip per transaction. A connection broken by a database
        # restart fails its message, the pool discards it, and the actor's retries ride it out.
        engine = create_engine(
            self.settings.database_url, pool_size=worker.worker_threads, max_overflow=2, pre_ping=False
        )
        store = StoredVersions(engine) if self.program is None else None
        runtime = Runtime(
            self.settings, ProgramInForce(fallback, store, self.settings.program_reload_s), engine, broker=broker
        )
        loop_thread = get_event_loop_thread()
        if loop_thread is not None:
            # Before the first message: a restarted worker starts with the version in force.
            runtime.reloader = loop_thread.run_coroutine(runtime.programs.start(runtime.clock))
            if self.settings.group_max > 1:
                # Built on the loop it serves; no more groups at once than the pool can hold.
                runtime.group = loop_thread.run_coroutine(_group_commit(self.settings, engine, worker.worker_threads))
        install(runtime)
        log.info(
            "worker_runtime_ready",
            program=runtime.program.name,
            version=runtime.programs.version_label,
            threads=worker.worker_threads,
        )

    def before_worker_shutdown(self, broker, worker) -> None:
        runtime, loop_thread = _current, get_event_loop_thread()
        if runtime is not None and loop_thread is not None:
            loop_thread.run_coroutine(_stop(runtime))
        install(None)


async def _group_commit(settings: Settings, engine: AsyncEngine, threads: int) -> GroupCommit:
    return GroupCommit(
        engine,
        group_max=settings.group_max,
        wait_ms=settings.group_wait_ms,
        concurrency=max(1, min(settings.group_concurrency, threads)),
        strict=settings.strict_checks,
    )


async def _stop(runtime: Runtime) -> None:
    if runtime.group is not None:
        await runtime.group.stop()
    if runtime.reloader is not None:
        runtime.reloader.cancel()
        with suppress(asyncio.CancelledError):
            await runtime.reloader
    await runtime.engine.dispose()


def programs_in_thread(settings: Settings, fallback: Program) -> ProgramInForce:
    """The program in force for a process without an event loop of its own (the scheduler):
    a daemon thread runs one, with a one-connection engine, re-reading the published versions.
    Returns after the first read (or its timeout)."""
    engine = create_engine(settings.database_url, pool_size=1, max_overflow=0)
    programs = ProgramInForce(fallback, StoredVersions(engine), settings.program_reload_s)
    started = threading.Event()

    async def follow() -> None:
        try:
            task = await programs.start(utc_now)
        finally:
            started.set()
        if task is not None:
            await task

    threading.Thread(target=asyncio.run, args=(follow(),), name="program-versions", daemon=True).start()
    started.wait()
    return programs


def _preflight_or_exit(settings: Settings) -> None:
    """A worker that cannot work refuses to start: one log line with the cause, then exit 3.

    dramatiq logs any Exception from a boot hook and boots anyway, which left a worker taking
    messages it could only fail; SystemExit is let through. The event-loop thread the AsyncIO
    middleware started is not a daemon and would keep the process alive, so it is stopped
    first; dramatiq's main process then stops the other workers and exits with this code.
    """
    from worker import preflight

    try:
        preflight.check_all(settings)
    except preflight.PreflightError as error:
        log.critical("worker_cannot_start", reason=str(error))
        loop_thread = get_event_loop_thread()
        if loop_thread is not None:
            loop_thread.stop()
        raise SystemExit(error.code) from None


class LogContextMiddleware(dramatiq.Middleware):
    """Binds message_id, actor, event_id and member_id to every log line of a message."""

    def before_process_message(self, broker, message) -> None:
        structlog.contextvars.clear_contextvars()
        fields: dict[str, Any] = {"message_id": message.message_id, "actor": message.actor_name}
        first = message.args[0] if message.args else None
        if isinstance(first, dict):
            for key in ("event_id", "member_id"):
                if isinstance(first.get(key), str):
                    fields[key] = safe_text(first[key], 128)
        structlog.contextvars.bind_contextvars(**fields)

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        structlog.contextvars.clear_contextvars()

    after_skip_message = after_process_message


async def _in_context(context: contextvars.Context, awaitable: Awaitable) -> Any:
    for var, value in context.items():
        var.set(value)
    return await awaitable


def on_event_loop(fn: Callable[..., Awaitable]) -> Callable[..., Any]:
    """Run an async actor on the process's event loop, carrying the worker thread's context
    (log bindings, current message) into the task, which dramatiq's own bridge does not."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        loop_thread = get_event_loop_thread()
        if loop_thread is None:
            return asyncio.run(fn(*args, **kwargs))
        return loop_thread.run_coroutine(_in_context(contextvars.copy_context(), fn(*args, **kwargs)))

    return run
