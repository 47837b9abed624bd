"""The enqueue examples in docs/wire-format.md work exactly as written.

Both code blocks are taken from the document, run with only LOYALTY_REDIS_URL and
LOYALTY_NAMESPACE pointing at the test namespace, and the worker must apply their events.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.test_cli import clean, loyalty  # noqa: F401  (clean is a fixture)

DOC = (Path(__file__).resolve().parents[2] / "docs" / "wire-format.md").read_text()


def _block(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S)
    assert len(blocks) == 1, f"expected one {language} example"
    return blocks[0]


def test_redis_cli_and_python_examples_enqueue_events_the_worker_applies(clean):  # noqa: F811
    env = clean
    assert loyalty(env, "db", "upgrade").returncode == 0

    shell = subprocess.run(["bash", "-eu", "-c", _block("sh")], env=env, capture_output=True, text=True, timeout=30)
    script = subprocess.run(
        [sys.executable, "-c", _block("python")], env=env, capture_output=True, text=True, timeout=30
    )
    drained = loyalty(env, "drain", "--timeout", "60", "--threads", "1")
    shown = {m: loyalty(env, "member", "show", m, "--json") for m in ("M1001", "M1002")}
    rejected = loyalty(env, "rejected", "list", "--json")

    assert (shell.returncode, shell.stdout, shell.stderr) == (0, "1\n", "")
    assert (script.returncode, script.stderr) == (0, "")
    assert drained.returncode == 0, drained.stderr
    # Each purchase plus the first-purchase bonus of 100.
    assert {m: json.loads(r.stdout)["available_points"] for m, r in shown.items()} == {"M1001": 450, "M1002": 220}
    assert json.loads(rejected.stdout) == []
