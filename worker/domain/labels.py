"""Segment labels: the one syntax of a member's labels (`vip`, `staff`) and of an order line's
(`eco`, `tobacco`), as rules' `labels` / `exclude_labels` test them. Pure.

A label is 1-64 ASCII letters, digits and `_ - . :`, compared exactly (case matters). Labels
are a set: the order and repeats of a list given do not matter, and they are kept sorted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

LABEL_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
_LABEL = re.compile(LABEL_PATTERN)
LABEL_RULE = "must be 1-64 characters: letters, digits and _ - . :"
# A member's labels and an order line's: segments, not data; the bound keeps a members row
# and an event small, and no real program comes near it.
LABELS_MAX = 32


class LabelError(ValueError):
    """A label or a list of labels out of form; the message names the field (`labels.0: ...`)."""


def _label(value: Any) -> Any:
    if not isinstance(value, str) or not _LABEL.fullmatch(value):
        raise ValueError(LABEL_RULE)
    return value


def _label_list(value: Any) -> Any:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"must be a list of at most {LABELS_MAX} labels")
    if len(value) > LABELS_MAX:
        raise ValueError(f"{len(value)} labels is over the limit of {LABELS_MAX}")
    return value


def _distinct_sorted(value: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(value)))


Label = Annotated[
    str,
    BeforeValidator(_label),
    WithJsonSchema({"type": "string", "pattern": LABEL_PATTERN, "description": "A segment label, e.g. vip."}),
]
Labels = Annotated[
    tuple[Label, ...],
    BeforeValidator(_label_list),
    Field(max_length=LABELS_MAX),
]


def check_labels(values: Any, field: str = "labels") -> tuple[str, ...]:
    """The labels of a list as a sorted set; LabelError naming the field (`labels.2: ...`)."""
    try:
        _label_list(values)
    except ValueError as error:
        raise LabelError(f"{field}: {error}") from None
    for index, value in enumerate(values):
        try:
            _label(value)
        except ValueError as error:
            raise LabelError(f"{field}.{index}: {error}") from None
    return _distinct_sorted(tuple(values))


def check_label(value: Any, field: str = "label") -> str:
    """One label; LabelError naming the field (`label: ...`)."""
    try:
        return str(_label(value))
    except ValueError as error:
        raise LabelError(f"{field}: {error}") from None


def changed(current: Iterable[str], add: Iterable[str] = (), remove: Iterable[str] = ()) -> tuple[str, ...]:
    """`current` with `add` added and then `remove` taken away, sorted; LabelError naming the
    option and the label out of form (`--add: 'a b' is not a label: ...`), or when the member
    would hold more than LABELS_MAX."""
    for option, values in (("--add", add), ("--remove", remove)):
        for value in values:
            if not isinstance(value, str) or not _LABEL.fullmatch(value):
                raise LabelError(f"{option}: {value!r} is not a label: {LABEL_RULE}")
    result = (set(current) | set(add)) - set(remove)
    if len(result) > LABELS_MAX:
        raise LabelError(f"--add: the member would have {len(result)} labels, over the limit of {LABELS_MAX}")
    return tuple(sorted(result))
