"""`loyalty`: the command line. Parses arguments and prints; the work is in the services."""

from __future__ import annotations

import typer

from worker.cli import api, contract, core, demo, mall, members, ops, scheduler

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Loyalty engine: points ledger, tiers and rewards.",
)
core.register(app)
members.register(app)
demo.register(app)
contract.register(app)
scheduler.register(app)
ops.register(app)
mall.register(app)
api.register(app)


def main() -> None:
    # An unreachable or refusing server is an operating condition, not a bug: one line naming
    # the error, no traceback (tracebacks of connection code can show connection arguments).
    import redis
    from sqlalchemy.exc import DBAPIError

    try:
        app()
    except (OSError, redis.exceptions.RedisError, DBAPIError) as error:
        cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
        typer.echo(f"error: {type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}", err=True)
        raise SystemExit(3) from None
