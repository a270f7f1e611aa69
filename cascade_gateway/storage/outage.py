"""Telling an outage of the gateway's storage (its database, Redis) from a bug.

Keys, budgets and rate limits are read and written on the request's path, so while the
database or Redis cannot be reached, requests that need them cannot be served. That is the
client's cue to retry shortly (503 with `Retry-After`), not a defect of the gateway (500).
"""

from __future__ import annotations

import sqlite3
import sys

# SQLite's primary result codes that mean "not now" rather than "wrong SQL": another process
# holds the lock past the busy timeout, the disk failed or is full, the file cannot be opened.
_SQLITE_OUTAGES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the gateway's storage cannot be used right now: a connection refused,
    lost or timed out (PostgreSQL, Redis), or SQLite locked or out of disk. Errors in what
    was asked of it (SQL, data) are not outages."""
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", 0) & 0xFF in _SQLITE_OUTAGES
    # The drivers' exception classes, looked up only if the driver is in use (imported).
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):
        return True
    redis = sys.modules.get("redis.exceptions")
    return redis is not None and isinstance(exc, redis.ConnectionError | redis.TimeoutError)
