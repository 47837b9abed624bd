"""The dependency rules in pyproject.toml ([tool.importlinter]) hold, and the linters and mypy pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
# Files written before the formatter was configured: `ruff format` is to be run over the
# tree once, by itself, and this list emptied then. Every file not listed must be formatted.
# A line of `ruff format --check --output-format concise`: "path:row:col: unformatted: ...".


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_import_contracts_are_kept():
    result = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_ruff_check_finds_nothing():
    result = subprocess.run(
        [_tool("ruff"), "check", "--no-cache", "--output-format", "concise", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_every_file_is_formatted():
    result = subprocess.run(
        [_tool("ruff"), "format", "--check", "--no-cache", "--output-format", "concise", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, "run `ruff format .`:\n" + (result.stdout + result.stderr)[-3000:]


def test_the_pure_domain_passes_mypy_strict():
    # [tool.mypy] in pyproject.toml names what is checked (worker/domain) and how strictly.
    result = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
