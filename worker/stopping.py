"""How `loyalty worker` runs its processes and stops them.

`loyalty worker` checks that the workers can work, then replaces itself (same pid) with
`python -m worker.stopping`, which runs dramatiq's main process: it forks the worker
processes (and the /metrics fork) from a fresh interpreter, forwards stop signals to them and
waits. Two things are added here:

- In each worker process, only the first stop signal counts. dramatiq takes a second SIGTERM
  as "kill now" and raises SystemExit from the signal handler, skipping the worker's shutdown:
  the event-loop thread (not a daemon) is never stopped and the process hangs for ever. A
  SIGTERM to the whole process group (`systemctl stop`, `kill -TERM -- -PGID`, `docker stop`
  with an init) always reaches a worker process twice, once directly and once forwarded by
  the main process. Instead, the stop is bounded by the shutdown timeout: messages in hand get
  until shortly before it to finish (committed, then acknowledged); at the timeout the process
  exits hard, and what it had not acknowledged goes back to the queue for redelivery.
- The main process says in one line why it stopped when a worker process died under it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
from dataclasses import dataclass

import dramatiq
import structlog

log = structlog.get_logger(__name__)

# The environment variable through which `loyalty worker` tells its worker processes the
# shutdown timeout (they are started by dramatiq, which passes them no options of ours).
SHUTDOWN_TIMEOUT_ENV = "LOYALTY_WORKER_SHUTDOWN_TIMEOUT_S"
DEFAULT_SHUTDOWN_TIMEOUT_S = 30
# Of the shutdown timeout, the last this many seconds are kept for what follows the messages
# in hand: the consumers' last poll (up to 1 s), handing back prefetched messages, closing
# the database pool, and the main process noticing (it polls every second).
SHUTDOWN_MARGIN_S = 2
SHUTDOWN_TIMEOUT_MIN_S = SHUTDOWN_MARGIN_S + 1
# A worker process that did not finish its messages within the shutdown timeout exits with
# this code (dramatiq's "killed"); its unacknowledged messages are redelivered.
EXIT_STOP_TIMED_OUT = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# The /metrics process could not listen (its port taken after the start check): like a
# server that cannot be reached at start, a failure for whoever supervises the worker.
EXIT_METRICS_CANNOT_START = 3


def shutdown_timeout_s() -> int:
    raw = os.environ.get(SHUTDOWN_TIMEOUT_ENV) or ""
    return int(raw) if raw.isdigit() else DEFAULT_SHUTDOWN_TIMEOUT_S


def graceful_timeout_ms(timeout_s: int) -> int:
    """How long a worker process waits for the messages in hand: dramatiq's
    --worker-shutdown-timeout for a shutdown timeout of `timeout_s`."""
    return (timeout_s - SHUTDOWN_MARGIN_S) * 1000


class StopOnce(dramatiq.Middleware):
    """In a worker process under the dramatiq CLI: the first SIGTERM (or SIGHUP) starts the
    graceful stop as dramatiq does; later ones change nothing. The first also
    starts a timer that ends the process at the shutdown timeout, whatever it is waiting on.

    `after_process_boot` is emitted only by the dramatiq CLI's worker processes, after it has
    installed its signal handlers; in-process workers (`loyalty drain`, the demo, tests) never
    see it and keep their signals as they are."""

    def after_process_boot(self, broker) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        timeout_s = shutdown_timeout_s()
        stopping = threading.Event()

        def stop_once(previous, signum, frame):
            # Nothing is logged for a repeat: the main thread may be inside a log call, and
            # the log's lock is not reentrant.
            if stopping.is_set():
                return
            stopping.set()
            timer = threading.Timer(timeout_s - SHUTDOWN_MARGIN_S / 2, _stop_timed_out, (timeout_s,))
            timer.daemon = True
            timer.start()
            previous(signum, frame)

        for signum in STOP_SIGNALS:
            previous = signal.getsignal(signum)
            if callable(previous):
                signal.signal(signum, lambda s, f, previous=previous: stop_once(previous, s, f))


def _stop_timed_out(timeout_s: int) -> None:
    log.error("worker_stop_timed_out", timeout_s=timeout_s, unfinished="redelivered")
    os._exit(EXIT_STOP_TIMED_OUT)


@dataclass
class WorkerDied:
    pid: int
    exitcode: int

    def __str__(self) -> str:
        if self.exitcode < 0:
            name = signal.Signals(-self.exitcode).name
            cause = f"was killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
        else:
            cause = f"exited with code {self.exitcode}"
        return (
            f"worker process {self.pid} {cause}; the other worker processes were stopped. "
            "Run loyalty worker under a supervisor that restarts it (docs/operations.md)."
        )


class _DeathWatch(logging.Handler):
    """Keeps the worker process whose unexpected exit made dramatiq's main process stop.

    dramatiq reports it only in a log record of its main process ("Worker with PID %r exited
    unexpectedly (code %r). Shutting down..."), whose arguments are the pid and exit code."""

    def __init__(self) -> None:
        super().__init__(logging.CRITICAL)
        self.died: WorkerDied | None = None

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if self.died is None and isinstance(args, tuple) and len(args) == 2 and "unexpectedly" in str(record.msg):
            pid, exitcode = args
            if isinstance(pid, int) and isinstance(exitcode, int):
                self.died = WorkerDied(pid, exitcode)


def run_workers(processes: int, threads: int, timeout_s: int) -> tuple[int, str | None]:
    """Run dramatiq's main process for `worker.main` here until it stops; returns its exit code
    and, when that is not 0, one line saying why."""
    from dramatiq import cli

    os.environ[SHUTDOWN_TIMEOUT_ENV] = str(timeout_s)
    args = cli.make_argument_parser().parse_args(
        [
            "worker.main",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--worker-shutdown-timeout",
            str(graceful_timeout_ms(timeout_s)),
        ]
    )
    watch = _DeathWatch()
    main_logger = logging.getLogger("dramatiq.MainProcess")
    main_logger.addHandler(watch)
    try:
        code = cli.main(args)
    finally:
        main_logger.removeHandler(watch)
    if not code:
        return 0, None
    if watch.died is not None:
        return code, str(watch.died)
    return code, f"a worker process exited with code {code} while stopping; its unfinished messages are redelivered"


def main(argv: list[str]) -> None:
    """`python -m worker.stopping LOYALTY PROCESSES THREADS TIMEOUT_S`, as `loyalty worker`
    runs it: exits with dramatiq's exit code, after one line saying why when it is not 0, and
    removes the run's prometheus_client folder (PROMETHEUS_MULTIPROC_DIR) when it ends."""
    from worker.config import METRICS_STOPPED_MARKER

    loyalty, processes, threads, timeout_s = argv
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    # dramatiq re-executes sys.argv to reload on SIGHUP: `loyalty worker` again, checks included
    # (and a new folder: this one is removed below all the same).
    sys.argv = [loyalty, "worker", "--processes", processes, "--threads", threads, "--shutdown-timeout", timeout_s]
    try:
        code, reason = run_workers(int(processes), int(threads), int(timeout_s))
        if folder and os.path.exists(os.path.join(folder, METRICS_STOPPED_MARKER)):
            # The /metrics process could not listen and stopped the worker; it said why.
            code, reason = EXIT_METRICS_CANNOT_START, None
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    if reason is not None:
        print(f"error: {reason}", file=sys.stderr, flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
