"""Notification texts: kind, parameters and locale in, text out.

Texts live in TOML files an operator can edit, one per locale
(`notifications.<locale>.toml`, with a `[messages]` table of texts by kind and a `[tiers]`
table of tier display names). `load_catalog` reads and checks them: every kind present,
no unknown kind, and only the placeholders the kind provides. Rendering itself is pure.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.domain.errors import LoyaltyError
from worker.domain.toml_files import read_toml

LOCALES = ("en", "zh-Hans", "zh-Hant")
FALLBACK_LOCALE = "en"
DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

# The parameters each kind is queued with (by the ledger, scheduler and rewards code).
# A template may use any of them, and no others.
KIND_PARAMS: dict[str, frozenset[str]] = {
    "points_earned": frozenset({"points", "available_points"}),
    "tier_upgraded": frozenset({"from_tier", "to_tier"}),
    "tier_nudge": frozenset({"points_away", "tier"}),
    "tier_downgraded": frozenset({"from_tier", "to_tier"}),
    "points_expiring": frozenset({"points", "expires_on"}),
    "points_expired": frozenset({"points"}),
    "points_adjusted": frozenset({"points", "available_points"}),
    "birthday": frozenset({"points"}),
    "member_day": frozenset({"multiplier"}),
    "redemption_confirmed": frozenset({"reward_name", "quantity", "points", "available_points"}),
    "redemption_rejected": frozenset({"reward_name", "reason"}),
    "redemption_cancelled": frozenset({"reward_name", "points"}),
}
# Template variants chosen by a parameter: `<kind>_<flag>` is used for a row whose params have
# `<flag>` true, when the locale has it (else the kind's own text): `points_earned` with
# pending=True uses `points_earned_pending`, `points_adjusted` with operator=True (an
# operator's adjustment, not a re-evaluation) `points_adjusted_operator`,
# `redemption_confirmed` with coupon=True (a reward of kind coupon) `redemption_confirmed_coupon`.
# Variants take the parameters of their kind, and those below that only their rows carry.
VARIANTS: dict[str, str] = {
    "points_earned_pending": "points_earned",
    "points_adjusted_operator": "points_adjusted",
    "redemption_confirmed_coupon": "redemption_confirmed",
}
VARIANT_PARAMS: dict[str, frozenset[str]] = {
    # The codes issued, one per unit redeemed (joined by ", "), and their last valid day (one
    # for all: they are issued together with the reward's validity).
    "redemption_confirmed_coupon": frozenset({"coupon_codes", "coupon_expires_on"}),
}
TEMPLATE_KEYS: dict[str, frozenset[str]] = {
    **KIND_PARAMS,
    **{variant: KIND_PARAMS[kind] | VARIANT_PARAMS.get(variant, frozenset()) for variant, kind in VARIANTS.items()},
}
# Parameters holding a tier's program name, shown by the locale's display name.
TIER_PARAMS = frozenset({"tier", "from_tier", "to_tier"})
# Parameters holding a reason code (`tier_too_low`), shown as the locale's phrase from its
# [reasons] table: customers read sentences, operators read the codes in --json output.
REASON_PARAMS = frozenset({"reason"})


class TemplateError(LoyaltyError):
    """A template file is missing, unreadable, or has a missing kind or an unknown placeholder."""


class RenderError(LoyaltyError):
    """A notification's parameters do not fill its template (a bug in the code that queued it)."""


@dataclass(frozen=True)
class LocaleTexts:
    messages: Mapping[str, str]
    tiers: Mapping[str, str] = field(default_factory=dict)
    reasons: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    locales: Mapping[str, LocaleTexts]
    origin: str = "built-in"

    def resolve_locale(self, locale: str | None, default: str | None = None) -> str:
        """The catalog locale for a member's locale tag, else the default's, else English."""
        for tag in (locale, default):
            found = _match_locale(tag, self.locales)
            if found is not None:
                return found
        return FALLBACK_LOCALE if FALLBACK_LOCALE in self.locales else next(iter(self.locales))

    def render(
        self, kind: str, params: Mapping[str, Any], locale: str | None = None, default_locale: str | None = None
    ) -> str:
        texts = self.locales[self.resolve_locale(locale, default_locale)]
        key = next(
            (
                variant
                for variant, of in VARIANTS.items()
                if of == kind and params.get(variant.removeprefix(f"{kind}_")) and variant in texts.messages
            ),
            kind,
        )
        template = texts.messages.get(key)
        if template is None:
            raise RenderError(f"no template for kind {kind!r}")
        values = {k: _display(texts, k, v) for k, v in params.items()}
        try:
            return template.format_map(values)
        except KeyError as error:
            raise RenderError(f"{kind}: parameter {error.args[0]!r} is missing") from None

    def reason_text(self, code: str, locale: str | None = None, default_locale: str | None = None) -> str:
        """The phrase for a refusal's reason code in the member's language (the code if none)."""
        return self.locales[self.resolve_locale(locale, default_locale)].reasons.get(code, code)


