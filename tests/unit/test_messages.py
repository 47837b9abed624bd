"""Notification templates: rendering in three languages and load-time checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from worker.domain import messages
from worker.domain.messages import DEFAULT_TEMPLATES_DIR, TemplateError, load_catalog, render

CATALOG = load_catalog()


@pytest.mark.parametrize(
    ("locale", "text"),
    [
        ("en", "You're only 400 points away from Gold."),
        ("zh-Hans", "您距离金卡仅差 400 积分。"),
        ("zh-Hant", "您距離金卡僅差 400 點積分。"),
    ],
)
def test_gold_nudge_in_each_language(locale, text):
    assert CATALOG.render("tier_nudge", {"points_away": 400, "tier": "Gold"}, locale) == text


def test_module_render_keeps_its_signature_and_english_default():
    assert render("tier_nudge", {"points_away": 400, "tier": "Gold"}) == "You're only 400 points away from Gold."
    assert (
        render("tier_upgraded", {"from_tier": "Silver", "to_tier": "Gold"}, "zh-Hans") == "恭喜！您已升级为金卡会员。"
    )


@pytest.mark.parametrize(
    ("member", "default", "expected"),
    [
        (None, "zh-Hant", "zh-Hant"),
        ("zh-TW", "en", "zh-Hant"),
        ("zh-HK", "en", "zh-Hant"),
        ("zh-CN", "en", "zh-Hans"),
        ("zh", "en", "zh-Hans"),
        ("en-US", "zh-Hans", "en"),
        ("fr", "zh-Hans", "zh-Hans"),
        ("fr", "de", "en"),
    ],
)
def test_locale_from_member_then_program_default_then_english(member, default, expected):
    assert CATALOG.resolve_locale(member, default) == expected


def test_pending_points_use_their_own_text():
    params = {"points": 120, "available_points": 50, "pending": True, "rules": ["purchase"]}
    assert CATALOG.render("points_earned", params, "en") == (
        "You earned 120 points; they become available when the return window closes. Available balance: 50."
    )
    assert CATALOG.render("points_earned", {**params, "pending": False}, "en") == (
        "You earned 120 points. Available balance: 50."
    )


def test_every_kind_renders_in_every_locale_with_its_params():
    sample = {
        "points": 10,
        "available_points": 20,
        "from_tier": "Gold",
        "to_tier": "Silver",
        "points_away": 5,
        "tier": "Diamond",
        "expires_on": "2026-12-31",
        "multiplier": "2",
        "reward_name": "Mug",
        "quantity": 1,
        "reason": "out of stock",
    }
    for locale in messages.LOCALES:
        for kind, names in messages.KIND_PARAMS.items():
            text = CATALOG.render(kind, {k: sample[k] for k in names}, locale)
            assert "{" not in text and text.strip() == text and text


def test_unknown_kind_renders_as_description_not_an_error():
    assert render("mystery", {"a": 1}) == "mystery: {'a': 1}"


def _copy_templates(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES_DIR, target)
    return target


def _refusal(directory: Path) -> str:
    """Why the templates in `directory` are refused."""
    with pytest.raises(TemplateError) as error:
        load_catalog(directory)
    return str(error.value)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_unknown_placeholder_names_file_kind_and_placeholder(tmp_path):
    directory = _copy_templates(tmp_path)
    path = directory / "notifications.zh-Hant.toml"
    _edit(path, "僅差 {points_away} 點積分", "僅差 {points_left} 點積分")
    assert (
        _refusal(directory) == f"{path}: tier_nudge: unknown placeholder {{points_left}} (allowed: points_away, tier)"
    )


def test_only_the_coupon_variant_may_show_the_codes_and_a_file_without_it_shows_the_kinds_text(tmp_path):
    params = {"reward_name": "Coffee", "quantity": 1, "points": 300, "available_points": 20}
    coupon = {**params, "coupon": True, "coupon_codes": "C-1", "coupon_expires_on": "2026-12-09"}
    assert CATALOG.render("redemption_confirmed", coupon, "en") == (
        "You redeemed 1 x Coffee for 300 points. Your coupon code: C-1, valid until 2026-12-09. Available balance: 20."
    )
    assert CATALOG.render("redemption_confirmed", params, "en") == (
        "You redeemed 1 x Coffee for 300 points. Available balance: 20."
    )
    directory = _copy_templates(tmp_path)
    path = directory / "notifications.en.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        "\n".join(line for line in text.split("\n") if not line.startswith("redemption_confirmed_coupon")),
        encoding="utf-8",
    )
    assert load_catalog(directory).render("redemption_confirmed", coupon, "en") == (
        "You redeemed 1 x Coffee for 300 points. Available balance: 20."
    )
    _edit(path, "for {points} points. Available", "for {points} points, code {coupon_codes}. Available")
    assert _refusal(directory) == (
        f"{path}: redemption_confirmed: unknown placeholder {{coupon_codes}} "
        "(allowed: available_points, points, quantity, reward_name)"
    )


def test_missing_and_unknown_kinds_are_named(tmp_path):
    directory = _copy_templates(tmp_path)
    path = directory / "notifications.en.toml"
    _edit(path, 'birthday = "Happy', 'birthdy = "Happy')
    assert _refusal(directory) == f"{path}: missing kind 'birthday'; unknown kind 'birthdy'"


def test_missing_file_and_bad_toml_are_named(tmp_path):
    directory = _copy_templates(tmp_path)
    (directory / "notifications.zh-Hans.toml").unlink()
    with pytest.raises(TemplateError, match=r"notifications\.zh-Hans\.toml: no such template file$"):
        load_catalog(directory)
    shutil.copy(DEFAULT_TEMPLATES_DIR / "notifications.zh-Hans.toml", directory)
    (directory / "notifications.en.toml").write_text("[messages\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"notifications\.en\.toml: not valid TOML"):
        load_catalog(directory)


def test_positional_and_attribute_placeholders_are_refused(tmp_path):
    directory = _copy_templates(tmp_path)
    path = directory / "notifications.en.toml"
    _edit(path, "{points} points have expired.", "{} points have expired, {points.real}.")
    assert _refusal(directory) == (
        f"{path}: points_expired: unknown placeholder {{}} (allowed: points); "
        "points_expired: unknown placeholder {points.real} (allowed: points)"
    )
