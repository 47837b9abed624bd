"""Program files: every number replaceable, every mistake named by its key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from worker.domain.engine import load_program
from worker.domain.errors import ProgramError
from worker.domain.program import DEFAULT_PROGRAM

EXAMPLE = Path(__file__).parents[2] / "docs" / "program.example.toml"


def load_text(tmp_path: Path, text: str):
    path = tmp_path / "program.toml"
    path.write_text(text, encoding="utf-8")
    return load_program(path)


def error_for(tmp_path: Path, text: str) -> str:
    with pytest.raises(ProgramError) as caught:
        load_text(tmp_path, text)
    return str(caught.value).removeprefix(f"{tmp_path / 'program.toml'}: ")


def test_no_file_means_the_built_in_default():
    program = load_program(None)

    assert program is DEFAULT_PROGRAM
    assert [(t.name, t.threshold, t.multiplier) for t in program.tiers] == [
        ("Regular", 0, Decimal("1.0")),
        ("Silver", 1000, Decimal("1.2")),
        ("Gold", 5000, Decimal("1.5")),
        ("Diamond", 15000, Decimal("2.0")),
    ]
    assert (program.timezone, program.member_day.day_of_month, program.expiry.days) == ("Asia/Shanghai", 8, 365)


def test_the_documented_example_loads_and_matches_the_defaults_where_it_says_so():
    program = load_program(EXAMPLE)

    assert program.tiers == DEFAULT_PROGRAM.tiers
    assert program.check_in == DEFAULT_PROGRAM.check_in
    assert program.multipliers.categories == {"beauty": Decimal("1.5")}
    assert program.campaigns[0].sources == ("ecommerce", "app")


def test_a_partial_file_changes_only_what_it_names(tmp_path):
    program = load_text(tmp_path, "[signup]\npoints = 80\n[member_day]\nday_of_month = 18\n")

    assert (program.signup.points, program.member_day.day_of_month) == (80, 18)
    assert program.member_day.multiplier == Decimal("2")
    assert program.review == DEFAULT_PROGRAM.review


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[signup]\npoint = 80\n", "signup.point: unknown key"),
        ("[signup]\npoints = -1\n", "signup.points: must be greater than or equal to 0"),
        ("[check_in]\nstreak_days = 1\n", "check_in.streak_days: must be greater than or equal to 2"),
        ('timezone = "Mars/Olympus"\n', "timezone: unknown time zone 'Mars/Olympus'"),
        (
            '[[tiers]]\nname = "Silver"\nthreshold = 1000\nmultiplier = "1.2"\n',
            "tiers: the first tier must have threshold 0",
        ),
        (
            '[[tiers]]\nname = "A"\nthreshold = 0\nmultiplier = "1"\n[[tiers]]\nname = "B"\nthreshold = 0\nmultiplier = "2"\n',
            "tiers: tier 'B' must have a higher threshold than 'A'",
        ),
        (
            '[[campaigns]]\nname = "x"\nmultiplier = "2"\nstarts_on = 2026-12-03\nends_on = 2026-12-01\n',
            "campaigns.0: ends_on is before starts_on",
        ),
        ('[member_day]\nmultiplier = "0"\n', "member_day.multiplier: must be greater than 0"),
    ],
)
def test_errors_name_the_bad_key(tmp_path, text, expected):
    assert error_for(tmp_path, text) == expected


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ProgramError, match=r"no such program file$"):
        load_program(tmp_path / "absent.toml")
    assert error_for(tmp_path, "[signup\n").startswith("not valid TOML: ")
