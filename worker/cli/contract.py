"""schema, program check/show/explain/publish/versions: the contract and the program as the workers see them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from worker.cli.common import emit_json, fail, parse_time


def register(app: typer.Typer) -> None:
    app.command(help="Print the JSON Schema of the event contract.")(schema)
    program_app = typer.Typer(help="The loyalty program (earning rules, tiers, calendar) and its published versions.")
    app.add_typer(program_app, name="program")
    program_app.command("check", help="Validate a program file (either shape); exit 2 naming the bad key.")(
        program_check
    )
    program_app.command("show", help="Print the program in force (defaults filled in) as JSON.")(program_show)
    program_app.command(
        "explain",
        help="Dry run of one event: validate it as the worker does (exit 1 naming the field), then show every rule "
        "considered for the member as stored, with its points or why not; writes nothing.",
    )(program_explain)
    program_app.command(
        "publish",
        help="Validate a program file and store it as the version its `version` key names; workers "
        "switch to it within LOYALTY_PROGRAM_RELOAD_S seconds of its start.",
    )(program_publish)
    program_app.command("versions", help="List the published versions, newest first, and which is in force.")(
        program_versions
    )


def schema() -> None:
    from worker.domain.events import event_json_schema

    emit_json(event_json_schema())


def _load(file: str):
    from worker.domain.engine import load_program
    from worker.domain.errors import ProgramError

    try:
        return load_program(file)
    except ProgramError as error:
        fail(str(error))


def program_check(file: str = typer.Argument(..., help="Program file (TOML), old shape or rule language.")) -> None:
    from worker.domain.engine import has_rules, rules_of

    loaded = _load(file)
    tiers = ", ".join(f"{t.name} {t.threshold}+ x{t.multiplier}" for t in loaded.tiers)
    said = f"{file}: valid; program {loaded.name!r}, time zone {loaded.timezone}, tiers {tiers}"
    if has_rules(loaded):
        said += f"; rule language, {len(rules_of(loaded).rules)} rules"
    typer.echo(said)


def program_show(
    file: str | None = typer.Argument(
        None, help="Program file; default the published version in force, else LOYALTY_PROGRAM_FILE or built in."
    ),
) -> None:
    from worker.cli.common import program, settings
    from worker.domain.engine import has_rules, program_version, rules_of

    shown = _load(file) if file is not None else program(settings())
    out = shown.model_dump(mode="json")
    if has_rules(shown):  # a rule-language file or a published version: its rules too
        out["program_version"] = program_version(shown)
        out["rules"] = rules_of(shown).model_dump(mode="json", by_alias=True, exclude={"version", "name", "timezone"})
    emit_json(out)


def program_publish(
    file: str = typer.Argument(..., help='Program file (TOML) with a top-level `version` key, e.g. "2026-12-spring".'),
    effective_from: str | None = typer.Option(
        None, "--effective-from", help="When it takes effect (ISO 8601 with offset, not in the past); default: now."
    ),
    by: str | None = typer.Option(None, "--by", help="Who publishes it, as recorded; default: $USER."),
    as_json: bool = typer.Option(False, "--json", help="Print the stored version as JSON."),
) -> None:
    from worker.cli.common import run
    from worker.domain.errors import ProgramError, PublishRefused
    from worker.runtime import utc_now
    from worker.services.program_versions import publish

    start = parse_time(effective_from, "--effective-from") if effective_from is not None else None
    try:
        content = Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"{file}: no such program file")
    except (OSError, UnicodeDecodeError) as error:
        fail(f"{file}: cannot be read: {error}")
    publisher = by or os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"
    try:
        done = run(lambda engine: publish(engine, content, file, by=publisher, now=utc_now(), effective_from=start))
    except (ProgramError, PublishRefused) as error:
        fail(str(error))
    if as_json:
        emit_json(
            {
                "version": done.version,
                "name": done.name,
                "effective_from": done.effective_from.isoformat(),
                "published_at": done.published_at.isoformat(),
                "published_by": done.published_by,
                "created": done.created,
            }
        )
        return
    if done.created:
        typer.echo(
            f"published version {done.version!r} (program {done.name!r}), in force from "
            f"{done.effective_from.isoformat()}"
        )
    else:
        typer.echo(
            f"version {done.version!r} is already published with this content, in force from "
            f"{done.effective_from.isoformat()}; nothing changed"
        )


def program_versions(
    limit: int = typer.Option(50, help="Show at most this many (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from worker.cli.common import run
    from worker.runtime import utc_now
    from worker.services.program_versions import list_versions

    rows = run(lambda engine: list_versions(engine, utc_now(), limit))
    if as_json:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no published versions; the workers use LOYALTY_PROGRAM_FILE or the built-in program")
        return
    for r in rows:
        typer.echo(
            f"{r['version']:<24} {r['status']:<10}  from {r['effective_from']}  {r['name']:<16} "
            f"published {r['published_at']} by {r['published_by']}"
        )


def program_explain(
    file: str = typer.Argument(..., help="The event: a JSON file holding one object, or - for standard input."),
    member: str | None = typer.Option(
        None, "--member", help="Whose stored state to use; default the event's member_id."
    ),
    program_file: str | None = typer.Option(
        None,
        "--program",
        help="Program file, any file `program check` accepts, as if published; default the program in force.",
    ),
    now: str | None = typer.Option(
        None,
        "--now",
        help="Explain as at this time (ISO 8601 with offset): the versions published by then (the event is "
        "decided by the one in force at its occurred_at), the event checked against that clock; default now.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from sqlalchemy.exc import DBAPIError

    from worker.cli.common import program_file as program_from_file
    from worker.cli.common import run, settings, timeline
    from worker.domain import currencies, engine
    from worker.domain.errors import EngineError, InvalidEvent, ProgramError
    from worker.domain.program_timeline import timeline_of
    from worker.preflight import describe_postgres
    from worker.runtime import utc_now
    from worker.services.explain import Stored, stored_state
    from worker.services.intake import validate

    at = parse_time(now, "--now") if now is not None else utc_now()
    s = settings()
    if program_file is not None:
        try:
            programs = engine.load_program_as_published(program_file)
        except ProgramError as error:
            fail(str(error))
    else:
        try:
            # The version in force at the event's occurred_at, as the worker would take it.
            programs = timeline(s, at)
        except (TimeoutError, OSError, DBAPIError):
            programs = program_from_file(s)  # without the database: the program file's (a note below says so)
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as error:
        fail(f"{file}: {error.strerror}")
    try:
        event = validate(raw, programs, at)
    except InvalidEvent as error:
        fail(error.reason, code=1)
    prog = timeline_of(programs).at(event.occurred_at)
    member_id = member or event.member_id
    notes = []
    try:
        stored = run(lambda db: stored_state(db, member_id, event.source, event.event_id), s)
    except (TimeoutError, OSError, DBAPIError) as error:
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
            notes.append(
                f"{event.source}/{event.event_id} was processed already ({stored.processed}): "
                "the worker would not apply it again"
            )
    payload, conversion = None, None
    if event.type == "purchase":  # the rules read the amounts in the base currency, as the ledger's
        payload, converted = currencies.purchase_in_base(prog, event.payload.model_dump())
        conversion = converted.describe() if converted is not None else None
    try:
        explained = engine.explain_event(
            engine.rules_of(prog), event, member_id, stored.member, notes, payload=payload, conversion=conversion
        )
    except EngineError as error:
        fail(str(error))
    if as_json:
        emit_json(explained)
    else:
        typer.echo(engine.render_explanation(explained))
