"""`loyalty demo`: no servers needed."""

from __future__ import annotations

import typer

from worker.cli.common import fail

# The demo's embedded PostgreSQL is an extra: a production install does without its 34 MB.
INSTALL_DEMO = "pip install 'loyalty-engine[demo]'"


def register(app: typer.Typer) -> None:
    app.command(help="Run a month of multi-channel events through the real worker on an embedded database.")(demo)


def demo() -> None:
    import warnings

    from worker import logs

    try:
        import pgserver  # noqa: F401
    except ImportError:
        fail(f"loyalty demo needs its embedded PostgreSQL, which is not installed; run: {INSTALL_DEMO}")
    # The embedded server looks for a per-user runtime directory and warns when it must fall back.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from worker.demo import format_summary, run_demo

    logs.configure(json_output=False, level="WARNING")
    result = run_demo()
    typer.echo(format_summary(result))
    if not result.audit_clean:
        raise typer.Exit(1)
