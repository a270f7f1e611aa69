"""The gateway's schema, created and migrated by the gateway itself at start-up.

Migrations are numbered and applied in order inside one transaction; PostgreSQL replicas that
start together serialize on an advisory lock, SQLite processes on the file's write lock.
"""

from __future__ import annotations

import time

from cascade_gateway.storage.database import Database

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "keys, budget counters, ledger",
        [
            """CREATE TABLE api_keys (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                key_hash TEXT NOT NULL UNIQUE,
                key_prefix TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                revoked_at DOUBLE PRECISION,
                budget_usd DOUBLE PRECISION,
                budget_period TEXT NOT NULL,
                rpm INTEGER,
                tpm INTEGER,
                cascades TEXT,
                on_budget_pressure TEXT
            )""",
            """CREATE TABLE budget_counters (
                scope TEXT NOT NULL,
                period TEXT NOT NULL,
                spent_nano BIGINT NOT NULL DEFAULT 0,
                reserved_nano BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (scope, period)
            )""",
            """CREATE TABLE ledger (
                id TEXT PRIMARY KEY,
                request_id TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                day TEXT NOT NULL,
                key_id TEXT,
                key_name TEXT,
                route TEXT NOT NULL,
                mode TEXT NOT NULL,
                outcome TEXT NOT NULL,
                model_used TEXT,
                streamed INTEGER NOT NULL,
                budget_capped INTEGER NOT NULL,
                input_tokens BIGINT NOT NULL,
                output_tokens BIGINT NOT NULL,
                cost_usd DOUBLE PRECISION NOT NULL,
                baseline_cost_usd DOUBLE PRECISION NOT NULL,
                total_ms DOUBLE PRECISION NOT NULL,
                trace TEXT NOT NULL
            )""",
            "CREATE INDEX ledger_request ON ledger (request_id)",
            "CREATE INDEX ledger_key_time ON ledger (key_id, created_at)",
            """CREATE TABLE ledger_attempts (
                ledger_id TEXT NOT NULL,
                tier INTEGER NOT NULL,
                model TEXT NOT NULL,
                decision TEXT NOT NULL,
                input_tokens BIGINT NOT NULL,
                output_tokens BIGINT NOT NULL,
                cost_usd DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (ledger_id, tier)
            )""",
        ],
    ),
    (
        2,
        "rate-limit windows",
        [
            """CREATE TABLE rate_windows (
                name TEXT PRIMARY KEY,
                counts TEXT NOT NULL
            )""",
        ],
    ),
    (
        3,
        "budget reservations with leases",
        [
            """CREATE TABLE budget_holds (
                id TEXT PRIMARY KEY,
                scopes TEXT NOT NULL,
                amount_nano BIGINT NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX budget_holds_expiry ON budget_holds (expires_at)",
        ],
    ),
    (
        4,
        "budget reservations released for a lapsed lease, until their settlement comes",
        [
            """CREATE TABLE budget_released (
                id TEXT PRIMARY KEY,
                released_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX budget_released_time ON budget_released (released_at)",
        ],
    ),
]

LATEST = MIGRATIONS[-1][0]


async def migrate(db: Database) -> int:
    """Bring the schema up to date; returns the version it is at."""
    async with db.transaction() as conn:
        if db.dialect == "postgresql":
            await conn.execute("SELECT pg_advisory_xact_lock(7340211)")
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at DOUBLE PRECISION NOT NULL
            )"""
        )
        row = await conn.fetchone("SELECT MAX(version) AS v FROM schema_migrations")
        current = (row or {}).get("v") or 0
        for version, description, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, description, applied_at) "
                "VALUES (:v, :d, :t)",
                {"v": version, "d": description, "t": time.time()},
            )
            current = version
    return current
