"""export members|ledger: the tables as CSV or JSON Lines, streamed to a file or standard output."""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path

import typer

from worker.cli.common import fail, program, run, settings

FORMATS = ("csv", "jsonl")


def register(app: typer.Typer) -> None:
    export_app = typer.Typer(help="Export members or the ledger as CSV or JSON Lines (docs/operations.md).")
    app.add_typer(export_app, name="export")
    export_app.command(
        "members", help="Members: tier, balances, birthday, locale, labels, enrolled_at (erased: no personal data)."
    )(export_members)
    export_app.command("ledger", help="Ledger entries: kind, points, member, event, times, program version and rules.")(
        export_ledger
    )


FROM = typer.Option(None, "--from", help="First day (YYYY-MM-DD, program time zone), included.")
TO = typer.Option(None, "--to", help="Last day, included.")
FORMAT = typer.Option("csv", "--format", help="csv (default) or jsonl.")
# 128 + SIGPIPE: what the shell reports for a process killed by a broken pipe.
SIGPIPE_STATUS = 141
OUT = typer.Option(None, "--out", help="Write to this file (replaced when the export is complete); default stdout.")


def export_members(date_from: str | None = FROM, date_to: str | None = TO, fmt: str = FORMAT, out: str | None = OUT):
    _export("members", date_from, date_to, fmt, out)


def export_ledger(date_from: str | None = FROM, date_to: str | None = TO, fmt: str = FORMAT, out: str | None = OUT):
    _export("ledger", date_from, date_to, fmt, out)


def _export(kind: str, date_from: str | None, date_to: str | None, fmt: str, out: str | None) -> None:
    from worker.services import exports

    if fmt not in FORMATS:
        fail(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    start, end = _date(date_from, "--from"), _date(date_to, "--to")
    if start and end and end < start:
        fail("--to is before --from")
    s = settings()
    window = exports.bounds(program(s).timezone, start, end)
    if out is None:
        try:
            run(lambda engine: exports.export(engine, kind, fmt, sys.stdout, window), s)  # type: ignore[arg-type]
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (`loyalty export ledger | head`): stop quietly with the status
            # a process killed by SIGPIPE has, as other command-line tools do, so that a pipeline
            # under `set -o pipefail` still sees the export did not finish.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(SIGPIPE_STATUS) from None
        return
    target = Path(out)
    # Written beside the target and renamed onto it at the end: an export that fails half-way
    # never leaves a file that looks complete.
    partial = target.with_name(f".{target.name}.partial")
    try:
        handle = partial.open("w", encoding="utf-8", newline="")
    except OSError as error:
        fail(f"--out: {out}: {error.strerror}")
    try:
        with handle:
            written = run(lambda engine: _to_file(engine, kind, fmt, handle, window), s)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if sys.stderr.isatty():
        typer.echo(f"wrote {written} {'row' if written == 1 else 'rows'} to {out}", err=True)


def _date(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{name}: {value!r} is not a date (YYYY-MM-DD)")


async def _to_file(engine, kind, fmt, handle, window) -> int:
    from worker.services import exports

    if not sys.stderr.isatty():  # a progress bar only for a person watching
        return await exports.export(engine, kind, fmt, handle, window)
    total = await exports.count(engine, kind, window)
    with typer.progressbar(length=total, label=f"{kind}", file=sys.stderr) as bar:
        return await exports.export(engine, kind, fmt, handle, window, progress=bar.update)
