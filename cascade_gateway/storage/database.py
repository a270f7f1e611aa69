"""A small async SQL seam over SQLite (embedded default) and PostgreSQL (several replicas).

Queries are written once with `:name` parameters; the PostgreSQL side rewrites them to psycopg's
`%(name)s`. SQLite runs in-process (WAL, short transactions): a single statement takes
microseconds, so the budget counters' updates run on the event loop rather than paying for a
thread hop. What takes longer happens on a thread of its own (`_Writer`), since on the event
loop it stalled every request: the ledger's batch inserts (a fraction of a millisecond to a
few, every flush interval) and the WAL checkpoint (copying pages back and an fsync: several
milliseconds, about once a second under load).

A lock another process holds on the file (a worker in its transaction, a writer thread
committing a batch) is waited for in short sleeps that let the event loop run, not in SQLite's
busy handler, which sleeps a millisecond or more with the loop blocked.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from cascade_gateway.shielding import shielded

log = logging.getLogger("cascade_gateway.storage")

CHECKPOINT_EVERY_S = 1.0
# How long a statement waits on another process's lock on the file (SQLite), or a request for
# a connection to the server (PostgreSQL), unless the config says otherwise.
TIMEOUT_S = 5.0
# Sleeps between tries of a statement while the file is locked: first, and at most.
BUSY_FIRST_SLEEP_S, BUSY_MAX_SLEEP_S = 0.0001, 0.005

Row = dict[str, Any]
_T = TypeVar("_T")
Params = Mapping[str, Any]
# Rows per multi-row INSERT (at most; see `_multi_row`): 64 rows of the ledger's 18 columns
# stay far below SQLite's default bound of 32,766 parameters a statement.
MULTI_ROW_MAX = 64


@dataclass(frozen=True, slots=True)
class Insert:
    """Rows for one table, each a mapping from column name to value. The table and column
    names go into the SQL as they are: they come from code, never from a request.

    A row whose key is already in the table is skipped, so a batch retried after its commit
    went unacknowledged (a connection lost while committing) lands once instead of failing
    every retry on its own rows."""

    table: str
    columns: tuple[str, ...]
    rows: Sequence[Params]


_NAMED = re.compile(r"(?<!:):([A-Za-z_][A-Za-z0-9_]*)")


class Connection(Protocol):
    """One connection inside a transaction."""

    async def execute(self, sql: str, params: Params | None = None) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    async def executemany(self, sql: str, params: list[Params]) -> None:
        """Run a statement once per parameter set."""
        ...

    async def fetchone(self, sql: str, params: Params | None = None) -> Row | None: ...

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]: ...


class Database(Protocol):
    dialect: Literal["sqlite", "postgresql"]

    def transaction(self) -> Any:
        """`async with db.transaction() as conn:` — committed on exit, rolled back on error."""
        ...

    async def execute(self, sql: str, params: Params | None = None) -> int: ...

    async def insert(self, inserts: Sequence[Insert]) -> None:
        """Insert the rows, all in one transaction, without holding up the event loop.

        The rows are committed or an error is raised. A caller cancelled meanwhile does not
        abandon the write: it is awaited to its end, then the cancellation is raised, so a
        cancelled caller knows its rows landed.
        """
        ...

    async def fetchone(self, sql: str, params: Params | None = None) -> Row | None: ...

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]: ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds a lock (SQLITE_BUSY, with any
    extended code)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY


class _SqliteConnection:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params | None = None) -> int:
        return self._conn.execute(sql, params or {}).rowcount

    async def executemany(self, sql: str, params: list[Params]) -> None:
        if params:
            self._conn.executemany(sql, params)

    async def fetchone(self, sql: str, params: Params | None = None) -> Row | None:
        return _fetchone(self._conn, sql, params)

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]:
        return _fetchall(self._conn, sql, params)


def _fetchone(conn: sqlite3.Connection, sql: str, params: Params | None) -> Row | None:
    row = conn.execute(sql, params or {}).fetchone()
    return dict(row) if row is not None else None


def _fetchall(conn: sqlite3.Connection, sql: str, params: Params | None) -> list[Row]:
    return [dict(r) for r in conn.execute(sql, params or {}).fetchall()]


class SqliteDatabase:
    """One SQLite file shared by every worker process on the host."""

    dialect: Literal["sqlite", "postgresql"] = "sqlite"

    def __init__(self, path: str, busy_timeout_s: float = TIMEOUT_S) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_s = busy_timeout_s
        busy_timeout = f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}"
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(busy_timeout)  # setting up may wait, blocking
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._wrapped = _SqliteConnection(self._conn)
        # One transaction at a time on this connection; other processes wait on the file lock.
        self._lock = asyncio.Lock()
        # In memory, only this connection sees the database: there, everything runs here.
        self._writer: _Writer | None = None
        if path != ":memory:":
            self._conn.execute("PRAGMA wal_autocheckpoint=0")  # see _Writer
            self._writer = _Writer(path, busy_timeout)
        # From here on, a lock another process holds is waited for in `_unlocked`.
        self._conn.execute("PRAGMA busy_timeout=0")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._lock:
            await self._begin()
            try:
                yield self._wrapped
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        if self._writer is not None:
            self._writer.checkpoint_due()

    async def _begin(self) -> None:
        await self._unlocked(lambda: self._conn.execute("BEGIN IMMEDIATE"))

    async def _unlocked(self, statement: Callable[[], _T]) -> _T:
        """Run `statement`; while another process holds a lock it needs, try again after short
        sleeps that let the loop run, for up to `busy_timeout_s`, then raise the lock error."""
        deadline: float | None = None
        sleep_s = BUSY_FIRST_SLEEP_S
        while True:
            try:
                return statement()
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.busy_timeout_s
                elif now >= deadline:
                    raise
            await asyncio.sleep(sleep_s)
            sleep_s = min(2 * sleep_s, BUSY_MAX_SLEEP_S)

    async def execute(self, sql: str, params: Params | None = None) -> int:
        async with self.transaction() as conn:
            return await conn.execute(sql, params)

    async def insert(self, inserts: Sequence[Insert]) -> None:
        statements = [s for insert in inserts for s in _multi_row(insert)]
        if self._writer is not None:
            await shielded(self._writer.write(statements))
            return
        async with self.transaction():
            for sql, params in statements:
                self._conn.execute(sql, params)

    async def fetchone(self, sql: str, params: Params | None = None) -> Row | None:
        return await self._unlocked(lambda: _fetchone(self._conn, sql, params))

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]:
        return await self._unlocked(lambda: _fetchall(self._conn, sql, params))

    async def ping(self) -> None:
        await self._unlocked(lambda: self._conn.execute("SELECT 1"))

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._conn.close()


class _Writer:
    """Batch inserts and WAL checkpoints for one SQLite file, at most one checkpoint a second,
    on a thread of their own and over a connection of their own (sqlite3 lets go of the GIL
    while it writes, copies and syncs). One thread: the file takes one writer at a time."""

    def __init__(self, path: str, busy_timeout: str) -> None:
        self._path = path
        self._busy_timeout = busy_timeout  # the PRAGMA: this thread may block on the lock
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._conn: sqlite3.Connection | None = None
        self._last = time.monotonic()
        self._running = False

    def write(self, statements: list[tuple[str, list[Any]]]) -> asyncio.Future[None]:
        """Start the statements on the thread, in one transaction; done once committed."""
        return asyncio.get_running_loop().run_in_executor(self._thread, self._write, statements)

    def checkpoint_due(self) -> None:
        """After a commit: start a checkpoint if none ran in the last CHECKPOINT_EVERY_S."""
        if self._running or time.monotonic() - self._last < CHECKPOINT_EVERY_S:
            return
        self._running = True
        self._thread.submit(self._checkpoint)

    def _write(self, statements: list[tuple[str, list[Any]]]) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                conn.execute(sql, params)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if time.monotonic() - self._last >= CHECKPOINT_EVERY_S:
            self._checkpoint()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, isolation_level=None)
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(self._busy_timeout)
        return self._conn

    def _checkpoint(self) -> None:
        self._last = time.monotonic()
        try:
            # PASSIVE: copies what no reader still needs, never waits on writers or readers.
            self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            log.exception("sqlite checkpoint failed; the WAL grows until one succeeds")
        finally:
            self._running = False

    def close(self) -> None:
        self._thread.submit(self._close).result()
        self._thread.shutdown()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class _PostgresConnection:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params | None = None) -> int:
        cursor = await self._conn.execute(_pg(sql), params or {})
        return cursor.rowcount

    async def executemany(self, sql: str, params: list[Params]) -> None:
        if params:
            async with self._conn.cursor() as cursor:
                await cursor.executemany(_pg(sql), params)

    async def fetchone(self, sql: str, params: Params | None = None) -> Row | None:
        cursor = await self._conn.execute(_pg(sql), params or {})
        return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]:
        cursor = await self._conn.execute(_pg(sql), params or {})
        return await cursor.fetchall()


class PostgresDatabase:
    """A pooled PostgreSQL connection (psycopg 3)."""

    dialect: Literal["sqlite", "postgresql"] = "postgresql"

    def __init__(self, url: str, max_size: int = 20, timeout_s: float = TIMEOUT_S) -> None:
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        # Both bounds matter in an outage: without them a request waits 30 s for a pooled
        # connection, and a connection attempt to a silent host waits for the kernel to give up.
        # libpq takes whole seconds, and no fewer than 2.
        connect_timeout = max(2, math.ceil(timeout_s))
        self._pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=timeout_s,
            kwargs={"row_factory": dict_row, "connect_timeout": connect_timeout},
        )

    async def open(self) -> None:
        await self._pool.open(wait=True, timeout=10)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._pool.connection() as conn, conn.transaction():
            yield _PostgresConnection(conn)

    async def execute(self, sql: str, params: Params | None = None) -> int:
        async with self.transaction() as conn:
            return await conn.execute(sql, params)

    async def insert(self, inserts: Sequence[Insert]) -> None:
        await shielded(self._insert(inserts))

    async def _insert(self, inserts: Sequence[Insert]) -> None:
        async with self.transaction() as conn:
            for insert in inserts:
                names = ", ".join(":" + c for c in insert.columns)
                columns = ", ".join(insert.columns)
                sql = (
                    f"INSERT INTO {insert.table} ({columns}) VALUES ({names}) "
                    "ON CONFLICT DO NOTHING"
                )
                await conn.executemany(sql, list(insert.rows))

    async def fetchone(self, sql: str, params: Params | None = None) -> Row | None:
        async with self.transaction() as conn:
            return await conn.fetchone(sql, params)

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]:
        async with self.transaction() as conn:
            return await conn.fetchall(sql, params)

    async def ping(self) -> None:
        await self.fetchone("SELECT 1 AS ok")

    async def aclose(self) -> None:
        await self._pool.close()


def _multi_row(insert: Insert) -> list[tuple[str, list[Any]]]:
    """`insert` as multi-row INSERT statements with positional parameters. One statement binds
    all its rows at once and lets go of the GIL while it runs; `executemany` would take the GIL
    back for every row, which from a thread means a switch with the event loop each.

    Statements hold `MULTI_ROW_MAX` rows, then halves of that down to one, as the rows left
    need: a handful of distinct statements in all, which is what SQLite's statement cache
    keeps (one per batch size made each worker hold some 40 MB of compiled statements).
    """
    columns = insert.columns
    head = f"INSERT OR IGNORE INTO {insert.table} ({', '.join(columns)}) VALUES "
    one_row = "(" + ", ".join("?" * len(columns)) + ")"
    statements = []
    rows, size = insert.rows, MULTI_ROW_MAX
    while rows:
        while size > len(rows):
            size //= 2
        chunk, rows = rows[:size], rows[size:]
        sql = head + ", ".join([one_row] * size)
        statements.append((sql, [row[c] for row in chunk for c in columns]))
    return statements


def _pg(sql: str) -> str:
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


async def open_database(url: str, timeout_s: float = TIMEOUT_S) -> Database:
    """`sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite://` (in memory) or
    `postgresql://...` (SQLAlchemy's spelling). `timeout_s` bounds a wait for the file's lock
    (SQLite), or for a connection (PostgreSQL): past it, the call raises (`storage.outage`)."""
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://").removeprefix("/")
        return SqliteDatabase(path or ":memory:", busy_timeout_s=timeout_s)
    if url.startswith(("postgresql://", "postgres://")):
        db = PostgresDatabase(url, timeout_s=timeout_s)
        await db.open()
        return db
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///FILE or postgresql://...")