def _display(texts: LocaleTexts, key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if key in TIER_PARAMS:
        return texts.tiers.get(value, value)
    if key in REASON_PARAMS:
        return texts.reasons.get(value, value)
    return value


def _match_locale(tag: str | None, available: Mapping[str, Any]) -> str | None:
    """Map a BCP 47 tag onto the catalog: zh-Hans-CN, zh-CN, zh-SG, zh -> zh-Hans;
    zh-Hant, zh-TW, zh-HK, zh-MO -> zh-Hant; en-US -> en."""
    if not tag:
        return None
    if tag in available:
        return tag
    parts = tag.replace("_", "-").split("-")
    lowered = [p.lower() for p in parts]
    if lowered[0] == "zh":
        rest = set(lowered[1:])
        script = "zh-Hant" if rest & {"hant", "tw", "hk", "mo"} else "zh-Hans"
        return script if script in available else None
    for name in available:
        if name.lower() == lowered[0]:
            return name
    return None


def placeholders(template: str) -> list[str]:
    """The field names a str.format template uses, in order ('' for positional fields)."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def check_locale_data(data: dict[str, Any], origin: str) -> LocaleTexts:
    """Validate one locale file's parsed TOML; errors name the file, kind and placeholder."""
    unknown_tables = sorted(set(data) - {"messages", "tiers", "reasons"})
    if unknown_tables:
        raise TemplateError(
            f"{origin}: unknown table {unknown_tables[0]!r} (expected [messages], [tiers] and [reasons])"
        )
    messages = data.get("messages")
    if not isinstance(messages, dict):
        raise TemplateError(f"{origin}: missing [messages] table")
    problems = []
    for kind in KIND_PARAMS:
        if kind not in messages:
            problems.append(f"missing kind {kind!r}")
    for key, template in messages.items():
        allowed = TEMPLATE_KEYS.get(key)
        if allowed is None:
            problems.append(f"unknown kind {key!r}")
            continue
        if not isinstance(template, str):
            problems.append(f"{key}: must be a string")
            continue
        try:
            names = placeholders(template)
        except ValueError as error:
            problems.append(f"{key}: bad template: {error}")
            continue
        for name in names:
            if name not in allowed:
                problems.append(f"{key}: unknown placeholder {{{name}}} (allowed: {', '.join(sorted(allowed))})")
    tiers = data.get("tiers", {})
    if not isinstance(tiers, dict) or not all(isinstance(v, str) for v in tiers.values()):
        problems.append("[tiers]: must map tier names to strings")
    reasons = data.get("reasons", {})
    if not isinstance(reasons, dict) or not all(isinstance(v, str) for v in reasons.values()):
        problems.append("[reasons]: must map reason codes to strings")
    if problems:
        raise TemplateError(f"{origin}: " + "; ".join(problems))
    return LocaleTexts(messages=dict(messages), tiers=dict(tiers), reasons=dict(reasons))


def load_catalog(directory: str | Path | None = None) -> Catalog:
    """Read and check `notifications.<locale>.toml` for every locale in LOCALES."""
    directory = Path(directory) if directory else DEFAULT_TEMPLATES_DIR
    built_in = None if directory == DEFAULT_TEMPLATES_DIR else load_catalog()
    locales = {}
    for locale in LOCALES:
        path = directory / f"notifications.{locale}.toml"
        data = read_toml(path, "template file", TemplateError)
        texts = check_locale_data(data, str(path))
        if built_in is not None:
            # Operator files written before [reasons] existed keep working: the built-in
            # phrases fill in any code the file does not word itself.
            texts = LocaleTexts(texts.messages, texts.tiers, {**built_in.locales[locale].reasons, **texts.reasons})
        locales[locale] = texts
    return Catalog(locales=locales, origin=str(directory))


_installed: Catalog | None = None


def install_catalog(catalog: Catalog | None) -> None:
    """Make `catalog` the one `render` uses in this process (the worker does this at boot)."""
    global _installed
    _installed = catalog


def catalog() -> Catalog:
    """The installed catalog, or the built-in templates on first use."""
    global _installed
    if _installed is None:
        _installed = load_catalog()
    return _installed


def render(kind: str, params: Mapping[str, Any], locale: str | None = None, default_locale: str | None = None) -> str:
    """The text of one notification. Unknown kinds render as a plain description."""
    current = catalog()
    if kind not in KIND_PARAMS:
        return f"{kind}: {dict(params)}"
    return current.render(kind, params, locale, default_locale)
