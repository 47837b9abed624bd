"""Which program decides an event: the version in force at the event's `occurred_at`.

A published version never changes and never starts in the past, so the version in force at
a moment that has passed is settled for good: choosing by the event's own time gives every
event the same program whenever it is processed, in whatever order (an offline till's
purchase of the 11th, during a double-points campaign, earns double when it is uploaded on
the 13th, after the campaign's version was superseded).

Two choices are made here, once, for every caller:

- An event dated before the first version's start is decided by that first version, once it
  has started. Before any version has started, every event is decided by the process's own
  program (its LOYALTY_PROGRAM_FILE or the built-in default), as with no versions at all.
  (A program file has no start time; the first version is the earliest program on record.)
- Two versions with the same start: the one published last wins, as in `program versions`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from worker.domain.program import Program


@dataclass(frozen=True)
class Start:
    """A version on the timeline: when it takes effect and its program."""

    effective_from: datetime
    published_at: datetime
    version: str
    program: Any  # Program; Any so that tests may stand in plain labels


def version_at(starts: list[datetime] | tuple[datetime, ...], when: datetime) -> int | None:
    """Index of the start in force at `when` in ascending `starts` (the latest at or before
    it), or None when `when` is before them all."""
    index = bisect_right(starts, when) - 1
    return None if index < 0 else index


@dataclass(frozen=True)
class ProgramTimeline:
    """Programs by the time they take effect; `at(when)` is a bisect, nothing is read."""

    starts: tuple[datetime, ...]
    programs: tuple[Program, ...]
    # Decides what is dated before the first start (see the module docstring).
    before_first: Program

    @property
    def key(self) -> tuple[object, ...]:
        """Equal for timelines of the same program objects (cheap: no program is compared)."""
        return (self.starts, id(self.before_first), tuple(id(program) for program in self.programs))

    def at(self, when: datetime) -> Program:
        index = version_at(self.starts, when)
        return self.before_first if index is None else self.programs[index]

    @classmethod
    def fixed(cls, program: Program) -> ProgramTimeline:
        """One program at every time: a process without versions (the demo, tests that pin one)."""
        return cls((), (), program)

    @classmethod
    def build(cls, versions: Iterable[Start], fallback: Program, now: datetime) -> ProgramTimeline:
        """The timeline of `versions` (in any order) as a process sees it at `now`: versions not
        started yet are on it too (an event dated after a start is decided by that version
        even when it arrives early), and what is dated before the first start goes by the
        first version once it has started, else by `fallback`."""
        ordered = sorted(versions, key=lambda v: (v.effective_from, v.published_at, v.version))
        kept: list[Start] = []
        for start in ordered:
            if kept and kept[-1].effective_from == start.effective_from:
                kept[-1] = start  # the same start: the one published last wins
            else:
                kept.append(start)
        first = kept[0] if kept and kept[0].effective_from <= now else None
        return cls(
            tuple(v.effective_from for v in kept),
            tuple(v.program for v in kept),
            fallback if first is None else first.program,
        )


def timeline_of(programs: Program | ProgramTimeline) -> ProgramTimeline:
    """The timeline a caller passed, or one program at every time."""
    return programs if isinstance(programs, ProgramTimeline) else ProgramTimeline.fixed(programs)
