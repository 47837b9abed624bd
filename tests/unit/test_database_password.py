"""LOYALTY_DATABASE_PASSWORD: a password with any characters reaches PostgreSQL as written."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from db.engine import create_engine
from worker.config import Settings, redact_url
from worker.preflight import postgres_address

PASSWORD = "p@ss/w#rd"


def _connect_args(url: str) -> dict:
    """What asyncpg is called with for this URL."""
    engine = create_engine(url)
    return engine.sync_engine.dialect.create_connect_args(engine.sync_engine.url)[1]


def test_a_password_pasted_into_the_url_breaks_it():
    # Why the password has its own variable: the host became `ss`.
    assert make_url(f"postgresql://loyalty:{PASSWORD}@postgres:5432/loyalty").host == "ss"


def test_the_password_variable_yields_the_right_connection_parameters():
    s = Settings.from_env(
        {"LOYALTY_DATABASE_URL": "postgresql://loyalty@postgres:5432/loyalty", "LOYALTY_DATABASE_PASSWORD": PASSWORD}
    )
    assert _connect_args(s.database_url) == {
        "host": "postgres",
        "port": 5432,
        "user": "loyalty",
        "password": PASSWORD,
        "database": "loyalty",
    }
    assert str(postgres_address(s.database_url)) == "PostgreSQL at postgres:5432"
    assert redact_url(s.database_url) == "postgresql://loyalty:***@postgres:5432/loyalty"


@pytest.mark.parametrize("password", ["%41", "a:b", "?x=1", " spaced ", "ünï", "s3cr3t"])
def test_any_characters_pass_unchanged_and_replace_a_password_in_the_url(password):
    s = Settings.from_env(
        {
            "LOYALTY_DATABASE_URL": "postgresql://app:old@db.internal/loyalty?sslmode=require",
            "LOYALTY_DATABASE_PASSWORD": password,
        }
    )
    args = _connect_args(s.database_url)
    assert (args["host"], args["user"], args["password"], args["database"]) == (
        "db.internal",
        "app",
        password,
        "loyalty",
    )


def test_without_the_variable_the_url_is_used_as_given():
    url = "postgresql://app:pw@db:5432/loyalty"
    assert Settings.from_env({"LOYALTY_DATABASE_URL": url}).database_url == url
    assert Settings.from_env({"LOYALTY_DATABASE_URL": url, "LOYALTY_DATABASE_PASSWORD": ""}).database_url == url
