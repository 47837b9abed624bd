"""What `pip install .` brings: the production dependencies, not the demo's embedded PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> set[str]:
    return {r.split(">")[0].split("=")[0].split("[")[0].split("<")[0].strip() for r in requirements}


def test_the_embedded_postgresql_is_an_extra_that_the_demo_command_installs():
    assert "pgserver" not in _names(PROJECT["dependencies"])
    assert _names(PROJECT["optional-dependencies"]["demo"]) == {"pgserver"}
    dev = (ROOT / "dev").read_text()
    assert "    install demo\n    exec .venv/bin/loyalty demo" in dev
    # The demo's end-to-end test needs it too.
    test_command = dev.split("\n  test)\n", 1)[1].split("\n    ;;\n", 1)[0]
    assert test_command.split("\n")[1:3] == ["    install test,demo", "    services"]
    assert test_command.endswith('    exec .venv/bin/python -m pytest "$@"')


def test_license_is_an_spdx_expression():
    assert PROJECT["license"] == "Apache-2.0"


def test_demo_without_its_extra_says_in_one_line_what_to_run():
    # None in sys.modules makes `import pgserver` fail as if it were not installed.
    code = "import sys; sys.modules['pgserver'] = None; sys.argv = ['loyalty', 'demo']; from worker.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "error: loyalty demo needs its embedded PostgreSQL, which is not installed; "
        "run: pip install 'loyalty-engine[demo]'\n"
    )
