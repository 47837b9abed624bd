"""Engine construction. Called from lifecycle hooks and commands, never at import time."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# The TLS modes asyncpg accepts as its ``ssl`` argument (the libpq sslmode names).
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def async_url(url: str) -> str:
    """Accept plain postgresql:// URLs (as other tools write them) and use the asyncpg driver.

    libpq's ``sslmode=require`` (and the other sslmode values) becomes asyncpg's ``ssl=require``:
    asyncpg takes the mode as its ``ssl`` argument and refuses an ``sslmode`` keyword.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql", "postgresql+asyncpg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        raise ValueError(f"database URL must be postgresql://..., got {parsed.drivername}://")
    query = dict(parsed.query)
    if "sslmode" in query:
        mode = query.pop("sslmode")
        query.setdefault("ssl", mode)
    if "ssl" in query:
        mode = query["ssl"]
        if mode == "true":
            mode = "require"
        if mode not in SSL_MODES:
            raise ValueError(f"database URL: ssl must be one of {', '.join(SSL_MODES)}, got {mode!r}")
        query["ssl"] = mode
    parsed = parsed.set(query=query)
    return parsed.render_as_string(hide_password=False)


def create_engine(
    url: str, *, pool_size: int = 5, max_overflow: int = 5, pre_ping: bool = True, **kwargs
) -> AsyncEngine:
    """One engine per process, used from one event loop. Size the pool to the concurrent actors.

    `pre_ping` tests each connection on checkout (one extra round trip per transaction); hot
    paths whose callers retry on connection errors turn it off.
    """
    # Statement parameters carry members' personal data (birthdays, locales): never in an
    # exception's text, and so never in a log line.
    kwargs.setdefault("hide_parameters", True)
    if "poolclass" not in kwargs:
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=pre_ping)
    return create_async_engine(async_url(url), **kwargs)
