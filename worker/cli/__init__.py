"""`loyalty`: the command line. Parses arguments and prints; the work is in the services."""

from __future__ import annotations

import typer

from worker.cli import contract, core, demo, mall, members, ops, scheduler

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


def main() -> None:
    app()
