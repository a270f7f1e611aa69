"""The budget machinery on the migrated in-memory database (`db`, tests/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cascade_gateway.accounting.ledger import Ledger
from cascade_gateway.auth.keys import KeyStore
from cascade_gateway.storage.database import Database


@pytest.fixture
def ledger(db: Database) -> Ledger:
    return Ledger(db)


@pytest.fixture
def keys(db: Database) -> KeyStore:
    return KeyStore(db)


@dataclass
class Wall:
    """A settable wall clock (unix seconds), shared by the replicas of a test."""

    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now
