"""`[refunds] reverse_bonuses` and `[referral] referee_new_days` as an operator checks and shows
them: real processes, either program shape, exact output."""

from __future__ import annotations

import json

from tests.e2e.test_cli import loyalty
from worker.domain.engine.language import DEFAULT_PROGRAM_PATH

SETTINGS = "[referral]\nreferee_new_days = 14\n\n[refunds]\nreverse_bonuses = false\n"


def test_check_and_show_read_the_settings_in_either_shape(tmp_path, env):
    old_shape = tmp_path / "old.toml"
    old_shape.write_text(SETTINGS)
    rule_language = tmp_path / "rules.toml"
    rule_language.write_text(DEFAULT_PROGRAM_PATH.read_text(encoding="utf-8") + SETTINGS)

    for path in (old_shape, rule_language):
        checked = loyalty(env, "program", "check", str(path))
        shown = loyalty(env, "program", "show", str(path))

        assert (checked.returncode, checked.stderr) == (0, ""), checked.stderr
        assert shown.returncode == 0, shown.stderr
        program = json.loads(shown.stdout)
        assert program["refunds"] == {"reverse_bonuses": False}
        assert program["referral"]["referee_new_days"] == 14


def test_show_gives_the_defaults_and_check_names_a_bad_value(tmp_path, env):
    bad = tmp_path / "bad.toml"
    bad.write_text("[referral]\nreferee_new_days = 5000\n")

    shown = loyalty(env, "program", "show", str(DEFAULT_PROGRAM_PATH))
    checked = loyalty(env, "program", "check", str(bad))

    program = json.loads(shown.stdout)
    assert (program["refunds"], program["referral"]["referee_new_days"]) == ({"reverse_bonuses": True}, 30)
    assert checked.returncode == 2
    assert checked.stderr.strip() == f"error: {bad}: referral.referee_new_days: must be less than or equal to 3660"
