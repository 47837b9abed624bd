"""api (the HTTP server), api-key create / list / revoke."""

from __future__ import annotations

import typer

from worker.cli.common import emit_json, fail, run


def register(app: typer.Typer) -> None:
    app.command("api", help="Serve the HTTP API (docs/api.md); OpenAPI at /openapi.json, docs at /docs.")(api)
    key_app = typer.Typer(help="Keys for the HTTP API.")
    app.add_typer(key_app, name="api-key")
    key_app.command("create", help="Create a key and print it once; only its hash is stored.")(key_create)
    key_app.command("list", help="Keys with their scopes and sources (never the keys themselves).")(key_list)
    key_app.command("revoke", help="Revoke a key; API processes refuse it within 5 seconds.")(key_revoke)


def api(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
) -> None:
    import uvicorn

    from worker import logs
    from worker.api.app import create_app
    from worker.cli.common import settings
    from worker.domain.engine import load_program
    from worker.domain.errors import LoyaltyError
    from worker.preflight import PreflightError, bind_port, check_servers, check_urls, listening_socket

    logs.configure()
    s = settings()
    # Refuse to serve, with one line, what could only answer errors: the same checks as the worker's.
    try:
        check_urls(s)
        try:
            load_program(s.program_file)
        except LoyaltyError as error:
            raise PreflightError(str(error), code=2) from None
        sock = bind_port(port, lambda: listening_socket(host, port))
        check_servers(s)
    except PreflightError as error:
        fail(str(error), code=error.code)
    # uvicorn's own access log prints raw paths (member ids) and query strings: ours logs the
    # route template and the key's name instead (worker/api/limits.py).
    config = uvicorn.Config(
        create_app(s),
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        server_header=False,
    )
    uvicorn.Server(config).run(sockets=[sock])


def key_create(
    name: str = typer.Option(..., "--name", help="A unique name, e.g. till-shanghai-01."),
    scopes: str = typer.Option(
        ...,
        "--scopes",
        help="Comma-separated: events:write, members:read, points:spend, rewards:redeem, points:adjust, "
        "coupons:read, coupons:use.",
    ),
    sources: str | None = typer.Option(
        None, "--sources", help="Comma-separated event sources the key may send (default: any)."
    ),
    as_json: bool = typer.Option(False, "--json", help='Print {"key": ...} as JSON (the key is shown only once).'),
) -> None:
    from worker.services.api_keys import KeyRefused, create_key

    try:
        key = run(lambda engine: create_key(engine, name, scopes, sources))
    except KeyRefused as error:
        fail(str(error))
    if as_json:
        emit_json({"name": name, "key": key})
        return
    typer.echo(key)
    typer.echo(f"key {name!r} created; it is shown only now, store it in the client's secret store", err=True)


def key_list(
    as_json: bool = typer.Option(False, "--json", help="Print the keys (never their secrets) as JSON."),
) -> None:
    from worker.services.api_keys import list_keys

    rows = run(list_keys)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
        sources = ",".join(r["sources"]) if r["sources"] else "any source"
        typer.echo(f"{r['name']:<24} {','.join(r['scopes']):<52} {sources:<20} {state}")


def key_revoke(name: str = typer.Argument(..., help="The key's name.")) -> None:
    from worker.services.api_keys import revoke_key

    revoked_at = run(lambda engine: revoke_key(engine, name))
    if revoked_at is None:
        fail(f"no key named {name!r}", code=1)
    typer.echo(f"key {name!r} revoked at {revoked_at.isoformat()}")
