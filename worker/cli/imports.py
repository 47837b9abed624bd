"""`loyalty import members|balances FILE.csv`: bring an existing program's members and
balances in (docs/operations.md, "Moving an existing program in")."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from worker.cli.common import emit_json, fail, program, run, settings


def register(app: typer.Typer) -> None:
    import_app = typer.Typer(help="Import members and opening balances from another loyalty program (CSV).")
    app.add_typer(import_app, name="import")
    import_app.command("members", help="Import members: identities, profile, labels, tier, points totals.")(members)
    import_app.command("balances", help="Import opening balances: one lot per row, with its own expiry.")(balances)


_FILE = typer.Argument(..., help="CSV file with a header row (docs/operations.md).")
_DRY_RUN = typer.Option(False, "--dry-run", help="Check every row against the database; write nothing.")
_JSON = typer.Option(False, "--json", help="Machine-readable output.")


def members(file: str = _FILE, dry_run: bool = _DRY_RUN, as_json: bool = _JSON) -> None:
    """Exit 0: every row imported or unchanged; 1: some row was bad or a conflict (the
    others went in); 2: the file cannot be read."""
    _import("members", file, dry_run, as_json)


def balances(file: str = _FILE, dry_run: bool = _DRY_RUN, as_json: bool = _JSON) -> None:
    """Exit codes as `import members`."""
    _import("balances", file, dry_run, as_json)


def _import(what: str, file: str, dry_run: bool, as_json: bool) -> None:
    from worker.runtime import utc_now
    from worker.services import imports

    s = settings()
    prog = program(s)
    path = Path(file)
    try:
        handle = path.open("rb")
        size = os.fstat(handle.fileno()).st_size
    except OSError as error:
        fail(f"{file}: {error.strerror}")
    problems: list[dict] = []
    shown = sys.stdout.isatty() and not as_json
    bar = typer.progressbar(length=size, label=f"importing {what}", file=sys.stdout) if shown else None

    def on_problem(problem) -> None:
        if as_json:
            problems.append(problem.as_json())
        elif bar is not None:
            # Above the bar, which is drawn again on its next update.
            typer.echo(f"\r\x1b[K{problem}", err=True)
        else:
            typer.echo(str(problem), err=True)

    done = [0]

    def on_progress(read: int) -> None:
        if bar is not None:
            bar.update(read - done[0])
            done[0] = read

    service = imports.import_members if what == "members" else imports.import_balances
    try:
        with handle:
            if bar is not None:
                bar.__enter__()
            try:
                report = run(
                    lambda engine: service(
                        engine,
                        prog,
                        handle,
                        now=utc_now(),
                        dry_run=dry_run,
                        on_problem=on_problem,
                        on_progress=on_progress,
                    ),
                    s,
                )
            finally:
                if bar is not None:
                    bar.__exit__(None, None, None)
    except imports.ImportFileError as error:
        fail(f"{file}: {error}")
    if as_json:
        emit_json({**report.as_json(), "problems": problems})
    else:
        typer.echo(_summary(report))
    if not report.clean:
        raise typer.Exit(1)


def _summary(report) -> str:
    counts = (
        f"{report.rows} rows: {report.imported} imported, {report.unchanged} unchanged, "
        f"{report.conflicts} conflicts, {report.bad} bad"
    )
    if report.what == "balances":
        counts += f" ({report.points} points)"
    return f"{report.what}{' (dry run: nothing written)' if report.dry_run else ''}: {counts}"
