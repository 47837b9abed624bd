"""Which program a process works with: the published version in force, else its own file;
re-read at most every reload interval and at a scheduled start; a bad version never stops it.
A hand-written store stands in for the table; `now` is passed, never read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker.domain.engine import program_version
from worker.domain.engine.language import DEFAULT_PROGRAM_PATH
from worker.domain.program import DEFAULT_PROGRAM
from worker.services.program_versions import InForce, ProgramInForce, StoredStart, checksum

T0 = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
SPRING = DEFAULT_PROGRAM_PATH.read_text(encoding="utf-8").replace('name = "default"', 'name = "spring"')


class Versions:
    """The program_versions table as a list of (version, content, effective_from)."""

    def __init__(self, *rows: tuple[str, str, datetime]):
        self.rows = list(rows)
        self.reads = 0
        self.down = False

    async def in_force(self, now: datetime) -> InForce:
        self.reads += 1
        if self.down:
            raise ConnectionRefusedError("connection refused")
        started = [r for r in self.rows if r[2] <= now]
        later = [r[2] for r in self.rows if r[2] > now]
        if not started:
            return InForce(None, None, min(later, default=None))
        version, content, _ = max(started, key=lambda r: r[2])
        return InForce(version, checksum(content), min(later, default=None))

    async def content(self, version: str, digest: str) -> str | None:
        return next((c for v, c, _ in self.rows if v == version and checksum(c) == digest), None)


async def test_with_nothing_published_the_process_keeps_its_own_program():
    programs = ProgramInForce(DEFAULT_PROGRAM, Versions(), reload_s=5)

    assert await programs.refresh(T0) is DEFAULT_PROGRAM
    assert (programs.version, programs.version_label) == (None, "file:default")


async def test_a_published_version_wins_and_its_entries_record_its_id():
    programs = ProgramInForce(DEFAULT_PROGRAM, Versions(("v2026-12-spring", SPRING, T0)), reload_s=5)

    program = await programs.refresh(T0)

    assert (program.name, programs.version, program_version(program)) == (
        "spring",
        "v2026-12-spring",
        "v2026-12-spring",
    )


async def test_the_table_is_read_again_only_after_the_reload_interval():
    store = Versions()
    programs = ProgramInForce(DEFAULT_PROGRAM, store, reload_s=5)
    await programs.refresh(T0)
    store.rows.append(("v2", SPRING, T0))

    assert programs.wait_s(T0 + timedelta(seconds=2)) == 3
    assert programs.wait_s(T0 + timedelta(seconds=6)) == 0
    assert (await programs.refresh(T0 + timedelta(seconds=5))).name == "spring"
    assert store.reads == 2


async def test_a_scheduled_version_is_not_used_before_its_start_and_is_read_at_it():
    start = T0 + timedelta(seconds=2)
    programs = ProgramInForce(DEFAULT_PROGRAM, Versions(("v1", SPRING, start)), reload_s=60)

    before = await programs.refresh(T0)
    wait = programs.wait_s(T0)
    after = await programs.refresh(T0 + timedelta(seconds=wait))

    assert (before.name, wait, after.name) == ("default", 2, "spring")


async def test_the_latest_start_passed_is_in_force_and_a_withdrawn_one_gives_back_the_file():
    store = Versions(("v1", SPRING, T0), ("v2", SPRING.replace('"spring"', '"summer"'), T0 + timedelta(hours=1)))
    programs = ProgramInForce(DEFAULT_PROGRAM, store, reload_s=5)

    assert (await programs.refresh(T0 + timedelta(hours=2))).name == "summer"
    store.rows.clear()
    assert await programs.refresh(T0 + timedelta(hours=3)) is DEFAULT_PROGRAM
    assert programs.version is None


async def test_a_version_that_does_not_parse_is_logged_and_the_current_program_kept():
    store = Versions(("v1", SPRING, T0))
    programs = ProgramInForce(DEFAULT_PROGRAM, store, reload_s=5)
    await programs.refresh(T0)
    store.rows.append(("v2", "[signup]\npoints = -1\n", T0 + timedelta(seconds=1)))

    kept = await programs.refresh(T0 + timedelta(seconds=10))

    assert (kept.name, programs.version) == ("spring", "v1")


async def test_an_unreadable_database_keeps_the_program_and_waits_a_full_interval():
    store = Versions(("v1", SPRING, T0), ("v2", SPRING, T0 + timedelta(seconds=1)))
    programs = ProgramInForce(DEFAULT_PROGRAM, store, reload_s=5)
    await programs.refresh(T0)
    store.down = True

    kept = await programs.refresh(T0 + timedelta(seconds=1))

    assert (kept.name, programs.version) == ("spring", "v1")
    assert programs.wait_s(T0 + timedelta(seconds=1)) == 5


async def test_without_a_store_the_program_is_fixed():
    programs = ProgramInForce(DEFAULT_PROGRAM)

    assert await programs.refresh(T0) is DEFAULT_PROGRAM
    assert await programs.start(lambda: T0) is None


class VersionsWithStarts(Versions):
    """The table as the real store reads it: also every version's start."""

    def __init__(self, *rows: tuple[str, str, datetime]):
        super().__init__(*rows)
        self.contents_read: list[str] = []

    async def in_force(self, now: datetime) -> InForce:
        found = await super().in_force(now)
        starts = tuple(StoredStart(v, checksum(c), at, T0) for v, c, at in sorted(self.rows, key=lambda r: r[2]))
        return InForce(found.version, found.checksum, found.next_at, starts)

    async def content(self, version: str, digest: str) -> str | None:
        self.contents_read.append(version)
        return await super().content(version, digest)


