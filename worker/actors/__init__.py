"""Actor declarations. Each module lists its actors as ActorSpecs; worker.broker declares them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ActorSpec:
    fn: Callable[..., Awaitable[Any]]
    queue_name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.fn.__name__


def queue_names() -> list[str]:
    """Every queue the actors use: what dashboards, stats and dead-letter tools look at."""
    return sorted({spec.queue_name for spec in all_specs()})


def all_specs() -> list[ActorSpec]:
    from worker.actors import events, guard, jobs, notifications

    return [*events.ACTORS, *notifications.ACTORS, *jobs.ACTORS, *guard.ACTORS]
