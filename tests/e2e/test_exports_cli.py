"""`loyalty export` as a process: standard output by default, --out replaced whole, a progress bar
only on a terminal, and bad options named."""

from __future__ import annotations

import json
import os
import pty
import subprocess

from tests import factories as f
from tests.conftest import NOW
from tests.e2e.test_cli import LOYALTY, clean, loyalty  # noqa: F401  (clean is a fixture)
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake


async def test_export_to_stdout_to_a_file_and_with_a_progress_bar_on_a_terminal(clean, db, tmp_path):  # noqa: F811
    for raw in (
        f.signup("M1", event_id="s-1", occurred_at="2026-11-01T09:00:00+08:00"),
        f.purchase("M1", "100.00", event_id="p-1", occurred_at="2026-11-02T10:00:00+08:00"),
    ):
        await intake.process(db, DEFAULT_PROGRAM, raw, now=NOW, strict=True)
    out = tmp_path / "ledger.jsonl"

    to_stdout = loyalty(clean, "export", "ledger", "--to", "2026-11-01")
    to_file = loyalty(clean, "export", "ledger", "--format", "jsonl", "--out", str(out))
    bad_date = loyalty(clean, "export", "ledger", "--from", "2026-13-01")
    bad_format = loyalty(clean, "export", "members", "--format", "xml")

    assert to_stdout.returncode == 0, to_stdout.stderr
    assert [line.split(",")[:9] for line in to_stdout.stdout.splitlines()] == [
        [
            "entry_id",
            "kind",
            "points",
            "pending_points",
            "qualifying_points",
            "member_id",
            "source",
            "event_id",
            "event_type",
        ],
        ["1", "earn", "50", "0", "50", "M1", "pos", "s-1", "signup"],
    ]
    # Not a terminal: nothing on standard error, the rows in the file only.
    assert (to_file.returncode, to_file.stdout, to_file.stderr) == (0, "", "")
    assert [json.loads(line)["event_id"] for line in out.read_text().splitlines()] == ["s-1", "p-1"]
    assert os.listdir(tmp_path) == ["ledger.jsonl"]
    assert (bad_date.returncode, bad_date.stderr.strip()) == (
        2,
        "error: --from: '2026-13-01' is not a date (YYYY-MM-DD)",
    )
    assert (bad_format.returncode, bad_format.stderr.strip()) == (2, "error: --format: 'xml' is not one of csv, jsonl")

    # On a terminal, with --out: a progress bar and the count on standard error.
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [LOYALTY, "export", "members", "--out", str(tmp_path / "members.csv")],
            env=clean,
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=120,
        )
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal is closed once everything was read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0
    assert b"members" in shown and b"100%" in shown
    assert shown.decode().strip().endswith(f"wrote 1 row to {tmp_path / 'members.csv'}")
    assert (tmp_path / "members.csv").read_text().splitlines()[1].startswith("M1,Regular,250,0,250,250,,,[],")


def test_an_export_into_a_pipe_closed_early_stops_quietly(clean):  # noqa: F811
    # The reader is gone before the first row is written: no traceback, SIGPIPE's status.
    process = subprocess.Popen([LOYALTY, "export", "ledger"], env=clean, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    stderr = process.stderr.read()
    assert (process.wait(timeout=120), stderr) == (141, b"")