SUMMER = SPRING.replace('"spring"', '"summer"')


async def test_the_timeline_gives_each_time_its_version_and_reads_each_content_once():
    store = VersionsWithStarts(("v1", SPRING, T0), ("v2", SUMMER, T0 + timedelta(days=10)))
    programs = ProgramInForce(DEFAULT_PROGRAM, store, reload_s=5)

    await programs.refresh(T0 + timedelta(days=12))
    await programs.refresh(T0 + timedelta(days=12, seconds=5))

    timeline = programs.timeline
    assert (programs.program.name, programs.version) == ("summer", "v2")
    assert [timeline.at(T0 + timedelta(days=d)).name for d in (-1, 0, 9, 10, 30)] == [
        "spring",  # before the first start: the first version, once it has started
        "spring",
        "spring",
        "summer",
        "summer",
    ]
    assert timeline.at(T0 + timedelta(days=11)) is programs.program
    assert sorted(store.contents_read) == ["v1", "v2"]


async def test_before_any_version_starts_the_timeline_gives_the_process_program_for_earlier_times():
    store = VersionsWithStarts(("v1", SPRING, T0 + timedelta(days=1)))
    programs = ProgramInForce(DEFAULT_PROGRAM, store, reload_s=5)

    await programs.refresh(T0)
    before = (programs.timeline.at(T0), programs.timeline.at(T0 + timedelta(days=2)).name)
    await programs.refresh(T0 + timedelta(days=1))

    assert before == (DEFAULT_PROGRAM, "spring")
    assert programs.timeline.at(T0).name == "spring"


async def test_a_version_that_does_not_parse_is_left_off_the_timeline():
    store = VersionsWithStarts(("v1", SPRING, T0), ("v2", "[signup]\npoints = -1\n", T0 + timedelta(days=1)))
    programs = ProgramInForce(DEFAULT_PROGRAM, store, reload_s=5)

    await programs.refresh(T0)
    await programs.refresh(T0 + timedelta(days=2))
    await programs.refresh(T0 + timedelta(days=2, seconds=5))

    assert (programs.version, programs.timeline.at(T0 + timedelta(days=3)).name) == ("v1", "spring")
    assert store.contents_read == ["v1", "v2"]  # each read once: the bad one is not read again
