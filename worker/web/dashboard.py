"""`loyalty dashboard`: a small WSGI app behind HTTP basic auth.

Pages: `/` (queues, dead letters, rejected events, outbox, lag, scheduler runs, throughput),
`/dead` (dead-lettered messages), `/stats.json`. The dramatiq_dashboard package pins
dramatiq < 2 and redis < 5, so the queue view is part of this page instead.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from html import escape
from typing import Any

import redis
import structlog
from sqlalchemy.pool import NullPool

from db.engine import create_engine
from worker.actors import queue_names
from worker.config import Settings
from worker.domain.units import human_duration
from worker.preflight import describe, unavailable_server
from worker.services import dlq, stats
from worker.web import svg

log = structlog.get_logger(__name__)

REFRESH_S = 10
STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem auto; max-width: 1180px;
       color: #1f2937; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin: 0 0 .2rem; } h2 { font-size: 1.05rem; margin: 0 0 .6rem; }
nav a { margin-right: 1rem; } .sub { color: #6b7280; margin: 0 0 1rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 1rem; }
section { border: 1px solid #e5e7eb; border-radius: 8px; padding: 1rem; overflow-x: auto; }
svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #f0f0f0; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #b91c1c; font-weight: 600; } .empty { color: #9ca3af; }
.banner { background: #fef2f2; border: 1px solid #fca5a5; color: #991b1b; border-radius: 8px;
          padding: .8rem 1rem; margin: 1rem 0; }
"""
# A page waits at most this long for PostgreSQL or Redis before it says "unavailable".
SERVER_TIMEOUT_S = 5

Start = Callable[[str, list[tuple[str, str]]], Any]
HTML, JSON = "text/html; charset=utf-8", "application/json"


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:
    if not rows:
        return '<p class="empty">none</p>'

    def cell(tag: str, i: int, value: Any) -> str:
        classes = " ".join(c for c in ("n" if i in numeric else "", "bad" if _alarming(headers[i], value) else "") if c)
        attr = f' class="{classes}"' if classes else ""
        return f"<{tag}{attr}>{escape(str(value))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _alarming(header: str, value: Any) -> bool:
    """Counts that need someone's attention when above zero."""
    return header in ("dead", "count") and isinstance(value, int) and value > 0


# The scheduler's columns (scheduler_firings) as headings, in the order shown; a column not
# named here is shown after them with its underscores as spaces.
_RUN_HEADINGS = {
    "job": "job",
    "scheduled_for": "scheduled for",
    "planned_at": "planned at",
    "finished_at": "finished at",
    "chunks_planned": "chunks planned",
    "chunks_done": "chunks done",
    "members": "members",
    "points": "points",
    "note": "note",
}


