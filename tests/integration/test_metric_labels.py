"""Member ids never become metric labels, and hostile input cannot add label values."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tests.conftest import NOW
from tests.factories import purchase, signup
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake

# Every label name any loyalty metric may carry: all low-cardinality.
ALLOWED_LABELS = {
    "type",
    "source",
    "outcome",
    "queue",
    "actor_name",
    "queue_name",
    "kind",
    "status",
    "rule",
    "tier",
    "from_tier",
    "to_tier",
    "job",
    "state",
    "le",
}  # le: histogram buckets


def _loyalty_samples():
    for metric in REGISTRY.collect():
        if metric.name.startswith(("loyalty", "dramatiq")):
            yield from metric.samples


async def test_member_ids_never_appear_in_metric_labels(db):
    members = ["MEMBER-LABEL-1", "MEMBER-LABEL-2"]
    for member in members:
        await intake.process(db, DEFAULT_PROGRAM, purchase(member, "10.00"), now=NOW)
    await intake.process(db, DEFAULT_PROGRAM, signup("MEMBER-LABEL-3", source="MEMBER-LABEL-3"), now=NOW)
    await intake.process(db, DEFAULT_PROGRAM, {**purchase("MEMBER-LABEL-4", "1.00"), "type": "x" * 100}, now=NOW)

    samples = list(_loyalty_samples())
    assert samples
    label_names = {name for s in samples for name in s.labels}
    assert label_names <= ALLOWED_LABELS
    values = {value for s in samples for value in s.labels.values()}
    assert not any(value.startswith("MEMBER-LABEL") for value in values)
    assert "x" * 100 not in values
    rejected = {
        (s.labels["type"], s.labels["source"])
        for s in samples
        if s.name == "loyalty_events_processed_total" and s.labels["outcome"] == "rejected"
    }
    assert {("signup", "invalid"), ("invalid", "pos")} <= rejected
