"""The `loyalty scheduler` process: APScheduler fires the program's jobs; each firing only
sends a `plan_job` message. The workers do the work, exactly once per (job, scheduled time).

Several schedulers may run (replicas, a rolling deploy): each firing is announced under a
Redis key set with NX, so normally one replica sends it, and the worker side claims
(job, scheduled_for) in PostgreSQL, so even a second send changes nothing. After downtime the
latest missed firing of each job within `schedule.misfire_grace_s` is sent once at start.

The calendar follows the program in force: given a `program_source` (the process's
ProgramInForce, which re-reads the published versions), the jobs are rescheduled when a new
version changes the time zone or the schedule. The jobs themselves run in the workers, with
the workers' program in force.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from scheduler.schedule import JobSpec, job_specs, last_fire_time
from worker.domain.program import Program

log = structlog.get_logger(__name__)

# The outbox is drained this often; a run is cheap when there is nothing to send.
DISPATCH_INTERVAL_S = 5
# How long a firing's announcement key lives in Redis: beyond any catch-up window.
ANNOUNCE_TTL_S = 8 * 86400

Send = Callable[[str, str], None]  # (job, scheduled_for ISO) -> None
Claim = Callable[[str, datetime], bool]  # first announcement of this firing?


class Scheduler:
    def __init__(
        self,
        program: Program,
        send_plan: Send,
        claim: Claim,
        clock: Callable[[], datetime],
        send_dispatch: Callable[[], None] | None = None,
        program_source: Callable[[], Program] | None = None,
        follow_s: float = 5,
    ):
        self.program = program
        self.specs = [spec for spec in job_specs(program) if spec.enabled]
        self.send_plan = send_plan
        self.claim = claim
        self.clock = clock
        self.send_dispatch = send_dispatch
        self.grace = timedelta(seconds=program.schedule.misfire_grace_s)
        self.program_source = program_source
        self.follow_s = follow_s
        # A program whose calendar could not be scheduled: said once, not at every check.
        self._refused: Program | None = None

    def fire(self, spec: JobSpec, scheduled_for: datetime | None = None) -> bool:
        """Announce one firing; False when another scheduler already did."""
        if scheduled_for is None:
            scheduled_for = last_fire_time(spec.trigger, self.clock(), self.grace) or self.clock()
        if not self.claim(spec.name, scheduled_for):
            log.info(
                "job_firing_skipped", job=spec.name, scheduled_for=scheduled_for.isoformat(), why="already announced"
            )
            return False
        self.send_plan(spec.name, scheduled_for.isoformat())
        log.info("job_fired", job=spec.name, scheduled_for=scheduled_for.isoformat())
        return True

    def catch_up(self) -> list[tuple[str, datetime]]:
        """Send the latest firing of each job missed within the grace time (at most one each)."""
        fired = []
        now = self.clock()
        for spec in self.specs:
            missed = last_fire_time(spec.trigger, now, self.grace)
            if missed is not None and self.fire(spec, missed):
                fired.append((spec.name, missed))
        return fired

    def build(self) -> BlockingScheduler:
        scheduler = BlockingScheduler(
            timezone=self.program.zone,
            job_defaults={
                "coalesce": True,
                "misfire_grace_time": self.program.schedule.misfire_grace_s,
                "max_instances": 1,
            },
        )
        for spec in self.specs:
            scheduler.add_job(self.fire, spec.trigger, args=[spec], id=spec.name, name=spec.name)
        if self.send_dispatch is not None:
            scheduler.add_job(
                self.send_dispatch,
                IntervalTrigger(seconds=DISPATCH_INTERVAL_S),
                id="dispatch-notifications",
                name="dispatch-notifications",
            )
        if self.program_source is not None:
            scheduler.add_job(
                self.follow_program,
                IntervalTrigger(seconds=self.follow_s),
                args=[scheduler],
                id="follow-program",
                name="follow-program",
            )
        return scheduler

    def follow_program(self, scheduler: BaseScheduler) -> bool:
        """Reschedule the jobs when the program in force has another calendar; True when it did."""
        assert self.program_source is not None
        program = self.program_source()
        if program is self.program or program is self._refused:
            return False
        if (program.timezone, program.schedule) == (self.program.timezone, self.program.schedule):
            self.program = program
            return False
        try:
            specs = [spec for spec in job_specs(program) if spec.enabled]
        except ValueError as error:
            self._refused = program
            log.error("scheduler_program_refused", reason=str(error), kept=[s.name for s in self.specs])
            return False
        grace_s = program.schedule.misfire_grace_s
        for spec in self.specs:
            scheduler.remove_job(spec.name)
        for spec in specs:
            scheduler.add_job(
                self.fire, spec.trigger, args=[spec], id=spec.name, name=spec.name, misfire_grace_time=grace_s
            )
        self.program, self.specs, self.grace = program, specs, timedelta(seconds=grace_s)
        log.info("scheduler_jobs_rescheduled", jobs=[s.name for s in specs], program=program.name)
        return True

    def run(self) -> None:
        self.catch_up()
        scheduler = self.build()
        log.info("scheduler_started", jobs=[s.name for s in self.specs])
        try:
            scheduler.start()
        except (KeyboardInterrupt, SystemExit):
            log.info("scheduler_stopped")


def redis_claim(client, namespace: str) -> Claim:
    def claim(job: str, scheduled_for: datetime) -> bool:
        key = f"{namespace}:scheduler:{job}:{scheduled_for.isoformat()}"
        return bool(client.set(key, "1", nx=True, ex=ANNOUNCE_TTL_S))

    return claim
