"""A real `loyalty worker` with its /metrics endpoint, after processing known events."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import purchase, refund
from worker.broker import build_broker
from worker.config import Settings

LOYALTY = str(Path(sys.executable).with_name("loyalty"))
DEADLINE_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def worker_with_metrics(env, db, tmp_path):
    port = free_port()
    with open(tmp_path / "worker.log", "w") as output:  # a file: a full pipe would block the worker
        proc = subprocess.Popen(
            [LOYALTY, "worker", "--processes", "1", "--threads", "2"],
            env={**env, "LOYALTY_METRICS_PORT": str(port), "LOYALTY_METRICS_HOST": "127.0.0.1"},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    yield port
    proc.send_signal(signal.SIGTERM)  # to the main process only, which stops its children
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError("the worker did not stop within 30 s of SIGTERM") from None


def test_metrics_count_known_events(worker_with_metrics, env):
    port = worker_with_metrics
    broker = build_broker(Settings.from_env(env))
    send = broker.get_actor("process_event").send
    first = purchase("MET-A", "350.75", order_id="oA", event_id="met-1")
    send(first)
    send(dict(first))  # duplicate
    send(purchase("MET-B", "1000.00", order_id="oB", event_id="met-2"))  # Regular -> Silver
    send(purchase("MET-C", "12.345", event_id="met-3"))  # rejected: 3 decimals
    send(refund("MET-A", "oA", "100.00", event_id="met-4"))

    deadline = time.monotonic() + DEADLINE_S
    samples: dict = {}
    while time.monotonic() < deadline:
        try:
            samples = scrape(port)
        except OSError:
            samples = {}
        if value(samples, "dramatiq_messages_total", queue_name="events", actor_name="process_event") == 5:
            break
        time.sleep(0.2)

    events = "loyalty_events_processed_total"
    assert value(samples, events, type="purchase", source="pos", outcome="applied") == 2
    assert value(samples, events, type="purchase", source="pos", outcome="duplicate") == 1
    assert value(samples, events, type="purchase", source="pos", outcome="rejected") == 1
    assert value(samples, events, type="refund", source="pos", outcome="applied") == 1
    assert value(samples, "loyalty_ledger_points_total", kind="earn") == 450 + 1100
    assert value(samples, "loyalty_ledger_points_total", kind="reverse") == 99  # floor(350 * 100 / 350.75)
    assert value(samples, "loyalty_ledger_entries_total", kind="earn") == 2
    assert value(samples, "loyalty_tier_changes_total", from_tier="Regular", to_tier="Silver") == 1
    assert value(samples, "loyalty_event_lag_seconds_count", type="purchase") == 2
    assert value(samples, "loyalty_event_lag_seconds_count", type="refund") == 1
    assert value(samples, "loyalty_queue_messages", queue="events", state="dead") == 0
    assert value(samples, "loyalty_rejected_events_open") == 1
    assert value(samples, "loyalty_state_up") == 1
    assert not any("member" in dict(labels) for _, labels in samples)


def test_error_retry_reject_and_delivery_counters_are_exported_at_zero_from_boot(worker_with_metrics):
    port = worker_with_metrics
    wanted = [
        (name, (("actor_name", "process_event"), ("queue_name", "events")))
        for name in (
            "dramatiq_message_errors_total",
            "dramatiq_message_retries_total",
            "dramatiq_message_rejects_total",
            "dramatiq_messages_total",
        )
    ] + [
        ("loyalty_notification_deliveries_total", (("kind", "points_earned"), ("outcome", outcome)))
        for outcome in ("sent", "failed", "dead")
    ]

    deadline = time.monotonic() + DEADLINE_S
    samples: dict = {}
    while time.monotonic() < deadline:
        try:
            samples = scrape(port)
        except OSError:
            samples = {}
        beats = [v for (name, _), v in samples.items() if name == "loyalty_worker_heartbeat_age_seconds"]
        if all(key in samples for key in wanted) and beats:
            break
        time.sleep(0.2)

    assert {key: samples.get(key) for key in wanted} == {key: 0.0 for key in wanted}
    # The running worker's own heartbeat, seconds old at most.
    assert beats and all(0 <= age < 30 for age in beats)


def test_scheduler_serves_metrics_for_its_health_check(env, db, tmp_path):
    """The compose health check of the scheduler: its /metrics answers once it runs."""
    port = free_port()
    with open(tmp_path / "scheduler.log", "w") as output:
        proc = subprocess.Popen(
            [LOYALTY, "scheduler"],
            env={**env, "LOYALTY_METRICS_PORT": str(port), "LOYALTY_METRICS_HOST": "127.0.0.1"},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + DEADLINE_S
        samples: dict = {}
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                samples = scrape(port)
                break
            except OSError:
                time.sleep(0.2)
        assert proc.poll() is None, (tmp_path / "scheduler.log").read_text()
        assert any(
            name.startswith("loyalty_notification_deliveries") or name.startswith("python_") for name, _ in samples
        ), samples
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_the_workers_metrics_folder_is_removed_when_it_stops(env, db, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    with open(tmp_path / "worker.log", "w") as output:
        proc = subprocess.Popen(
            [LOYALTY, "worker", "--processes", "1", "--threads", "1"],
            env={**env, "LOYALTY_METRICS_PORT": str(port), "LOYALTY_METRICS_HOST": "127.0.0.1", "TMPDIR": str(temp)},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()
            try:
                samples = scrape(port)
                break
            except OSError:
                assert time.monotonic() < deadline, "no /metrics within the deadline"
                time.sleep(0.2)
        running = sorted(p.name for p in temp.iterdir())
        files = sorted(p.name for p in next(temp.iterdir()).iterdir())
    finally:
        proc.send_signal(signal.SIGTERM)  # what `docker stop` and systemd send to the main process
        proc.wait(timeout=30)

    assert samples
    assert len(running) == 1 and running[0].startswith("loyalty-metrics-"), running
    assert files, "the worker processes write their metrics into the folder"
    assert list(temp.iterdir()) == []


def test_a_worker_whose_metrics_port_is_taken_after_its_check_stops_in_one_line(env, db, tmp_path):
    """Between `loyalty worker`'s check and the /metrics process's start another process may
    take the port: the worker stops, with one line saying why, exit 3 and no folder left.
    (`python -m worker.stopping` is what `loyalty worker` runs after its checks.)"""
    import json

    folder = tmp_path / "loyalty-metrics-x"
    folder.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "worker.stopping", LOYALTY, "1", "1", "10"],
            env={
                **env,
                "LOYALTY_METRICS_PORT": str(port),
                "LOYALTY_METRICS_HOST": "127.0.0.1",
                "LOYALTY_LOG_FORMAT": "json",
                "PROMETHEUS_MULTIPROC_DIR": str(folder),
                "dramatiq_prom_db": str(folder),
            },
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
        )

    lines = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
    assert "Traceback" not in done.stderr
    assert [(x["event"], x["reason"]) for x in lines if x["level"] == "error"] == [
        (
            "metrics_cannot_start",
            f"metrics port {port} is already in use; "
            "set LOYALTY_METRICS_PORT to a free port, or to 0 to run without metrics",
        )
    ]
    assert done.returncode == 3
    assert not folder.exists()
