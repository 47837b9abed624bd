"""schema, program check/show/explain: the contract and the program as the worker sees them."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Optional

import typer

from worker.cli.common import emit_json, fail


def register(app: typer.Typer) -> None:
    app.command(help="Print the JSON Schema of the event contract.")(schema)
    program_app = typer.Typer(help="The loyalty program (earning rules, tiers, calendar).")
    app.add_typer(program_app, name="program")
    program_app.command("check", help="Validate a program file; exit 2 naming the bad key.")(program_check)
    program_app.command("show", help="Print the program in force (defaults filled in) as JSON.")(program_show)
    program_app.command(
        "explain",
        help="Dry run of one event: validate it as the worker does (exit 1 naming the field), then show every rule "
             "considered for the member as stored, with its points or why not; writes nothing.",
    )(program_explain)


def schema() -> None:
    from worker.domain.events import event_json_schema

    emit_json(event_json_schema())


def _load(file: Optional[str]):
    from worker.cli.common import settings
    from worker.domain.errors import ProgramError
    from worker.domain.program import load_program

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


def program_explain(
    file: str = typer.Argument(..., help="The event: a JSON file holding one object, or - for standard input."),
    member: Optional[str] = typer.Option(None, "--member", help="Whose stored state to use; default the event's member_id."),
    program_file: Optional[str] = typer.Option(
        None, "--program", help="Program file, old shape or rule language; default LOYALTY_PROGRAM_FILE or built in."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from sqlalchemy.exc import DBAPIError

    from worker.cli.common import program, run, settings
    from worker.domain import engine
    from worker.domain.errors import EngineError, InvalidEvent, ProgramError
    from worker.preflight import describe_postgres
    from worker.runtime import utc_now
    from worker.services.explain import Stored, stored_state
    from worker.services.intake import validate

    s = settings()
    prog = program(s)
    if program_file is not None:
        try:
            prog = engine.load_program_file(program_file, base=prog)
        except ProgramError as error:
            fail(str(error))
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as error:
        fail(f"{file}: {error.strerror}")
    try:
        event = validate(raw, prog, utc_now())
    except InvalidEvent as error:
        fail(error.reason, code=1)
    member_id = member or event.member_id
    notes = []
    try:
        stored = run(lambda db: stored_state(db, member_id, event.source, event.event_id), s)
    except (OSError, asyncio.TimeoutError, DBAPIError) as error:
        # Without --member the event alone says enough to explain it for a new member.
        problem = describe_postgres(error, s.database_url) if member is None else None
        if problem is None:
            raise
        stored = Stored(None, None)
        notes.append(f"the database could not be read ({problem}): explained for a new member")
    else:
        if stored.member is None:
            notes.append(f"no member {member_id!r} in the database: explained for a new member")
        if stored.processed is not None:
            notes.append(f"{event.source}/{event.event_id} was processed already ({stored.processed}): "
                         "the worker would not apply it again")
    try:
        explained = engine.explain_event(engine.rules_of(prog), event, member_id, stored.member, notes)
    except EngineError as error:
        fail(str(error))
    if as_json:
        emit_json(explained)
    else:
        typer.echo(engine.render_explanation(explained))
