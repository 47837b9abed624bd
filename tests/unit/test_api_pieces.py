"""Pure pieces behind the HTTP API: key options, key matching, lock texts."""

from __future__ import annotations

import pytest

from worker.api.errors import ApiError
from worker.api.idempotent import check_key, ledger_event_id
from worker.domain import mall
from worker.domain.reward_locks import TEXTS, lock_text
from worker.services.api_keys import SCOPES, ApiKey, KeyRefused, key_hash, parse_list


def test_scopes_are_sorted_deduplicated_and_checked():
    assert parse_list("members:read, events:write,members:read", "scopes", SCOPES) == ["events:write", "members:read"]
    assert parse_list(None, "sources") is None
    with pytest.raises(KeyRefused, match=r"^--scopes: unknown value 'points:give'"):
        parse_list("points:give", "scopes", SCOPES)
    with pytest.raises(KeyRefused, match=r"^--sources: give at least one value$"):
        parse_list(" , ", "sources")


def test_a_key_with_sources_sends_only_those():
    till = ApiKey("till", frozenset({"events:write"}), frozenset({"pos"}))
    any_source = ApiKey("ops", frozenset({"events:write"}), None)

    assert (till.may_send("pos"), till.may_send("web"), till.may_send(None)) == (True, False, False)
    assert any_source.may_send("web") is True


def test_only_a_digest_of_the_key_is_compared():
    assert key_hash("lk_abc") == "45f7da3757385412af05fa3c8f1fcbe3209d09d922f858f58b1656e88bea7fff"  # SHA-256
    assert key_hash("lk_abc") != key_hash("lk_abd")


def test_every_reason_but_unknown_reward_has_a_text_in_every_language():
    locked = set(mall.REASONS) - {mall.UNKNOWN_REWARD}
    assert {locale: set(texts) for locale, texts in TEXTS.items()} == {
        locale: locked for locale in ("en", "zh-Hans", "zh-Hant")
    }


def test_lock_text_uses_the_member_language_then_the_program_default():
    assert (
        lock_text(mall.NOT_ENOUGH_POINTS, "en", "zh-Hans", points_short=400, min_tier="Gold")
        == "You need 400 more points."
    )
    assert lock_text(mall.TIER_TOO_LOW, "zh-Hant", "en", points_short=0, min_tier="Gold") == "Gold及以上會員專享。"
    assert lock_text(mall.OUT_OF_STOCK, None, "zh-Hans", points_short=0, min_tier="x") == "已兑完。"
    assert lock_text(mall.OUT_OF_STOCK, "fr", "de", points_short=0, min_tier="x") == "Out of stock."


@pytest.mark.parametrize("sent", ["", "k" * 129, "tab\there", None])
def test_an_idempotency_key_is_1_to_128_printable_characters_and_required_where_asked(sent):
    with pytest.raises(ApiError) as error:
        check_key(sent, required=True, code="missing_idempotency_key")
    assert (error.value.status, error.value.code, error.value.detail, error.value.field) == (
        400,
        "missing_idempotency_key",
        "Idempotency-Key: send a printable key of 1 to 128 characters",
        "Idempotency-Key",
    )
    if sent is None:
        assert check_key(sent, required=False, code="invalid_idempotency_key") is None
    else:
        with pytest.raises(ApiError, match="printable key"):
            check_key(sent, required=False, code="invalid_idempotency_key")
    assert check_key("k" * 128, required=True, code="missing_idempotency_key") is None


def test_the_ledger_event_id_of_a_keyed_request_is_per_api_key():
    assert ledger_event_id("crm-desk", "k-1") == ledger_event_id("crm-desk", "k-1")
    assert ledger_event_id("crm-desk", "k-1") != ledger_event_id("till-7", "k-1")
    assert len(ledger_event_id("crm-desk", "k-1")) == 44 and ledger_event_id("a", "b").startswith("api-")