def _runs_table(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return '<p class="empty">none</p>'
    columns = [c for c in _RUN_HEADINGS if c in runs[0]] + [c for c in runs[0] if c not in _RUN_HEADINGS]
    numeric = {i for i, c in enumerate(columns) if isinstance(runs[0][c], int)}
    return _table(
        [_RUN_HEADINGS.get(c, c.replace("_", " ")) for c in columns],
        [[_cell(r[c]) for c in columns] for r in runs],
        numeric,
    )


def _cell(value: Any) -> Any:
    """None as a dash; a time (ISO 8601 with offset) as UTC to the second."""
    if value is None:
        return "-"
    if isinstance(value, str) and value[:1].isdigit():
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            return value
        if at.tzinfo is not None:
            return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return value


def _page(title: str, body: str) -> bytes:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<meta http-equiv="refresh" content="{REFRESH_S}"><style>{STYLE}</style></head><body>
<h1>{escape(title)}</h1><nav><a href="/">Overview</a><a href="/dead">Dead letters</a>
<a href="/stats.json">stats.json</a></nav>{body}</body></html>""".encode()


_seconds = human_duration


def overview(data: dict[str, Any], namespace: str) -> bytes:
    queues = [[q, s["ready"], s["in_flight"], s["delayed"], s["dead"]] for q, s in data["queues"].items()]
    outbox = [[status, n] for status, n in data["outbox"].items()]
    lag = data["lag"]
    runs = data["scheduler_runs"]
    if runs is None:
        runs_html = '<p class="empty">no scheduler_firings table in this database</p>'
    else:
        runs_html = _runs_table(runs)
    throughput = [(row["minute"][11:16], row["events"]) for row in data["throughput"]]
    workers = data.get("workers", [])
    if workers:
        workers_html = _table(
            ["host", "pid", "last heartbeat", "age"],
            [[w["host"], w["pid"], _cell(w["last_heartbeat_at"]), _seconds(w["age_seconds"])] for w in workers],
            {1},
        )
    else:
        workers_html = '<p class="empty">no worker has sent a heartbeat: is `loyalty worker` running?</p>'

    body = f"""
<p class="sub">namespace {escape(namespace)} · refreshes every {REFRESH_S} s</p>
<div class="grid">
<section><h2>Queues</h2>{_table(["queue", "ready", "in flight", "delayed", "dead"], queues, {1, 2, 3, 4})}</section>
<section><h2>Rejected and outbox</h2>
{_table(["what", "count"], [["rejected open", data["rejected_open"]]], {1})}
{_table(["outbox status", "notifications"], outbox, {1})}
<p>Oldest pending notification: {_seconds(data["outbox_oldest_pending_seconds"])}</p></section>
<section><h2>Throughput: events per minute, last {lag["window_minutes"]} min</h2>{svg.columns(throughput)}
<p>{lag["events"]} events · lag (occurred → committed) avg {_seconds(lag["avg_seconds"])},
max {_seconds(lag["max_seconds"])}</p></section>
<section><h2>Workers: last heartbeat</h2>{workers_html}</section>
<section><h2>Last scheduler runs</h2>{runs_html}</section>
</div>"""
    return _page("Loyalty operations", body)


def dead_page(rows: list[dict]) -> bytes:
    table = _table(
        ["id", "queue", "actor", "event", "dead at"],
        [[r["id"], r["queue"], r["actor"], r["event_id"] or "-", r["dead_at"]] for r in rows],
    )
    return _page(
        "Dead letters",
        f'<p class="sub">Replay with <code>loyalty dlq replay ID</code> or '
        f"<code>--all</code> once the cause is fixed.</p><section>{table}</section>",
    )


def unavailable_page(problem: str) -> bytes:
    return _page(
        "Loyalty operations",
        f'<div class="banner" role="alert"><strong>Unavailable:</strong> {escape(problem)}. '
        f"This page tries again every {REFRESH_S} s.</div>",
    )


def internal_page(reference: str) -> bytes:
    return _page(
        "Loyalty operations",
        f'<div class="banner" role="alert"><strong>Internal error:</strong> the dashboard\'s log has it '
        f"under reference {escape(reference)}.</div>",
    )


class Dashboard:
    """WSGI application. Every request reads fresh state; nothing is cached.

    PostgreSQL or Redis out of reach: 503 with an "Unavailable" banner naming the server (the
    page keeps refreshing, so it recovers by itself). Anything else: 500 with a reference that
    the log line carrying the traceback has too. Never wsgiref's plain-text server error.
    """

    def __init__(self, settings: Settings, password: str):
        if not password:
            raise ValueError("the dashboard needs a password")
        self.settings = settings
        self.password = password.encode()
        self.redis = redis.Redis.from_url(
            settings.redis_url, socket_timeout=SERVER_TIMEOUT_S, socket_connect_timeout=SERVER_TIMEOUT_S
        )

    def authorized(self, environ: dict) -> bool:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Basic "):
            return False
        try:
            _, _, given = base64.b64decode(header[6:], validate=True).partition(b":")
        except ValueError:
            return False
        return hmac.compare_digest(given, self.password)

    async def _collect(self) -> dict[str, Any]:
        engine = create_engine(
            self.settings.database_url, poolclass=NullPool, connect_args={"timeout": SERVER_TIMEOUT_S}
        )
        try:
            return await stats.collect(engine, self.redis, self.settings.namespace, queue_names())
        finally:
            await engine.dispose()

    def __call__(self, environ: dict, start: Start) -> Iterable[bytes]:
        if not self.authorized(environ):
            start(
                "401 Unauthorized",
                [("WWW-Authenticate", 'Basic realm="loyalty", charset="UTF-8"'), ("Content-Type", "text/plain")],
            )
            return [b"authentication required\n"]
        path = environ.get("PATH_INFO", "/")
        if path not in ("/", "/dead", "/stats.json"):
            start("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        try:
            status, body, kind = "200 OK", self._render(path), JSON if path == "/stats.json" else HTML
        except Exception as error:  # every failure is a page (or JSON) saying what happened
            status, body, kind = self._failure(path, error)
        start(status, [("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
        return [body]

    def _render(self, path: str) -> bytes:
        if path == "/":
            return overview(asyncio.run(self._collect()), self.settings.namespace)
        if path == "/dead":
            return dead_page(dlq.list_dead(self.redis, self.settings.namespace, queue_names()))
        return json.dumps(asyncio.run(self._collect()), default=str).encode()

    def _failure(self, path: str, error: Exception) -> tuple[str, bytes, str]:
        server = unavailable_server(error)
        if server is not None:
            problem = describe(error, self.settings)
            detail = str(problem) if problem is not None else f"{server} is unavailable"
            log.warning("dashboard_unavailable", server=server, reason=detail, path=path)
            status, code, page = "503 Service Unavailable", "unavailable", unavailable_page(detail)
        else:
            reference = uuid.uuid4().hex[:12]
            log.error("dashboard_request_failed", reference=reference, path=path, exc_info=error)
            detail = f"unexpected error; the dashboard's log has it under reference {reference}"
            status, code, page = "500 Internal Server Error", "internal", internal_page(reference)
        if path == "/stats.json":
            return status, json.dumps({"error": code, "detail": detail}).encode(), JSON
        return status, page, HTML


def bind(settings: Settings, password: str, host: str, port: int):
    """The dashboard's server, bound to host:port (OSError when it cannot be); `serve` runs it."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, fmt, *args):
            log.info("dashboard_request", request=self.requestline, status=args[1] if len(args) > 1 else None)

    server = Server((host, port), Quiet, bind_and_activate=False)
    try:
        server.server_bind()
        server.server_activate()
    except OSError:
        server.server_close()
        raise
    server.set_app(Dashboard(settings, password))
    return server


def serve(server) -> None:
    log.info("dashboard_listening", host=server.server_address[0], port=server.server_port)
    server.serve_forever()
