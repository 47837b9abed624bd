"""`loyalty worker` stopped mid-load however it is signalled, and a worker process killed under it.

Each test runs `loyalty worker --processes 2` in a process group of its own, as systemd or a
container runtime would, then checks that every event published is applied exactly once once
the queues are drained: nothing lost, nothing doubled.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import NOW
from tests.fault.servers import REPO, free_port, loyalty, wait_for
from tests.fault.workload import snapshot, workload
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake

pytestmark = pytest.mark.fault

SHUTDOWN_S = 10
START_S = 60
FIRST_WORK_S = 90
# dramatiq's own log line for each worker process that has booted.
READY = re.compile(r"\[PID (\d+)\] \[MainThread\] \[dramatiq\.WorkerProcess\(\d+\)\] \[INFO\] Worker process is ready")


class LoyaltyWorker:
    """`loyalty worker` in a new session (its own process group), all output to a file."""

    def __init__(self, env: dict[str, str], log: Path):
        self.log = log
        self.env = {**env, "LOYALTY_METRICS_PORT": str(free_port()), "LOYALTY_METRICS_HOST": "127.0.0.1"}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [str(Path(sys.executable).parent / "loyalty"), "worker", "--processes", "2", "--threads", "4"]
        self.process = subprocess.Popen(
            [*command, "--shutdown-timeout", str(SHUTDOWN_S)],
            cwd=REPO,
            env=self.env,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(lambda: len(self.worker_pids()) == 2, START_S, f"two ready worker processes\n{self.output()}")

    @property
    def pgid(self) -> int:
        return self.process.pid

    def worker_pids(self) -> list[int]:
        return [int(pid) for pid in READY.findall(self.output())]

    def group(self) -> list[int]:
        """Pids of the processes still in the group (zombies of the main process included)."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.pgid and fields[0] != "Z":
                pids.append(int(stat.parent.name))
        return pids

    def wait_for_exit(self, timeout_s: float) -> tuple[int, float]:
        """(exit code, seconds until every process of the group is gone)."""
        started = time.monotonic()
        code = self.process.wait(timeout_s)
        wait_for(lambda: not self.group(), max(0.0, timeout_s - (time.monotonic() - started)), "the group to exit")
        return code, time.monotonic() - started

    def kill_group(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.pgid, signal.SIGKILL)
            self.process.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


async def _count(db, sql: str) -> int:
    async with db.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one()


def _publish(env: dict[str, str]) -> tuple[list[dict], int]:
    events = workload(400, seed=11, hot_purchases=300)
    published = loyalty(["publish", "-"], env, stdin="\n".join(json.dumps(e) for e in events))
    assert published.returncode == 0, published.stderr
    return events, len(events) + sum(1 for e in events if e["type"] == "referral")


async def _until_a_quarter_is_done(db, worker: LoyaltyWorker, expected: int) -> int:
    deadline = time.monotonic() + FIRST_WORK_S
    while (done := await _count(db, "SELECT count(*) FROM processed_events")) < expected // 4:
        assert time.monotonic() < deadline, worker.output()[-3000:]
        time.sleep(0.05)
    return done


async def _drained_exactly_once(db, reference, env: dict[str, str], events: list[dict], expected: int) -> None:
    """`loyalty drain` finishes what the stopped worker left on the queues (or unacknowledged,
    back after the heartbeat timeout); then the ledger is the one an in-order run builds."""
    drained = loyalty(["drain", "--timeout", "120"], env, timeout_s=150)
    assert drained.returncode == 0, drained.stderr[-3000:]
    assert drained.stdout.strip() == "queues drained"
    for start in range(0, len(events), intake.BATCH_EVENTS_MAX):
        await intake.process_batch(reference, DEFAULT_PROGRAM, events[start : start + intake.BATCH_EVENTS_MAX], now=NOW)
    actual, wanted = await snapshot(db), await snapshot(reference)
    assert actual["processed"] == wanted["processed"] == expected
    assert actual == wanted
    hot = [row for row in actual["members"] if row[0] == "HOT"][0]
    assert hot[3] == 300 + 100  # 1 point per purchase plus the first-purchase bonus, once
    doubled = (
        "SELECT count(*) FROM (SELECT 1 FROM ledger_entries WHERE kind = 'earn' "
        "AND NOT rules @> '[{\"corrects\": {}}]' GROUP BY member_id, source, event_id HAVING count(*) > 1) d"
    )
    assert await _count(db, doubled) == 0
    audit = loyalty(["audit", "--json"], env)
    assert audit.returncode == 0, audit.stdout
    assert json.loads(audit.stdout)["clean"] is True


@pytest.mark.parametrize("how", ["group", "main process", "group twice"])
async def test_sigterm_mid_load_stops_within_the_shutdown_timeout_and_loses_nothing(
    how, db, reference, fault_env, tmp_path
):
    # Given a load of events being worked through by two worker processes
    events, expected = _publish(fault_env)
    worker = LoyaltyWorker(fault_env, tmp_path / "worker.log")
    worker.start()
    try:
        at_signal = await _until_a_quarter_is_done(db, worker, expected)
        # When SIGTERM reaches the main process only, the whole group (systemctl stop,
        # kill -TERM -- -PGID), or the whole group twice
        if how == "main process":
            os.kill(worker.pgid, signal.SIGTERM)
        else:
            os.killpg(worker.pgid, signal.SIGTERM)
        if how == "group twice":
            time.sleep(0.5)
            os.killpg(worker.pgid, signal.SIGTERM)
        # Then every process of the group is gone within the shutdown timeout, cleanly
        code, took_s = worker.wait_for_exit(SHUTDOWN_S)
    finally:
        worker.kill_group()
    output = worker.output()
    assert code == 0, output[-3000:]
    assert took_s < SHUTDOWN_S
    assert at_signal < expected, "the load was done before the signal: nothing was interrupted"
    assert "Killing worker process" not in output
    assert output.count("Stopping worker process...") == 2
    print(f"{how}: {at_signal}/{expected} processed at the signal, stopped in {took_s:.1f}s")
    # And draining the rest applies every event exactly once
    await _drained_exactly_once(db, reference, fault_env, events, expected)


async def test_a_worker_process_killed_9_stops_the_other_and_exits_1_saying_why(db, reference, fault_env, tmp_path):
    # Given a load of events being worked through by two worker processes
    events, expected = _publish(fault_env)
    worker = LoyaltyWorker(fault_env, tmp_path / "worker.log")
    worker.start()
    try:
        await _until_a_quarter_is_done(db, worker, expected)
        # When one of them is killed (as the kernel's out-of-memory killer does)
        victim, other = worker.worker_pids()
        os.kill(victim, signal.SIGKILL)
        # Then the main process stops the other one and exits 1, its last line saying why
        code, took_s = worker.wait_for_exit(SHUTDOWN_S + 2)
    finally:
        worker.kill_group()
    lines = worker.output().splitlines()
    assert code == 1, "\n".join(lines[-30:])
    assert lines[-1] == (
        f"error: worker process {victim} was killed by SIGKILL (out of memory?); the other worker processes were "
        "stopped. Run loyalty worker under a supervisor that restarts it (docs/operations.md)."
    )
    assert "Killing worker process" not in "\n".join(lines)
    print(f"killed {victim}; {other} stopped and the main process exited in {took_s:.1f}s")
    # And what the killed process held comes back: every event applied exactly once
    await _drained_exactly_once(db, reference, fault_env, events, expected)
