"""Run a SQL script from a migration, one statement at a time (asyncpg prepares each)."""

from __future__ import annotations

import re

from alembic import op

_DOLLAR = re.compile(r"\$\$")


def statements(script: str) -> list[str]:
    """Split on semicolons that end a line, except inside $$-quoted function bodies."""
    out, current, quoted = [], [], False
    for line in script.splitlines():
        if line.strip().startswith("--") and not current:
            continue
        current.append(line)
        quoted ^= len(_DOLLAR.findall(line)) % 2 == 1
        if not quoted and line.rstrip().endswith(";"):
            out.append("\n".join(current).strip())
            current = []
    tail = "\n".join(current).strip()
    if tail:
        out.append(tail)
    return out


def run(script: str) -> None:
    for statement in statements(script):
        op.execute(statement)
