"""`loyalty publish` on hostile input: exit 1, one message per bad line with its number and
field; the valid lines around them are still published."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.hostile import CASES, valid

LOYALTY = str(Path(sys.executable).parent / "loyalty")


def test_publish_names_line_and_field_of_every_hostile_line(env, tmp_path):
    lines = [json.dumps(valid(1))] + [raw for raw, _ in CASES] + ["", json.dumps(valid(2))]
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = subprocess.run([LOYALTY, "publish", str(path)], env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"line {n}: {reason}" for n, (_, reason) in enumerate(CASES, start=2)]
    assert result.stdout == f"published 2 events in 2 messages; {len(CASES)} invalid lines\n"


def test_publish_refuses_an_over_size_batch_option(env):
    result = subprocess.run(
        [LOYALTY, "publish", "--batch", "1001", "-"], env=env, input="", capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stderr) == (2, "error: --batch must be between 0 and 1000\n")
