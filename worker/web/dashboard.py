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
from collections.abc import Callable, Iterable
from html import escape
from typing import Any

import redis
import structlog
from sqlalchemy.pool import NullPool

from db.engine import create_engine
from worker.actors import queue_names
from worker.config import Settings
from worker.domain.units import human_duration
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
"""

Start = Callable[[str, list[tuple[str, str]]], Any]


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
        headers = list(runs[0]) if runs else ["run"]
        runs_html = _table(headers, [[r[h] for h in headers] for r in runs])
    throughput = [(row["minute"][11:16], row["events"]) for row in data["throughput"]]
    workers = data.get("workers", [])
    if workers:
        workers_html = _table(
            ["worker", "last heartbeat", "age"],
            [[w["worker_id"], w["last_heartbeat_at"], _seconds(w["age_seconds"])] for w in workers],
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


class Dashboard:
    """WSGI application. Every request reads fresh state; nothing is cached."""

    def __init__(self, settings: Settings, password: str):
        if not password:
            raise ValueError("the dashboard needs a password")
        self.settings = settings
        self.password = password.encode()
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=5)

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
        engine = create_engine(self.settings.database_url, poolclass=NullPool)
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
        if path == "/":
            body, kind = overview(asyncio.run(self._collect()), self.settings.namespace), "text/html; charset=utf-8"
        elif path == "/dead":
            body = dead_page(dlq.list_dead(self.redis, self.settings.namespace, queue_names()))
            kind = "text/html; charset=utf-8"
        elif path == "/stats.json":
            body, kind = json.dumps(asyncio.run(self._collect()), default=str).encode(), "application/json"
        else:
            start("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        start("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
        return [body]


def serve(settings: Settings, password: str, host: str, port: int) -> None:
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, fmt, *args):
            log.info("dashboard_request", request=self.requestline, status=args[1] if len(args) > 1 else None)

    server = make_server(host, port, Dashboard(settings, password), server_class=Server, handler_class=Quiet)
    log.info("dashboard_listening", host=host, port=server.server_port)
    server.serve_forever()
