"""`loyalty`: the command line. Parses arguments and prints; the work is in the services."""

from __future__ import annotations

import os

import typer

from worker.cli import api, contract, core, demo, exports, imports, mall, members, ops, scheduler

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Loyalty engine: points ledger, tiers and rewards.",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"loyalty {version('loyalty-engine')}")
        except PackageNotFoundError:
            typer.echo("loyalty (version unknown: not installed)")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: bool | None = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of a server or URL error."),
) -> None:
    """Loyalty engine: points ledger, tiers and rewards."""
    if debug:
        os.environ["LOYALTY_DEBUG"] = "1"


core.register(app)
members.register(app)
demo.register(app)
contract.register(app)
scheduler.register(app)
ops.register(app)
mall.register(app)
api.register(app)
exports.register(app)
imports.register(app)


def main() -> None:
    # An unreachable or refusing server, a bad URL or a missing schema is an operating
    # condition, not a bug: one line naming the server and the cause, no traceback
    # (tracebacks of connection code can show connection arguments). --debug re-raises.
    from worker.config import Settings
    from worker.preflight import describe

    try:
        app()
    except Exception as error:
        if os.environ.get("LOYALTY_DEBUG"):
            raise
        try:
            problem = describe(error, Settings.from_env())
        except ValueError:
            problem = None
        if problem is None:
            raise
        typer.echo(f"error: {problem}", err=True)
        raise SystemExit(problem.code) from None
