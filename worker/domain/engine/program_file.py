"""A program file in either shape, as the Program the services work with. Pure.

A file with `[[rules]]` (or a `[tiers]` table) is in the rule language of docs/rules.md: its
earning rules are its rules, its tiers come from `[tiers]`, and the same file may carry the
old program's other sections (expiry, pending, schedule, notifications, ...). Any other file
is the section-per-rule program of docs/program.md, whose earning sections `from_program`
translates. Both give a `Program`; a rule-language one has its rules set (`with_rules`).

Published versions (worker/services/program_versions.py) store a file's text and are read
back here, with the version id the ledger entries then record.
"""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

from worker.domain.engine.language import EngineProgram, parse_engine_program
from worker.domain.engine.legacy import file_version, from_program, rules_of, with_rules
from worker.domain.errors import ProgramError
from worker.domain.program import DEFAULT_PROGRAM, Program, parse_program
from worker.domain.toml_files import read_toml

# The top-level keys of the rule language; every other key of a rule-language file is one of
# the old program's sections, validated as docs/program.md says.
RULE_LANGUAGE_KEYS = ("version", "name", "timezone", "tiers", "groups", "activity", "items", "rules")
# Old sections that are only earning rules, and earning keys of mixed sections: in a
# rule-language file the rules say these, so a number left here would silently do nothing.
# A key of a mixed section that is not listed here keeps its meaning in a rule-language file.
EARNING_SECTIONS = ("signup", "check_in", "review", "multipliers", "campaigns")
EARNING_KEYS = {
    "purchase": ("first_purchase_bonus",),
    "birthday": ("multiplier",),
    "referral": ("referrer_points", "referee_points"),
}
# Old keys whose setting a rule-language file makes elsewhere: the key that does it.
SET_ELSEWHERE = {
    ("schedule", "tier_review", "enabled"): "tiers.downgrade",
    ("schedule", "tier_review", "window_days"): "tiers.review_window_days",
    ("schedule", "tier_review", "grace_days"): "tiers.review_grace_days",
}
# Old-style tier names are at most this long (worker.domain.program.Tier).
TIER_NAME_MAX = 32
# A published version's id: what every ledger entry it produces records.
VERSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def is_rule_language(data: dict[str, Any]) -> bool:
    return "rules" in data or isinstance(data.get("tiers"), dict)


def parse_program_data(data: dict[str, Any], origin: str = "program", version: str | None = None) -> Program:
    """The program a decoded file describes; ProgramError naming each bad key otherwise.

    `version` is the id of a published version: its earning rules record it. Without one, they
    record `file:<program name>`, as program files always have.
    """
    if "version" in data and (isinstance(data["version"], bool) or not isinstance(data["version"], (str, int))):
        raise ProgramError(f"{origin}: version: must be a string or an integer")
    if is_rule_language(data):
        return _rule_language(data, origin, version)
    program = parse_program({k: v for k, v in data.items() if k != "version"}, origin=origin)
    if version is None:
        return program
    return with_rules(program, from_program(program, version=version))


def parse_program_text(text: str, origin: str = "program", version: str | None = None) -> Program:
    """`parse_program_data` of TOML text (a stored version's content)."""
    return parse_program_data(_toml(text, origin), origin, version)


def load_program(path: str | Path | None) -> Program:
    """The program from a file in either shape, or the built-in default when no path is given."""
    if path is None or str(path) == "":
        return DEFAULT_PROGRAM
    path = Path(path)
    return parse_program_data(read_toml(path, "program file", ProgramError), origin=str(path))


def load_program_as_published(path: str | Path) -> Program:
    """A program file as it would be in force once published: `load_program`'s program, whose
    earning rules record the file's `version` key (`file:<name>` without one, as
    LOYALTY_PROGRAM_FILE would)."""
    path = Path(path)
    data = read_toml(path, "program file", ProgramError)
    version = data.get("version")
    stored = str(version) if isinstance(version, (str, int)) and not isinstance(version, bool) else None
    return parse_program_data(data, origin=str(path), version=stored)


