"""Reading the operator-edited TOML files (program, rewards, templates) with errors that name the file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from worker.domain.errors import LoyaltyError


def read_toml(path: Path, what: str, error: type[LoyaltyError]) -> dict[str, Any]:
    """The file's data, or `error` saying "<path>: no such <what>" / "<path>: not valid TOML: ..."."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except tomllib.TOMLDecodeError as problem:
        raise error(f"{path}: not valid TOML: {problem}") from None
