"""rewards load / list / codes load, redeem: the points mall from the command line."""

from __future__ import annotations

import typer

from worker.cli.common import emit_json, fail, program, run, settings, timeline


def register(app: typer.Typer) -> None:
    rewards_app = typer.Typer(help="The points mall's reward catalog.")
    app.add_typer(rewards_app, name="rewards")
    rewards_app.command("load", help="Validate a rewards TOML file and upsert its rewards; safe to run twice.")(
        rewards_load
    )
    rewards_app.command("list", help="The catalog with stock left.")(rewards_list)
    codes_app = typer.Typer(help="Coupon codes of the catalog's coupon rewards.")
    rewards_app.add_typer(codes_app, name="codes")
    codes_app.command(
        "load", help="Add a file of codes (one a line) to a coupon reward's pool; codes already loaded are skipped."
    )(codes_load)
    app.command(help="Redeem a reward for a member now; exit 1 with the reason when rejected.")(redeem)


def rewards_load(file: str = typer.Argument(..., help="The rewards TOML file.")) -> None:
    from worker.domain.errors import ProgramError
    from worker.domain.mall import load_catalog
    from worker.services.mall import load_rewards

    s = settings()
    prog = program(s)
    try:
        catalog = load_catalog(file, prog)
        counts = run(lambda engine: load_rewards(engine, catalog), s)
    except ProgramError as error:
        fail(str(error))
    typer.echo(
        f"loaded {counts['rewards']} rewards: {counts['inserted']} new, {counts['updated']} changed, "
        f"{counts['unchanged']} unchanged"
    )


def rewards_list(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from worker.services.mall import list_rewards

    rows = run(list_rewards)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        stock = "unlimited" if r["stock_left"] is None else f"{r['stock_left']} left"
        coupon = r["coupon"]
        if coupon is not None:
            codes = "generated" if coupon["codes_left"] is None else f"{coupon['codes_left']} codes left"
            stock += f", coupon ({codes}, valid {coupon['valid_days']} days)"
        typer.echo(f"{r['reward_id']:<24} {r['cost_points']:>8} pts  {r['min_tier']:<10} {stock:<12} {r['name']}")


def codes_load(
    reward_id: str = typer.Argument(..., help="A coupon reward whose codes come from a pool."),
    file: str = typer.Argument(..., help="The codes, one a line ('-': standard input)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    import sys

    from worker.domain.coupons import parse_codes
    from worker.domain.errors import CouponRefused
    from worker.services.coupons import load_codes

    s = settings()
    try:
        if file == "-":
            code_file = parse_codes(sys.stdin, "-")
        else:
            try:
                with open(file, encoding="utf-8") as lines:
                    code_file = parse_codes(lines, file)
            except (OSError, UnicodeDecodeError) as error:
                fail(f"{file}: cannot read the codes file: {error}")
        counts = run(lambda engine: load_codes(engine, reward_id, code_file), s)
    except CouponRefused as error:
        fail(str(error))
    if as_json:
        emit_json(counts)
        return
    typer.echo(
        f"reward {reward_id}: {counts['loaded']} codes loaded, {counts['skipped']} skipped (duplicates); "
        f"{counts['codes_left']} left"
    )


def redeem(
    member_id: str = typer.Argument(..., help="The member, who must already be enrolled."),
    reward_id: str = typer.Argument(..., help="A reward from `rewards list`."),
    quantity: int = typer.Option(1, "--quantity", help="Units to redeem."),
    event_id: str | None = typer.Option(None, "--event-id", help="Idempotency key; a fresh one when omitted."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from worker.domain.errors import InvalidEvent, UnknownMember
    from worker.runtime import utc_now
    from worker.services.redeem import redeem_now

    s = settings()
    programs = timeline(s)
    try:
        outcome = run(
            lambda engine: redeem_now(
                engine, programs, member_id, reward_id, quantity, now=utc_now(), event_id=event_id
            ),
            s,
        )
    except InvalidEvent as error:
        fail(error.reason)
    except UnknownMember as error:
        fail(str(error), code=1)
    if as_json:
        emit_json(outcome)
    elif outcome["status"] == "confirmed":
        typer.echo(
            f"redeemed {outcome['quantity']} x {outcome['reward_name']} for {outcome['points']} points; "
            f"available {outcome['available_points']}"
        )
        for coupon in outcome["coupons"]:
            typer.echo(f"coupon {coupon['code']}, valid until {coupon['expires_on']}")
    if outcome["status"] == "conflict":
        fail(outcome["reason"], code=1)
    if outcome["status"] != "confirmed":
        typer.echo(f"rejected: {outcome['reason_text']}", err=True)
        raise typer.Exit(1)