def version_id(text: str, origin: str = "program") -> str:
    """The `version` key of a file to publish: required, and usable as the id entries record."""
    value = _toml(text, origin).get("version")
    if value is None:
        raise ProgramError(f'{origin}: version: is required to publish, e.g. version = "2026-12-spring"')
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ProgramError(f"{origin}: version: must be a string or an integer")
    if not VERSION_ID.match(str(value)):
        raise ProgramError(
            f"{origin}: version: {str(value)!r} must be 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return str(value)


def program_version(program: Program) -> str:
    """The version the program's earning rules record in ledger entries."""
    return str(rules_of(program).version)


def _toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as problem:
        raise ProgramError(f"{origin}: not valid TOML: {problem}") from None


def _rule_language(data: dict[str, Any], origin: str, version: str | None) -> Program:
    rules = parse_engine_program({k: v for k, v in data.items() if k in RULE_LANGUAGE_KEYS}, origin=origin)
    sections = {k: v for k, v in data.items() if k not in RULE_LANGUAGE_KEYS}
    problems = _misplaced(sections) + _tier_problems(rules)
    if problems:
        raise ProgramError(f"{origin}: {'; '.join(problems)}")
    schedule = sections.get("schedule", {})
    if isinstance(schedule, dict) and isinstance(schedule.get("tier_review", {}), dict):
        review = {
            "enabled": rules.tiers.downgrade == "review",
            "window_days": rules.tiers.review_window_days,
            "grace_days": rules.tiers.review_grace_days,
        }
        schedule = {**schedule, "tier_review": {**schedule.get("tier_review", {}), **review}}
    program = parse_program(
        {
            **sections,
            "name": rules.name,
            "timezone": rules.timezone,
            "tiers": [
                {"name": level.name, "threshold": int(level.threshold), "multiplier": level.multiplier}
                for level in rules.tiers.levels
            ],
            "schedule": schedule,
            "member_day": sections.get("member_day", _member_day_notice(rules)),
        },
        origin=origin,
    )
    if rules.tiers.basis == "amount" and program.currencies is not None and program.currencies.accepted:
        # The amount basis counts orders as sent (the figure the audit checks), not converted.
        raise ProgramError(
            f"{origin}: currencies.accepted: tiers on the amount basis count each order's amount as sent; "
            'with tiers.basis = "amount" accept the base currency only'
        )
    return with_rules(program, rules.model_copy(update={"version": version or file_version(program)}))


def _misplaced(sections: dict[str, Any]) -> list[str]:
    """Keys of a rule-language file that only the old shape reads."""
    problems = [
        f"{name}: earning rules of a rule-language file are its [[rules]]; remove this section"
        for name in EARNING_SECTIONS
        if name in sections
    ]
    for name, keys in EARNING_KEYS.items():
        section = sections.get(name)
        for key in keys:
            if isinstance(section, dict) and key in section:
                problems.append(
                    f"{name}.{key}: earning rules of a rule-language file are its [[rules]]; remove this key"
                )
    for path, where in SET_ELSEWHERE.items():
        table: Any = sections
        for part in path[:-1]:
            table = table.get(part) if isinstance(table, dict) else None
        if isinstance(table, dict) and path[-1] in table:
            problems.append(f"{'.'.join(path)}: a rule-language file sets this with {where}")
    return problems


def _tier_problems(rules: EngineProgram) -> list[str]:
    problems = []
    # A level's multiplier is read only by a `factor = "tier"` rule: without one it would do nothing.
    by_tier = any(rule.effect.kind == "multiply" and rule.effect.factor == "tier" for rule in rules.rules)
    for index, level in enumerate(rules.tiers.levels):
        if "multiplier" in level.model_fields_set and not by_tier:
            problems.append(
                f"tiers.levels.{index}.multiplier: no rule multiplies by the tier; add one with "
                'effect = { kind = "multiply", factor = "tier" } or remove this key'
            )
        if rules.tiers.basis == "points" and level.threshold != level.threshold.to_integral_value():
            problems.append(f"tiers.levels.{index}.threshold: must be a whole number of points")
        if len(level.name) > TIER_NAME_MAX:
            problems.append(f"tiers.levels.{index}.name: must be at most {TIER_NAME_MAX} characters")
    return problems


def _member_day_notice(rules: EngineProgram) -> dict[str, Any]:
    """The member-day notice when the file has no [member_day]: the days and factor of a rule
    with id `member_day` that multiplies on one day of the month or on some weekdays, else no
    notice."""
    rule = next((r for r in rules.rules if r.id == "member_day"), None)
    if rule is None or rule.effect.kind != "multiply" or not isinstance(rule.effect.factor, Decimal):
        return {"enabled": False}
    days, weekdays = rule.when.days_of_month, rule.when.weekdays
    if weekdays and not days:
        return {"enabled": True, "weekdays": weekdays, "multiplier": rule.effect.factor}
    if days and len(days) == 1 and not weekdays:
        return {"enabled": True, "day_of_month": days[0], "multiplier": rule.effect.factor}
    return {"enabled": False}
