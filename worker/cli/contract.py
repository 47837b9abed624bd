"""schema, program check/show: the contract and the program as the worker sees them."""

from __future__ import annotations

from typing import Optional

import typer

from worker.cli.common import emit_json, fail


def register(app: typer.Typer) -> None:
    app.command(help="Print the JSON Schema of the event contract.")(schema)
    program_app = typer.Typer(help="The loyalty program (earning rules, tiers, calendar).")
    app.add_typer(program_app, name="program")
    program_app.command("check", help="Validate a program file; exit 2 naming the bad key.")(program_check)
    program_app.command("show", help="Print the program in force (defaults filled in) as JSON.")(program_show)


def schema() -> None:
    from worker.domain.events import event_json_schema

    emit_json(event_json_schema())


def _load(file: Optional[str]):
    from worker.cli.common import settings
    from worker.domain.errors import ProgramError
    from worker.domain.engine import load_program

    path = file if file is not None else settings().program_file
    try:
        return load_program(path)
    except ProgramError as error:
        fail(str(error))


def program_check(file: str = typer.Argument(..., help="Program file (TOML).")) -> None:
    loaded = _load(file)
    tiers = ", ".join(f"{t.name} {t.threshold}+ x{t.multiplier}" for t in loaded.tiers)
    typer.echo(f"{file}: valid; program {loaded.name!r}, time zone {loaded.timezone}, tiers {tiers}")


def program_show(file: Optional[str] = typer.Argument(None, help="Program file; default LOYALTY_PROGRAM_FILE or built in.")) -> None:
    emit_json(_load(file).model_dump(mode="json"))
