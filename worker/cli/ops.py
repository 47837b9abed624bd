"""Operations: dead letters, queue and backlog stats, program reports, the dashboard."""

from __future__ import annotations

import asyncio
from typing import Optional

import typer

from worker.cli.common import emit_json, fail, run, settings


def register(app: typer.Typer) -> None:
    dlq_app = typer.Typer(help="Dead-lettered broker messages (retries exhausted).")
    app.add_typer(dlq_app, name="dlq")
    dlq_app.command("list", help="List dead-lettered messages.")(dlq_list)
    dlq_app.command("replay", help="Move dead-lettered messages back to their queue (--all, or one ID).")(dlq_replay)
    app.command(help="Queue depths (ready, in flight, delayed, dead), rejected, outbox backlog, lag.")(stats)


def _redis(s):
    import redis

    return redis.Redis.from_url(s.redis_url)


def dlq_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    from worker.services import dlq
    from worker.services.stats import queue_names

    s = settings()
    rows = dlq.list_dead(_redis(s), s.namespace, queue_names())
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['id']} {r['queue']} {r['actor']} event {r['event_id'] or '-'} dead {r['dead_at']}: {r['error'] or '-'}")
    typer.echo(f"{len(rows)} dead messages")


def dlq_replay(
    message: Optional[str] = typer.Argument(None, help="Dead message id (from `dlq list`)."),
    all_: bool = typer.Option(False, "--all", help="Replay every dead message."),
) -> None:
    from worker.broker import build_broker
    from worker.services import dlq
    from worker.services.stats import queue_names

    if bool(message) == all_:
        fail("give one message ID or --all")
    s = settings()
    broker = build_broker(s)
    replayed = dlq.replay(broker, _redis(s), s.namespace, queue_names(), only_id=message)
    if message and not replayed:
        fail(f"no dead message {message}", code=1)
    for r in replayed:
        typer.echo(f"replayed {r['id']} to {r['queue']} ({r['actor']})")
    typer.echo(f"{len(replayed)} messages replayed")


def stats(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    from worker.services import stats as stats_service

    s = settings()
    data = run(lambda engine: stats_service.collect(engine, _redis(s), s.namespace), s)
    if as_json:
        emit_json(data)
        return
    for queue, q in data["queues"].items():
        typer.echo(f"queue {queue}: ready {q['ready']}, in flight {q['in_flight']}, delayed {q['delayed']}, dead {q['dead']}")
    typer.echo(f"rejected open: {data['rejected_open']}")
    typer.echo("outbox: " + (", ".join(f"{k} {v}" for k, v in data["outbox"].items()) or "empty"))
    lag = data["lag"]
    if lag["events"]:
        typer.echo(f"lag over {lag['window_minutes']} min: {lag['events']} events, avg {lag['avg_seconds']:.1f}s, max {lag['max_seconds']:.1f}s")
