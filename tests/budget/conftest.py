"""A migrated in-memory database and the budget machinery on top of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cascade_gateway.accounting.ledger import Ledger
from cascade_gateway.auth.keys import KeyStore
from cascade_gateway.storage.database import Database, open_database
from cascade_gateway.storage.migrations import migrate


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = await open_database("sqlite://")
    await migrate(database)
    yield database
    await database.aclose()


@pytest.fixture
def ledger(db: Database) -> Ledger:
    return Ledger(db)


@pytest.fixture
def keys(db: Database) -> KeyStore:
    return KeyStore(db)
