"""The program report as text (terminal) and as one self-contained HTML page."""

from __future__ import annotations

from decimal import Decimal
from html import escape

from worker.services.report import Report
from worker.web import svg

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1180px;
       color: #1f2937; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.1rem; margin: 0 0 .6rem; }
.sub { color: #6b7280; margin-top: 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: .8rem; margin: 1.2rem 0; }
.card { border: 1px solid #e5e7eb; border-radius: 8px; padding: .8rem 1rem; }
.card .k { color: #6b7280; font-size: .8rem; text-transform: uppercase; letter-spacing: .03em; }
.card .v { font-size: 1.4rem; font-weight: 600; margin-top: .2rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(540px, 1fr)); gap: 1rem; }
section { border: 1px solid #e5e7eb; border-radius: 8px; padding: 1rem; overflow-x: auto; }
svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; margin-top: .6rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #f0f0f0; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.empty { color: #9ca3af; }
.ok { color: #047857; } .bad { color: #b91c1c; font-weight: 600; }
"""


def _pct(ratio: Decimal | None) -> str:
    return "n/a" if ratio is None else f"{ratio * 100:.2f}%"


def _range(report: Report) -> str:
    start = report.date_from.isoformat() if report.date_from else "the beginning"
    end = report.date_to.isoformat() if report.date_to else "today"
    return f"{start} to {end}"


def _start(report: Report) -> str:
    return f"start of {report.date_from.isoformat()}" if report.date_from else "the beginning"


def _end(report: Report) -> str:
    return f"end of {report.date_to.isoformat()}" if report.date_to else "now"


def flow(report: Report) -> list[tuple[str, str, int]]:
    """The reconciliation as (label, sign, points) rows, opening to closing."""
    r = report.reconciliation
    return [
        (f"Opening ({_start(report)})", "", r.opening),
        ("Earned", "+", r.earned),
        ("Corrections (re-evaluation)", "+", r.corrections),
        ("Reversed (refunds)", "-", r.reversed),
        ("Redeemed", "-", r.redeemed),
        ("Held (open holds)", "-", r.held),
        ("Expired", "-", r.expired),
        ("Adjusted", "+", r.adjusted),
        (f"Closing ({_end(report)})", "=", r.closing),
    ]


def _balanced(report: Report) -> str:
    r = report.reconciliation
    if r.balanced:
        return f"balanced: opening and flow give the closing available + pending points ({_end(report)})"
    now = "" if r.outstanding_now is None else f", the members hold {r.outstanding_now:,}"
    return f"NOT BALANCED: opening and flow give {r.flow_closing:,}, the ledger's closing is {r.closing:,}{now}"


def text_report(report: Report) -> str:
    lines = [
        f"Program {report.program}: {_range(report)}",
        "",
        f"{'Outstanding points':<28}{report.outstanding_points:>14,}  "
        f"(available {report.available_points:,}, pending {report.pending_points:,})",
        f"{'Liability value':<28}{report.liability:>14}  (at {report.point_value} per point)",
        f"{'Earned':<28}{report.earned:>14,}",
        f"{'Reversed':<28}{report.reversed:>14,}",
        f"{'Redeemed':<28}{report.redeemed:>14,}",
        f"{'Expired':<28}{report.expired:>14,}",
        f"{'Breakage (expired/earned)':<28}{_pct(report.breakage):>14}",
        f"{'Redemption rate':<28}{_pct(report.redemption_rate):>14}",
        "",
        "Points flow",
        *(f"  {sign or ' '} {label:<34}{points:>10,}" for label, sign, points in flow(report)),
        f"  {_balanced(report)}",
        "",
        "Tier distribution",
        *(f"  {tier:<26}{n:>14,}" for tier, n in report.tiers),
        "",
        "Tier movement",
        *(f"  {f + ' -> ' + t:<26}{n:>14,}" for f, t, n in report.moves),
        *([] if report.moves else ["  (none)"]),
        "",
        "Earned by source and type",
        *(f"  {s + ' / ' + t:<26}{p:>14,}" for s, t, p in report.earn_by),
        *([] if report.earn_by else ["  (none)"]),
    ]
    return "\n".join(lines)


def _card(key: str, value: str) -> str:
    return f'<div class="card"><div class="k">{escape(key)}</div><div class="v">{escape(value)}</div></div>'


def _table(headers: list[str], rows: list[list], numeric_from: int) -> str:
    head = "".join(f'<th class="{"n" if i >= numeric_from else ""}">{escape(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{v:,}</td>' if i >= numeric_from else f"<td>{escape(str(v))}</td>" for i, v in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(report: Report, generated_at: str) -> str:
    cards = "".join(
        [
            _card("Outstanding points", f"{report.outstanding_points:,}"),
            _card("Liability value", report.liability),
            _card("Earned", f"{report.earned:,}"),
            _card("Redeemed", f"{report.redeemed:,}"),
            _card("Expired", f"{report.expired:,}"),
            _card("Breakage", _pct(report.breakage)),
            _card("Redemption rate", _pct(report.redemption_rate)),
        ]
    )
    r = report.reconciliation
    flows = [
        ("Earned", report.earned),
        ("Corrections", r.corrections),
        ("Reversed", report.reversed),
        ("Redeemed", report.redeemed),
        ("Held", r.held),
        ("Expired", report.expired),
        ("Adjusted", r.adjusted),
    ]
    flow_rows = "".join(
        f'<tr><td>{escape(label)}</td><td class="n">{escape(sign)}</td><td class="n">{points:,}</td></tr>'
        for label, sign, points in flow(report)
    )
    flow_table = (
        '<table class="flow"><thead><tr><th>Points flow</th><th class="n"></th><th class="n">Points</th></tr></thead>'
        f'<tbody>{flow_rows}</tbody></table><p class="{"ok" if r.balanced else "bad"}">{escape(_balanced(report))}</p>'
    )
    earn_by = [(f"{s} / {t}", p) for s, t, p in report.earn_by]
    moves = [(f"{f} → {t}", n) for f, t, n in report.moves]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Loyalty report: {escape(report.program)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body>
<h1>Loyalty program report: {escape(report.program)}</h1>
<p class="sub">{escape(_range(report))} · liability at {escape(report.currency)} {escape(str(report.point_value))} per point ·
generated {escape(generated_at)}</p>
<div class="cards">{cards}</div>
<div class="grid">
<section><h2>Points flow</h2>{svg.bars(flows)}{flow_table}</section>
<section><h2>Earned by source and type</h2>{svg.bars(earn_by)}
{_table(["Source / type", "Points"], [[label, v] for label, v in earn_by], 1)}</section>
<section><h2>Tier distribution (members now)</h2>{svg.bars(report.tiers)}</section>
<section><h2>Tier movement</h2>{svg.bars(moves)}
{_table(["From", "To", "Members"], [list(m) for m in report.moves], 2)}</section>
</div>
</body></html>
"""
